"""Tests for ignite_mbo.tasks.data: data dir resolution, integrity checks and download."""

from __future__ import annotations

import functools
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import platformdirs
import pytest

from ignite_mbo.errors import UserError
from ignite_mbo.tasks import data

TF8, TF10 = data.FOLDERS


def one_line(exc: pytest.ExceptionInfo[UserError]) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


def flip_byte(path: Path, offset: int = -1) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def tf8_copy(tmp_path: Path, design_bench_dir: Path) -> Path:
    """A data dir holding a private copy of the TF-Bind-8 folder."""
    root = tmp_path / "copy"
    shutil.copytree(design_bench_dir / TF8, root / TF8)
    return root


# --- a loopback HTTP mirror -----------------------------------------------------------------


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requested.append(self.path)  # type: ignore[attr-defined]
        super().do_GET()


class TruncatingHandler(QuietHandler):
    """Announces the full Content-Length, sends 1000 bytes, then hangs up."""

    def copyfile(self, source, outputfile) -> None:  # type: ignore[no-untyped-def]
        outputfile.write(source.read(1000))


Serve = Callable[..., tuple[str, list[str]]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """serve(root, handler) -> (base_url, requested paths); servers stop at teardown."""
    servers: list[ThreadingHTTPServer] = []

    def start(root: Path, handler: type[QuietHandler] = QuietHandler) -> tuple[str, list[str]]:
        bound = functools.partial(handler, directory=str(root))
        server = ThreadingHTTPServer(("127.0.0.1", 0), bound)
        requested: list[str] = []
        server.requested = requested  # type: ignore[attr-defined]
        servers.append(server)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}", requested

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def tf10_slice() -> list[data.FileEntry]:
    entries = data.manifest(TF10)
    return [entries[0], entries[-1]]  # one big x shard, the short last y shard


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


def test_manifest_has_all_170_files() -> None:
    tf8, tf10 = data.manifest(TF8), data.manifest(TF10)
    assert [e.file for e in tf8] == ["tf_bind_8-x-0.npy", "tf_bind_8-y-0.npy"]
    assert sorted(e.file for e in tf10) == sorted(
        f"tf_bind_10-{axis}-{k}.npy" for axis in "xy" for k in range(84)
    )
    assert sum(e.bytes for e in tf10) == 8_321_066 * (40 + 4) + 168 * 128
    assert all(len(e.sha256) == 64 for e in tf8 + tf10)
    assert data.TASK_FOLDERS == {"tf_bind_8": TF8, "tf_bind_10": TF10}
    with pytest.raises(UserError, match="unknown Design-Bench folder"):
        data.manifest("tf_bind_9")


def test_manifest_matches_materialized_data(design_bench_dir: Path) -> None:
    statuses = data.verify(design_bench_dir)
    assert len(statuses) == 170
    assert [s.path for s in statuses if not s.ok] == []


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
    assert "tf_bind_8-y-0.npy is corrupt (wrong size)" in one_line(exc)


def test_verify_reports_each_state(tf8_copy: Path) -> None:
    flip_byte(tf8_copy / TF8 / "tf_bind_8-x-0.npy", offset=200)
    states = {s.entry.file: s.state for s in data.verify(tf8_copy, [TF8, TF10])}
    assert states["tf_bind_8-x-0.npy"] == "sha256 mismatch"
    assert states["tf_bind_8-y-0.npy"] == "ok"
    assert states["tf_bind_10-y-83.npy"] == "missing"


# --- download -------------------------------------------------------------------------------


def test_download_fills_empty_dir_and_skips_intact_files(
    serve: Serve, design_bench_dir: Path, tmp_path: Path
) -> None:
    base, requested = serve(design_bench_dir)
    target = tmp_path / "fresh"
    written = data.download([TF8], target, base_url=base)
    written += data.download(data_dir=target, base_url=base + "/", entries=tf10_slice())
    assert written == [e.path(target) for e in data.manifest(TF8) + tf10_slice()]
    assert data.require(TF8, target) == target / TF8
    assert leftovers(target / TF10) == ["tf_bind_10-x-0.npy", "tf_bind_10-y-83.npy"]
    assert len(requested) == 4

    assert data.download([TF8], target, base_url=base) == []  # already intact: no request
    assert len(requested) == 4


