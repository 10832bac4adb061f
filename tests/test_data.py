"""Tests for ignite_mbo.tasks.data: data dir resolution, integrity checks, verify and download.

Downloads run against FakeHub, a server on 127.0.0.1 that answers the two requests
``hf_hub_download`` makes (HEAD and GET of /datasets/{repo}/resolve/{revision}/{path}) as the
Hub does. No test sends traffic anywhere else.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import platformdirs
import pytest

from ignite_mbo.cli import main
from ignite_mbo.errors import UserError
from ignite_mbo.platform import data_console
from ignite_mbo.tasks import data, download

TF8, TF10 = data.FOLDERS
COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the commit FakeHub's "main" points to


def one_line(exc: pytest.ExceptionInfo[UserError]) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


def flip_byte(path: Path, offset: int = -1) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def tree(root: Path) -> list[str]:
    """Every path under root, relative, sorted ([] when root does not exist)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture
def tf8_copy(tmp_path: Path, design_bench_dir: Path) -> Path:
    """A data dir holding a private copy of the TF-Bind-8 folder."""
    root = tmp_path / "copy"
    shutil.copytree(design_bench_dir / TF8, root / TF8)
    return root


@pytest.fixture
def tf10_links(tmp_path: Path, design_bench_dir: Path) -> Path:
    """A data dir whose TF-Bind-10 folder links to every real shard (no 336 MB copy)."""
    root = tmp_path / "links"
    (root / TF10).mkdir(parents=True)
    for entry in data.manifest(TF10):
        (root / TF10 / entry.file).symlink_to(entry.path(design_bench_dir))
    return root


# --- a loopback server that answers like the Hub ---------------------------------------------


