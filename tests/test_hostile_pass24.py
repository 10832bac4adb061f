"""Passes 24 to 28 (independent adversarial passes: 27 cases, 8 failed; 33, 2; 24, 4; 22, 2; 21, 3). Passes 24 and 25,
now each refused in one line with nothing written: a subnormal q (a traceback); one grid value listed twice, spelled
two ways (``1`` and ``1.0``, ``0`` and ``'0'``, ``0.1`` and YAML's string ``1e-1``: two identical trials); ``file:``
storage paths (one slash with ``#``, a host with credentials that masked the message away, percent-encoding checked
undecoded while Tune wrote in the decoded folder); a URL with an unclosed IPv6 bracket (a traceback); ``report
--format latex`` on a disk that fills at the ``.tex`` file (the other files left behind). The SQLite file marked by
``application_id`` is in test_store_and_signal_faults.py. Passes 26 to 28 are named in each test's docstring."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from ignite_mbo.cli import main
from ignite_mbo.platform.checks import check_storage_path
from ignite_mbo.store_guard import MLFLOW_CORE_TABLES

HEAD = "name: hostile\ntrial: {task: TFBind8-Exact-v0, baseline: grad-ascent, fidelity: quick}\n"

REFUSED = [
    (HEAD + "search:\n  baseline_options.learning_rate: {quniform: [0.1, 0.5, 5.0e-324]}\n",
     "Ray Tune cannot draw from {quniform: [0.1, 0.5, 5e-324]}"),
    (HEAD + "grid:\n  seed: [1, 1.0]\n", "grid: seed: 1 and 1.0 make the same trial"),  # it ran twice
    (HEAD + "grid:\n  baseline_options: [{epochs: 2}, {epochs: 2.0}]\n",
     "grid: baseline_options.epochs: 2 and 2.0 make the same trial"),
    # pass 25: YAML 1.1 reads 1e-1 as a string, which the setting takes as 0.1; a quoted seed
    (HEAD + "grid:\n  seed: [0, '0']\n", "grid: seed: 0 and '0' make the same trial"),
    (HEAD + "grid:\n  regularizer: [ignite]\n  regularizer.epsilon: [0.1, 1e-1]\n",
     "grid: regularizer.epsilon: 0.1 and '1e-1' make the same trial"),
    (HEAD + "variants:\n  - {seed: [0]}\n  - {seed: [1], baseline_options: [{}, {epochs: 10}]}\n",
     "variant 2: baseline_options.epochs: the default and 10 make the same trial"),  # quick's epochs spelled out
    # pass 26: two keys fine alone but not together, found only after Ray had started (and the store was written)
    ("name: hostile\ntrial: {task: TFBind8-Exact-v0, baseline: bo-qei, fidelity: quick}\nsearch:\n"
     "  baseline_options.bo_raw_samples: {randint: [10, 12]}\n  baseline_options.bo_num_restarts: {randint: [20, 30]}\n",
     "search can draw baseline_options.bo_raw_samples = 10, baseline_options.bo_num_restarts = 20 together, which a "
     "trial refuses"),
    # a choice listed twice (spelled two ways) was drawn twice as often, silently
    (HEAD + "search:\n  seed: {choice: [0, 1, 1.0]}\n",
     "search.seed choice: seed: 1 and 1.0 make the same trial; list each value once, spelled one way (a repeat is "
     "drawn twice as often)"),
    (HEAD + "search:\n  baseline_options: {choice: [{epochs: 2}, {epochs: 2.0}]}\n",
     "search.baseline_options choice: baseline_options.epochs: 2 and 2.0 make the same trial"),
]


@pytest.mark.parametrize(("space", "needle"), REFUSED, ids=[needle[:40] for _, needle in REFUSED])
def test_a_space_that_fails_deep_inside_is_refused_in_one_line(space, needle, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hostile.yaml").write_text(space)
    assert main(["sweep", "hostile.yaml"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and needle in line, line
    assert os.listdir(tmp_path) == ["hostile.yaml"]


STORAGE = [  # --storage-path, what the one line says
    ("file://user:secret@somehost{tmp}/st", "takes no host ('somehost')"),  # the message itself was masked away
    ("file:{tmp}/st#", "a file:// URI takes no query or fragment"),  # one slash: taken as a relative folder
    ("file://{tmp}/st%0a1", "holds the control character '\\n'"),  # Tune decodes it: a folder with a newline
    ("file://{tmp}/blk%20x/sub", "blk x is a file, so"),  # the check saw 'blk%20x', Tune wrote in 'blk x'
]


@pytest.mark.parametrize(("storage", "needle"), STORAGE, ids=[needle[:30] for _, needle in STORAGE])
def test_a_file_uri_storage_path_is_checked_as_tune_reads_it(storage, needle, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hostile.yaml").write_text(HEAD)
    (tmp_path / "blk x").write_text("a file")
    assert main(["sweep", "hostile.yaml", "--storage-path", storage.format(tmp=tmp_path)]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and needle in line and "secret" not in line, line
    assert sorted(os.listdir(tmp_path)) == ["blk x", "hostile.yaml"]


def test_a_file_uri_storage_path_becomes_the_folder_tune_writes_in(tmp_path) -> None:
    assert check_storage_path(f"file://{tmp_path}/a%20b/c") == f"{tmp_path}/a b/c"
    assert check_storage_path(f"file:{tmp_path}/d") == f"{tmp_path}/d"
    assert check_storage_path("s3://bucket/sweeps") == "s3://bucket/sweeps"


@pytest.mark.parametrize(("flag", "value"), [("--tracking-uri", "http://u:secret@[::1:5000"),
                                             ("--storage-path", "s3://[bucket/x"), ("--address", "[::1:6379")])
def test_a_url_that_cannot_be_split_is_refused_in_one_line(flag, value, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hostile.yaml").write_text(HEAD)
    assert main(["sweep", "hostile.yaml", flag, value]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "is not a URL (Invalid IPv6 URL)" in line and "secret" not in line, line
    assert os.listdir(tmp_path) == ["hostile.yaml"]


def test_report_as_latex_on_a_disk_that_fills_at_the_tex_file_leaves_nothing(tmp_path, monkeypatch) -> None:
    """``report --format latex --output-dir`` wrote gain_table.{md,csv,png}, then failed at gain_table.tex and left
    them (and the folders made for them) behind."""
    from ignite_mbo import atomic
    from ignite_mbo.platform.report import commands, render

    real = atomic.stage

    def full_at_the_tex_file(path: Path, write):  # type: ignore[no-untyped-def]
        if path.name == "gain_table.tex":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, write)

    report = SimpleNamespace(long=pd.DataFrame({"a": [1]}), results=pd.DataFrame())
    monkeypatch.setattr(atomic, "stage", full_at_the_tex_file)
    monkeypatch.setattr(commands.inputs, "read_sources", lambda sources: None)
    monkeypatch.setattr(commands, "build_report", lambda results: report)
    monkeypatch.setattr(commands, "render_latex", lambda report: "tex")
    monkeypatch.setattr(render, "render_markdown", lambda report: "md")
    monkeypatch.setattr(render, "render_figure", lambda report: b"png")
    monkeypatch.setattr(render.reproduction, "compare", lambda results: [])
    with pytest.raises(OSError) as error:
        commands.report_sources([tmp_path / "sweep"], "latex", tmp_path / "a" / "out")
    assert error.value.filename == str(tmp_path / "a" / "out" / "gain_table.tex")
    assert list(tmp_path.iterdir()) == []


def test_a_ray_temp_folder_too_long_for_its_sockets_is_named_with_the_fix(tmp_path, monkeypatch) -> None:
    """Pass 25's note: a 130-character RAY_TMPDIR got the generic 'a writable folder with free space' hint."""
    from ignite_mbo.platform.local_ray import start_failure

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    error = start_failure(OSError(f"AF_UNIX path length cannot exceed 107 bytes: '{tmp_path}/session/sockets/raylet'"))
    assert "too long a path for its sockets" in str(error) and "RAY_TMPDIR at a short path" in str(error), error