def test_download_replaces_corrupt_local_file(
    serve: Serve, design_bench_dir: Path, tf8_copy: Path
) -> None:
    flip_byte(tf8_copy / TF8 / "tf_bind_8-y-0.npy")
    base, requested = serve(design_bench_dir)
    assert data.download([TF8], tf8_copy, base_url=base) == [tf8_copy / TF8 / "tf_bind_8-y-0.npy"]
    assert requested == [f"/{TF8}/tf_bind_8-y-0.npy"]
    data.require(TF8, tf8_copy)


def test_download_rejects_corrupt_mirror_file(serve: Serve, tf8_copy: Path, tmp_path: Path) -> None:
    flip_byte(tf8_copy / TF8 / "tf_bind_8-y-0.npy")  # the mirror serves a bad y file
    base, _ = serve(tf8_copy)
    target = tmp_path / "fresh"
    with pytest.raises(UserError) as exc:
        data.download([TF8], target, base_url=base)
    message = one_line(exc)
    assert f"{base}/{TF8}/tf_bind_8-y-0.npy is corrupt (sha256 mismatch)" in message
    assert "--mirror" in message and "ignite-mbo data verify" in message
    assert leftovers(target / TF8) == ["tf_bind_8-x-0.npy"]  # the good file stays, no temp file
    assert data.verify(target, [TF8])[0].ok


def test_download_rejects_truncated_transfer(
    serve: Serve, design_bench_dir: Path, tmp_path: Path
) -> None:
    base, _ = serve(design_bench_dir, TruncatingHandler)
    with pytest.raises(UserError) as exc:
        data.download([TF8], tmp_path / "fresh", base_url=base, timeout=10)
    assert f"{base}/{TF8}/tf_bind_8-x-0.npy is incomplete (cut short at 1000 of" in one_line(exc)
    assert leftovers(tmp_path / "fresh" / TF8) == []


def test_download_reports_http_404(serve: Serve, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    base, _ = serve(tmp_path / "empty")
    with pytest.raises(UserError) as exc:
        data.download([TF8], tmp_path / "fresh", base_url=base)
    message = one_line(exc)
    assert "HTTP 404" in message and f"{base}/{TF8}/tf_bind_8-x-0.npy" in message
    assert "check the network" in message
    assert leftovers(tmp_path / "fresh" / TF8) == []


def test_download_reports_unreachable_server(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError) as exc:
        data.download([TF8], tmp_path / "fresh", base_url=f"http://127.0.0.1:{port}", timeout=5)
    assert "failed (" in one_line(exc) and "--mirror" in one_line(exc)
    assert leftovers(tmp_path / "fresh" / TF8) == []


# --- the CLI entry point --------------------------------------------------------------------


def test_data_command_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert data.data_command("path", [], tmp_path, data.MIRROR_URL) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path)


def test_data_command_verify(
    design_bench_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert data.data_command("verify", ["all"], design_bench_dir, data.MIRROR_URL) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{TF8}: ok (2 files)", f"{TF10}: ok (168 files)"]

    shutil.copytree(design_bench_dir / TF8, tmp_path / TF8)
    flip_byte(tmp_path / TF8 / "tf_bind_8-x-0.npy")
    (tmp_path / TF8 / "tf_bind_8-y-0.npy").unlink()
    with pytest.raises(UserError) as exc:
        data.data_command("verify", ["tf_bind_8"], tmp_path, data.MIRROR_URL)
    assert capsys.readouterr().out.splitlines() == [f"{TF8}: 1 missing, 1 corrupt"]
    assert "ignite-mbo data download --task tf_bind_8" in one_line(exc)

    with pytest.raises(UserError, match="unknown Design-Bench task 'tf_bind_9'"):
        data.data_command("verify", ["tf_bind_9"], tmp_path, data.MIRROR_URL)


def test_data_command_download(
    serve: Serve, design_bench_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, _ = serve(design_bench_dir)
    assert data.data_command("download", ["tf_bind_8"], tmp_path, base) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"{TF8}: ok (2 files)"]
    assert captured.err.count("\n") == 1  # one progress line per folder