class FakeHub(ThreadingHTTPServer):
    """Serves ``files`` (repo path -> bytes) of data.REPO_ID at revisions "main" and COMMIT.

    ``corrupt``: paths served with their last byte flipped (same size, same announced ETag).
    ``cut_once``: paths whose first full GET sends half the body and then hangs up.
    ``requests``: (method, repo path, Range header) of every request, in order.
    """

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.files = files
        self.corrupt: set[str] = set()
        self.cut_once: set[str] = set()
        self.requests: list[tuple[str, str, str | None]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class HubHandler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self.answer()

    def do_GET(self) -> None:
        self.answer()

    def refuse(self, error_code: str) -> None:
        self.send_response(404)
        self.send_header("X-Error-Code", error_code)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def answer(self) -> None:
        hub, prefix = self.server, f"/datasets/{data.REPO_ID}/resolve/"
        if not self.path.startswith(prefix):
            return self.refuse("RepoNotFound")
        revision, _, name = self.path[len(prefix):].partition("/")
        hub.requests.append((self.command, name, self.headers.get("Range")))
        if revision not in ("main", COMMIT):
            return self.refuse("RevisionNotFound")
        if name not in hub.files:
            return self.refuse("EntryNotFound")
        content = hub.files[name]
        served = content[:-1] + bytes([content[-1] ^ 0xFF]) if name in hub.corrupt else content
        start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0]) if "Range" in self.headers else 0
        self.send_response(206 if start else 200)
        etag = f'"{hashlib.sha256(content).hexdigest()}"'
        for key, value in [("X-Repo-Commit", COMMIT), ("ETag", etag), ("X-Linked-Etag", etag),
                           ("X-Linked-Size", str(len(content))), ("Accept-Ranges", "bytes"),
                           ("Content-Length", str(len(served) - start))]:
            self.send_header(key, value)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(served) - 1}/{len(served)}")
        self.end_headers()
        if self.command == "HEAD":
            return
        if name in hub.cut_once and not start:
            hub.cut_once.discard(name)
            self.wfile.write(served[: len(served) // 2])
            self.close_connection = True
            return
        self.wfile.write(served[start:])


@pytest.fixture
def hub(design_bench_dir: Path) -> Iterator[FakeHub]:
    """A FakeHub serving the TF-Bind-8 files; stopped at teardown."""
    files = {e.repo_path: e.path(design_bench_dir).read_bytes() for e in data.manifest(TF8)}
    server = FakeHub(files)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """huggingface_hub's waits between retries, recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr("time.sleep", waited.append)
    return waited


@pytest.fixture
def hf_cache(tmp_path: Path) -> Path:
    return tmp_path / "hf-cache"


def gets(hub: FakeHub) -> list[tuple[str, str | None]]:
    return [(name, byte_range) for method, name, byte_range in hub.requests if method == "GET"]


# --- resolve_data_dir / manifest ------------------------------------------------------------


def test_resolve_order_argument_then_env_then_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    cache = Path(platformdirs.user_cache_dir("ignite-mbo")) / "design_bench"
    assert data.resolve_data_dir() == cache
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "env"))
    assert data.resolve_data_dir() == tmp_path / "env"
    assert data.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert data.resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    monkeypatch.setenv(data.DATA_DIR_ENV, "")
    assert data.resolve_data_dir() == cache


def test_manifest_has_all_170_files_in_shard_order() -> None:
    tf8, tf10 = data.manifest(TF8), data.manifest(TF10)
    assert [e.file for e in tf8] == ["tf_bind_8-x-0.npy", "tf_bind_8-y-0.npy"]
    assert [e.file for e in tf10] == [f"tf_bind_10-{axis}-{k}.npy" for axis in "xy" for k in range(84)]
    assert sum(e.bytes for e in tf10) == 8_321_066 * (40 + 4) + 168 * 128
    assert all(len(e.sha256) == 64 for e in tf8 + tf10)
    assert data.TASK_FOLDERS == {"tf_bind_8": TF8, "tf_bind_10": TF10}
    with pytest.raises(UserError, match="unknown Design-Bench folder"):
        data.manifest("tf_bind_9")


def test_manifest_matches_materialized_data(design_bench_dir: Path) -> None:
    statuses = data.verify(design_bench_dir)
    assert len(statuses) == 170
    assert [s.path for s in statuses if not s.ok] == []
    assert data.unexpected_files(design_bench_dir) == []


# --- require --------------------------------------------------------------------------------


def test_require_passes_on_good_data(
    design_bench_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert data.require(TF8, design_bench_dir) == design_bench_dir / TF8
    assert data.require(TF10, design_bench_dir) == design_bench_dir / TF10
    monkeypatch.setenv(data.DATA_DIR_ENV, str(design_bench_dir))
    assert data.require(TF8) == design_bench_dir / TF8


def test_require_names_missing_file_and_fix(tf8_copy: Path) -> None:
    (tf8_copy / TF8 / "tf_bind_8-y-0.npy").unlink()
    with pytest.raises(UserError) as exc:
        data.require(TF8, tf8_copy)
    message = one_line(exc)
    assert message.startswith("TF-Bind-8 data missing:")
    assert str(tf8_copy / TF8 / "tf_bind_8-y-0.npy") in message
    assert "ignite-mbo data download --task tf_bind_8" in message and data.DATA_DIR_ENV in message


WRONG_KINDS = [
    ("symlink to /dev/zero", "a symlink to /dev/zero (a character device)"),
    ("directory", "a directory"),
    ("fifo", "a FIFO (named pipe)"),
]


@pytest.mark.parametrize(("kind", "said"), WRONG_KINDS, ids=[kind for kind, _ in WRONG_KINDS])
def test_a_data_file_of_the_wrong_kind_is_named_not_called_missing(tf8_copy: Path, kind: str, said: str) -> None:
    path = tf8_copy / TF8 / "tf_bind_8-y-0.npy"
    path.unlink()
    if kind.startswith("symlink"):
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)
    for check_sha256 in (False, True):  # building a task, and `data verify`
        with pytest.raises(UserError) as exc:
            data.require(TF8, tf8_copy, check_sha256=check_sha256)
        message = one_line(exc)
        assert message.startswith("TF-Bind-8 data wrong:") and "not found" not in message, message
        assert f"{path} is {said}, not a regular file" in message, message


def test_require_counts_further_missing_files(tmp_path: Path) -> None:
    with pytest.raises(UserError) as exc:
        data.require(TF10, tmp_path)
    assert "not found (and 167 more)" in one_line(exc)
    assert "--task tf_bind_10" in one_line(exc)


def test_require_detects_flipped_byte(tf8_copy: Path) -> None:
    flip_byte(tf8_copy / TF8 / "tf_bind_8-x-0.npy")
    with pytest.raises(UserError) as exc:
        data.require(TF8, tf8_copy)
    message = one_line(exc)
    assert "tf_bind_8-x-0.npy is corrupt (sha256 mismatch)" in message
    assert "delete it and run 'ignite-mbo data download --task tf_bind_8'" in message
    assert data.require(TF8, tf8_copy, check_sha256=False) == tf8_copy / TF8  # size still right


def test_require_detects_wrong_size_without_hashing(tf8_copy: Path) -> None:
    with open(tf8_copy / TF8 / "tf_bind_8-y-0.npy", "ab") as f:
        f.write(b"\0")
    with pytest.raises(UserError) as exc:
        data.require(TF8, tf8_copy, check_sha256=False)
    assert "tf_bind_8-y-0.npy is corrupt (wrong size (263297 bytes, the manifest says 263296))" in one_line(exc)


def test_sha256_is_computed_once_per_file_until_it_changes(
    tf8_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[str] = []
    real = data.sha256_file

    def counting_sha256(path: Path) -> str:
        hashed.append(path.name)
        return real(path)

    monkeypatch.setattr(data, "sha256_file", counting_sha256)
    for _ in range(3):
        data.require(TF8, tf8_copy)
    assert sorted(hashed) == ["tf_bind_8-x-0.npy", "tf_bind_8-y-0.npy"]

    y_file = tf8_copy / TF8 / "tf_bind_8-y-0.npy"
    flip_byte(y_file)
    os.utime(y_file, ns=(1, 1))  # a new mtime, whatever the clock's granularity
    with pytest.raises(UserError, match="tf_bind_8-y-0.npy is corrupt"):
        data.require(TF8, tf8_copy)
    assert sorted(hashed) == ["tf_bind_8-x-0.npy", "tf_bind_8-y-0.npy", "tf_bind_8-y-0.npy"]


def test_unreadable_file_is_one_line(tf8_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PermissionError from stat and from listing the folder (simulated: tests may run as root)."""
    locked = tf8_copy / TF8
    real_stat, real_listdir = Path.stat, os.listdir

    def stat(path: Path, **kwargs: object) -> os.stat_result:
        if path.parent == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, **kwargs)  # type: ignore[arg-type]

    def listdir(path: str | Path) -> list[str]:
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_listdir(path)

    monkeypatch.setattr(Path, "stat", stat)
    monkeypatch.setattr(os, "listdir", listdir)
    with pytest.raises(UserError) as exc:
        data.require(TF8, tf8_copy)
    assert f"TF-Bind-8 data unreadable: {locked / 'tf_bind_8-x-0.npy'} (Permission denied) (and 1 more)" in one_line(exc)
    assert {s.state for s in data.verify(tf8_copy, [TF8])} == {"unreadable"}
    assert data.unexpected_files(tf8_copy, [TF8]) == []


# --- verify: every problem by name ----------------------------------------------------------


def test_verify_names_every_missing_wrong_corrupt_and_unexpected_file(
    tf10_links: Path, design_bench_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tf10_links / TF10
    (folder / "tf_bind_10-y-83.npy").unlink()
    for name in ("tf_bind_10-x-5.npy", "tf_bind_10-y-7.npy"):  # private copies to damage
        (folder / name).unlink()
        shutil.copyfile(design_bench_dir / TF10 / name, folder / name)
    flip_byte(folder / "tf_bind_10-x-5.npy", offset=1000)
    with open(folder / "tf_bind_10-y-7.npy", "ab") as f:
        f.write(b"\0\0")
    for stray in ("tf_bind_10-x-84.npy", "tf_bind_10-x-old.npy"):
        shutil.copyfile(design_bench_dir / TF10 / "tf_bind_10-x-0.npy", folder / stray)

    y_7_bytes = next(e.bytes for e in data.manifest(TF10) if e.file == "tf_bind_10-y-7.npy")
    with pytest.raises(UserError) as exc:
        data_console.data_command("verify", ["tf_bind_10"], tf10_links)
    assert capsys.readouterr().out.splitlines() == [
        f"{folder / 'tf_bind_10-x-5.npy'}: sha256 mismatch",
        f"{folder / 'tf_bind_10-y-7.npy'}: wrong size ({y_7_bytes + 2} bytes, the manifest says {y_7_bytes})",
        f"{folder / 'tf_bind_10-y-83.npy'}: missing",
        f"{folder / 'tf_bind_10-x-84.npy'}: unexpected (not in the manifest; loaders ignore it)",
        f"{folder / 'tf_bind_10-x-old.npy'}: unexpected (not in the manifest; loaders ignore it)",
    ]
    assert one_line(exc) == (
        f"5 problems under {tf10_links} (1 sha256 mismatch, 1 wrong size, 1 missing, 2 unexpected); "
        "run 'ignite-mbo data download --task tf_bind_10' to replace missing and damaged files, "
        "delete the unexpected files"
    )


def test_verify_prints_one_ok_line_per_folder(
    design_bench_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert data_console.data_command("verify", ["all"], design_bench_dir) == 0
    assert capsys.readouterr().out.splitlines() == [f"{TF8}: ok (2 files)", f"{TF10}: ok (168 files)"]
    with pytest.raises(UserError, match="unknown Design-Bench task 'tf_bind_9'"):
        data_console.data_command("verify", ["tf_bind_9"], tmp_path)


def test_data_command_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert data_console.data_command("path", [], tmp_path) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path)


# --- download through huggingface_hub -------------------------------------------------------


def test_download_places_checked_files_and_nothing_else(
    hub: FakeHub, hf_cache: Path, tmp_path: Path
) -> None:
    target = tmp_path / "fresh"
    written = download.download([TF8], target, endpoint=hub.url, cache_dir=hf_cache)
    assert written == [e.path(target) for e in data.manifest(TF8)]
    assert tree(target) == [TF8, f"{TF8}/tf_bind_8-x-0.npy", f"{TF8}/tf_bind_8-y-0.npy"]
    assert data.require(TF8, target) == target / TF8
    assert sorted(method for method, _, _ in hub.requests) == ["GET", "GET", "HEAD", "HEAD"]

    assert download.download([TF8], target, endpoint=hub.url, cache_dir=hf_cache) == []  # intact: no request
    assert len(hub.requests) == 4


def test_download_replaces_only_the_damaged_file(hub: FakeHub, hf_cache: Path, tf8_copy: Path) -> None:
    flip_byte(tf8_copy / TF8 / "tf_bind_8-y-0.npy")
    written = download.download([TF8], tf8_copy, endpoint=hub.url, cache_dir=hf_cache)
    assert written == [tf8_copy / TF8 / "tf_bind_8-y-0.npy"]
    assert gets(hub) == [(f"{TF8}/tf_bind_8-y-0.npy", None)]
    assert tree(tf8_copy / TF8) == ["tf_bind_8-x-0.npy", "tf_bind_8-y-0.npy"]
    data.require(TF8, tf8_copy)


def test_download_survives_an_interrupted_transfer(
    hub: FakeHub, hf_cache: Path, tmp_path: Path, sleeps: list[float]
) -> None:
    """huggingface_hub retries a transfer cut short (its byte-range resume works in 10 MB chunks,
    larger than any shard, so the shard is fetched again from the start)."""
    x_path = f"{TF8}/tf_bind_8-x-0.npy"
    hub.cut_once.add(x_path)
    download.download([TF8], tmp_path / "fresh", endpoint=hub.url, cache_dir=hf_cache)
    assert [name for name, _ in gets(hub)].count(x_path) == 2
    assert sleeps  # it waited before the retry
    assert data.require(TF8, tmp_path / "fresh")


def test_a_failed_run_resumes_where_it_stopped(hub: FakeHub, hf_cache: Path, tmp_path: Path) -> None:
    """Files fetched before a failure stay in the Hugging Face cache; the next run fetches the rest."""
    y_path = f"{TF8}/tf_bind_8-y-0.npy"
    y_bytes = hub.files.pop(y_path)
    with pytest.raises(UserError, match=f"{y_path} not found"):
        download.download([TF8], tmp_path / "fresh", endpoint=hub.url, cache_dir=hf_cache)
    assert not (tmp_path / "fresh").exists()

    hub.files[y_path] = y_bytes
    hub.requests.clear()
    download.download([TF8], tmp_path / "fresh", endpoint=hub.url, cache_dir=hf_cache)
    assert gets(hub) == [(y_path, None)]
    data.require(TF8, tmp_path / "fresh")


def test_corrupt_download_is_one_line_and_leaves_nothing(
    hub: FakeHub, hf_cache: Path, tmp_path: Path
) -> None:
    hub.corrupt.add(f"{TF8}/tf_bind_8-y-0.npy")
    target = tmp_path / "fresh"
    with pytest.raises(UserError) as exc:
        download.download([TF8], target, endpoint=hub.url, cache_dir=hf_cache)
    message = one_line(exc)
    assert f"{hub.url} served a corrupt {TF8}/tf_bind_8-y-0.npy (sha256 mismatch)" in message
    assert "HF_ENDPOINT" in message and "ignite-mbo data verify" in message
    assert not target.exists()

    hub.corrupt.clear()  # the bad copy left the cache, so the next try fetches it again
    download.download([TF8], target, endpoint=hub.url, cache_dir=hf_cache)
    assert [n for n, _ in gets(hub)].count(f"{TF8}/tf_bind_8-y-0.npy") == 2
    data.require(TF8, target)


def test_server_down_is_one_line_after_retries(
    tmp_path: Path, hf_cache: Path, sleeps: list[float]
) -> None:
    with socket.socket() as s:  # a port that nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    target = tmp_path / "fresh"
    with pytest.raises(UserError) as exc:
        download.download([TF8], target, endpoint=url, cache_dir=hf_cache)
    message = one_line(exc)
    assert f"download of {TF8}/tf_bind_8-" in message and f"from {url} failed (ConnectError" in message
    assert "check the network, set HF_ENDPOINT to a mirror" in message
    assert f"place the files by hand under {target}" in message
    assert len(sleeps) >= 2  # huggingface_hub retried before giving up
    assert not target.exists()


def test_unknown_revision_and_missing_file(hub: FakeHub, hf_cache: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError) as exc:
        download.download([TF8], tmp_path / "a", revision="v9", endpoint=hub.url, cache_dir=hf_cache)
    assert f"revision 'v9' of {data.REPO_ID} not found at {hub.url}; pass an existing --revision" in one_line(exc)

    del hub.files[f"{TF8}/tf_bind_8-y-0.npy"]
    with pytest.raises(UserError) as exc:
        download.download([TF8], tmp_path / "b", revision=COMMIT, endpoint=hub.url, cache_dir=hf_cache)
    assert f"{TF8}/tf_bind_8-y-0.npy not found in {data.REPO_ID} at revision '{COMMIT}'" in one_line(exc)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_failed_placement_removes_the_folder_it_created(
    hub: FakeHub, hf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies: list[Path] = []
    real_copy = shutil.copyfile

    def copy_then_fail(source: Path, target: Path) -> None:
        copies.append(target)
        if len(copies) == 2:
            raise OSError(28, "No space left on device", str(target))
        real_copy(source, target)

    monkeypatch.setattr(shutil, "copyfile", copy_then_fail)
    (tmp_path / "data").mkdir()
    with pytest.raises(UserError) as exc:
        download.download([TF8], tmp_path / "data", endpoint=hub.url, cache_dir=hf_cache)
    assert "(No space left on device); pass --data-dir" in one_line(exc)
    assert tree(tmp_path / "data") == []  # the first file was placed, then its folder went

    copies.clear()
    with pytest.raises(UserError):
        download.download([TF8], tmp_path / "new" / "deeper", endpoint=hub.url, cache_dir=hf_cache)
    assert not (tmp_path / "new").exists()  # every folder the download made is gone


def test_a_data_dir_that_is_a_file_is_refused_before_any_request(hub: FakeHub, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(UserError) as exc:
        download.download([TF8], tmp_path / "file" / "data", endpoint=hub.url, cache_dir=tmp_path / "c")
    assert f"the data dir {tmp_path / 'file' / 'data'} is not a folder ({tmp_path / 'file'} is a file)" in one_line(exc)
    assert hub.requests == []


def test_offline_mode_uses_the_cache_only(
    hub: FakeHub, hf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    download.download([TF8], tmp_path / "first", endpoint=hub.url, cache_dir=hf_cache)
    hub.requests.clear()
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    download.download([TF8], tmp_path / "second", endpoint=hub.url, cache_dir=hf_cache)
    assert hub.requests == []
    data.require(TF8, tmp_path / "second")

    with pytest.raises(UserError) as exc:
        download.download([TF8], tmp_path / "third", endpoint=hub.url, cache_dir=tmp_path / "empty-cache")
    assert f"HF_HUB_OFFLINE is set and {TF8}/tf_bind_8-" in one_line(exc)
    assert "is not in the Hugging Face cache; unset HF_HUB_OFFLINE" in one_line(exc)
    assert not (tmp_path / "third").exists()


def test_cli_download_reads_hf_endpoint_from_the_environment(
    hub: FakeHub, hf_cache: Path, tmp_path: Path
) -> None:
    """The console command in a fresh process, as a user runs it with a mirror in $HF_ENDPOINT."""
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(hf_cache), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "ignite_mbo.cli", "data", "download", "--task", "tf_bind_8",
         "--data-dir", str(tmp_path / "a"), "--revision", COMMIT],
        check=False, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{TF8}: ok (2 files)"]
    assert len(gets(hub)) == 2


def test_cli_download_failure_is_exit_2_and_one_error_line(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert main(["data", "download", "--task", "tf_bind_8", "--data-dir", str(tmp_path / "b")]) == 2
    progress, error = capsys.readouterr().err.strip().splitlines()  # one "downloading" line, then the error
    assert progress.startswith(f"{TF8}: downloading 2 of 2 files")
    assert error.startswith(f"ignite-mbo data: error: HF_HUB_OFFLINE is set and {TF8}/tf_bind_8-x-0.npy")
    assert hub.requests == [] and not (tmp_path / "b").exists()


# --- pass 18: a file where the task's folder should be; a stray file's name that a terminal would act on ----


def test_a_file_where_the_task_folder_should_be_is_named_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It was reported as two files 'not found', with a download as the fix, which cannot write under a file."""
    (tmp_path / TF8).write_text("")
    with pytest.raises(UserError) as exc:
        data.require(TF8, tmp_path)
    assert one_line(exc).startswith(f"TF-Bind-8 data missing: {tmp_path / TF8} is a file, not a folder; remove it and "
                                    "run 'ignite-mbo data download --task tf_bind_8'"), one_line(exc)
    with pytest.raises(UserError) as exc:
        data_console.data_command("verify", ["tf_bind_8"], tmp_path)
    assert capsys.readouterr().out.splitlines()[0].endswith(f"missing ({tmp_path / TF8} is a file, not a folder)")
    assert "remove the files that stand where a folder should be" in one_line(exc), one_line(exc)


def test_verify_writes_a_stray_files_name_with_its_control_characters_escaped(
    tf8_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name holding ESC [2J was printed as it is: verify cleared the user's terminal."""
    (tf8_copy / TF8 / "a\x1b[2Jb.npy").write_text("")
    with pytest.raises(UserError):
        data_console.data_command("verify", ["tf_bind_8"], tf8_copy)
    out = capsys.readouterr().out
    assert "\x1b" not in out and f"{tf8_copy / TF8}/a\\x1b[2Jb.npy: unexpected" in out, out


@pytest.mark.parametrize("action", ["path", "verify"])
def test_data_path_and_verify_write_a_data_dir_with_control_characters_escaped(
    action: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pass 19: `data verify` printed a --data-dir holding a newline on two lines per problem, and `data path`
    printed ESC ]0;...BEL, which set the terminal's title."""
    root = tmp_path / "x\x1b]0;PWNED\x07\ny"
    try:
        data_console.data_command(action, ["tf_bind_8"], root)
    except UserError:
        assert action == "verify"
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "x\\x1b]0;PWNED\\x07\\ny" in out, out
    assert len(out.splitlines()) == (1 if action == "path" else 2), out