def inodes_run_out_after_one_folder(monkeypatch) -> None:
    """``mkdir`` makes one folder, then fails as on a file system out of inodes."""
    real, made = os.mkdir, []

    def mkdir(path, mode=0o777):  # type: ignore[no-untyped-def]
        if made:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, mode)
        made.append(path)

    monkeypatch.setattr(os, "mkdir", mkdir)


@pytest.mark.parametrize("make", ["sweep folder", "storage path", "report"])
def test_folders_made_before_the_disk_ran_out_of_inodes_are_removed(make, tmp_path, monkeypatch) -> None:
    """Pass 26: `sweep --output-dir a/b` (or `--storage-path a/b`, or `report --output-dir a/b`) on a file system out
    of inodes said so in one line but left the folder `a` it had made."""
    from ignite_mbo.platform import folders
    from ignite_mbo.platform.report import render

    report = SimpleNamespace(long=pd.DataFrame({"a": [1]}), results=pd.DataFrame())
    monkeypatch.setattr(render, "render_markdown", lambda report: "md")
    monkeypatch.setattr(render, "render_figure", lambda report: b"png")
    monkeypatch.setattr(render.reproduction, "compare", lambda results: [])
    make_it = {"sweep folder": lambda path: folders.claim_sweep_folder(path, "s"),
               "storage path": lambda path: folders.prepare_storage(str(path)),
               "report": lambda path: render.write_report(report, path)}[make]  # type: ignore[arg-type]
    inodes_run_out_after_one_folder(monkeypatch)
    with pytest.raises(Exception, match="No space left on device"):
        make_it(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []


DAMAGED_STORES = [  # (the store's SQL, what the one line says); every table MLflow's core has, unless dropped
    ("DROP TABLE alembic_version; CREATE TABLE alembic_version (version_num TEXT);"
     "INSERT INTO alembic_version VALUES ('1b5f0d9ad7c1'), ('deadbeef0000');",
     "records 2 schema versions .* restore it from a backup"),  # pass 26: alembic's 60-line 'more than one head'
    ("DROP TABLE metrics;", "lacks MLflow's metrics table: it is damaged, and left as it is; restore it"),
    # pass 27: MLflow re-created the dropped table in an old layout, added a FAILED run, and named no fix
]


@pytest.mark.parametrize(("damage", "needle"), DAMAGED_STORES, ids=["two versions", "a table dropped"])
def test_a_damaged_store_is_refused_in_one_line_and_left_as_it_is(damage, needle, tmp_path) -> None:
    import sqlite3

    from ignite_mbo.errors import UserError
    from ignite_mbo.store_guard import check_sqlite_store

    store = tmp_path / "mlflow.db"
    with sqlite3.connect(store) as connection:
        connection.executescript("".join(f"CREATE TABLE {table} (id INTEGER);" for table in sorted(MLFLOW_CORE_TABLES))
                                 + damage)
    connection.close()
    before = store.read_bytes()
    with pytest.raises(UserError, match=needle):
        check_sqlite_store(store)
    assert store.read_bytes() == before


def test_a_sweep_record_nested_thousands_deep_is_a_corrupt_record(tmp_path) -> None:
    """Pass 27: `sweep.json` of 5,000 nested lists gave a RecursionError traceback on --resume."""
    from ignite_mbo.errors import UserError
    from ignite_mbo.platform.record import SweepRecord

    (tmp_path / "sweep.json").write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(UserError, match="is not a sweep record written by 'ignite-mbo sweep'"):
        SweepRecord.load(tmp_path)


@pytest.mark.parametrize(("name", "value"), [("MLFLOW_HTTP_REQUEST_TIMEOUT", "abc"),
                                             ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1.5"),
                                             ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "-1")])
def test_an_mlflow_http_setting_that_is_no_number_is_refused_in_one_line(name, value, monkeypatch) -> None:
    """Pass 28: MLFLOW_HTTP_REQUEST_TIMEOUT=abc gave MLflow's 51-line traceback at the first call to the server."""
    from ignite_mbo.errors import UserError
    from ignite_mbo.store_guard import check_tracking_uri

    monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match=f"{name}=.*{value}.* is not a .*number .*; set it to one .* or unset it"):
        check_tracking_uri("http://127.0.0.1:1")


def test_report_refuses_an_output_dir_with_control_characters(tmp_path) -> None:
    """Pass 28: `report --output-dir $'o\\x1b]0;pwned\\x07ut'` made that folder and printed the terminal escape raw."""
    from ignite_mbo.errors import UserError
    from ignite_mbo.platform.report.commands import report_sources

    with pytest.raises(UserError, match="holds the control character '\\\\x1b'"):
        report_sources([tmp_path / "sweep"], "markdown", tmp_path / "o\x1b]0;pwned\x07ut\nx")
    assert list(tmp_path.iterdir()) == []


def test_a_check_across_settings_says_its_problem_alone(tmp_path, capsys, monkeypatch) -> None:
    """A check across fields names the fields itself: the line held pydantic's 'value:' and the whole settings dict."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--baseline", "bo-qei", "--fidelity", "quick", "--set", "bo_raw_samples=10",
                 "--set", "bo_num_restarts=20"]) == 2
    line = capsys.readouterr().err.strip()
    assert line.endswith("options: bo_raw_samples must be at least bo_num_restarts (the restarts start from raw "
                         "samples)"), line


def test_an_address_that_accepts_and_stays_silent_is_refused_within_seconds(tmp_path, capsys, monkeypatch) -> None:
    """Pass 29: a server that accepts TCP and never answers left `sweep --address HOST:PORT` in Ray's GCS retries
    for minutes; a gRPC server (as Ray's GCS and Ray Client are) passes the probe."""
    import socket
    import time
    from concurrent import futures

    import grpc

    from ignite_mbo.platform.checks import check_ray_address

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        check_ray_address(f"127.0.0.1:{port}")
    finally:
        server.stop(None)
    with socket.create_server(("127.0.0.1", 0)) as silent:
        monkeypatch.chdir(tmp_path)
        (tmp_path / "space.yaml").write_text(HEAD)
        started = time.monotonic()
        assert main(["sweep", "space.yaml", "--address", f"127.0.0.1:{silent.getsockname()[1]}"]) == 2
    assert time.monotonic() - started < 30
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "accepts connections but does not answer as a Ray head does" in line, line
    assert os.listdir(tmp_path) == ["space.yaml"]


def test_a_disk_that_fills_while_a_runs_artifacts_are_copied_leaves_no_torn_file(tmp_path, monkeypatch) -> None:
    """Pass 30: a full disk during `run` left a truncated surrogate_0.pt in the FAILED run's artifacts."""
    from mlflow.store.artifact import local_artifact_repo
    from mlflow.utils.file_utils import local_file_uri_to_path

    from ignite_mbo.config import TrialConfig
    from ignite_mbo.mlflow_store import TrialRecorder

    recorder = TrialRecorder(f"sqlite:///{tmp_path / 'mlflow.db'}", "full", TrialConfig.parse({}))
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "surrogate_0.pt").write_bytes(b"w" * 4096)

    def fills_up(source: str, destination: str) -> None:
        Path(destination).mkdir(parents=True, exist_ok=True)
        (Path(destination) / "surrogate_0.pt").write_bytes(b"w" * 100)  # torn
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local_artifact_repo, "shutil_copytree_without_file_permissions", fills_up)
    with pytest.raises(OSError):
        recorder.finish({"score_100th": 0.5}, artifacts)
    stored = Path(local_file_uri_to_path(recorder.client.get_run(recorder.run_id).info.artifact_uri))
    assert stored.is_dir() and not [path for path in stored.rglob("*") if path.is_file()]
