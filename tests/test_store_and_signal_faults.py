"""Tracking stores that misbehave and signals at awkward moments (issue 18, second adversarial pass).

Covered, one test per case: a ``sqlite:///`` URI with a query (``?cache=shared``, ``?x=1``, ``?mode=ro``)
is checked on its real file and refused in one line; an ``http://user:password@host`` tracking server is
probed with basic auth, and its errors are named truthfully; a server that trickles its answer fails the
probe within its time budget; SIGTERM to ``run`` while training marks the run KILLED and exits 143;
SIGTERM while a new sqlite store is built leaves no half-built store; SIGTERM to ``sweep`` while Ray
starts exits 143 in one line and releases the sweep folder; an ``mlartifacts`` that is a file is refused
before the store is made; ``data download`` never prints an endpoint's password. Third pass: the probe
never follows a redirect (no credentials to another host); ``mask`` hides the whole userinfo;
``sweep.json`` holds no password and ``--resume`` takes it again; a dangling ``mlartifacts`` link is
refused; a server that answers HTTP 500 is named so. Fake servers run on 127.0.0.x inside the test and
stop within seconds.
"""

from __future__ import annotations

import base64
import http.server
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ignite_mbo.cli import main
from ignite_mbo.errors import UserError
from ignite_mbo.platform.checks import check_tracking_server
from ignite_mbo.platform.plan import plan_sweep
from ignite_mbo.platform.record import SWEEP_FILE, SweepRecord
from ignite_mbo.platform.spaces import load_spec
from ignite_mbo.store_guard import mask

from processes import Reply, answer, http_servers, ray_starting, stop_when

RUN = ["run", "--fidelity", "quick", "--quiet", "--threads", "1", "--set", "epochs=1"]
MLFLOW_JSON = b'{"experiments": []}'
EXPERIMENT_JSON = b'{"experiment": {"experiment_id": "1", "name": "s", "lifecycle_stage": "active"}}'
RUN_JSON = (b'{"run": {"info": {"run_id": "00000000000000000000000000000000", "experiment_id": "1", '
            b'"status": "KILLED", "lifecycle_stage": "active", "start_time": 0, "artifact_uri": ""}, '
            b'"data": {"tags": [{"key": "ignite_mbo.kind", "value": "sweep"}]}}}')


def one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str], needle: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert "\n" not in err and "Traceback" not in err and needle in err, err
    return err


@pytest.fixture
def serve() -> Iterator[Callable[[Reply], str]]:
    """Start an HTTP server on 127.0.0.1 whose every request runs ``reply(handler)``; returns its URL."""
    with http_servers() as start:
        yield start


def trickle(handler: http.server.BaseHTTPRequestHandler, stop: threading.Event, seconds: int) -> None:
    """200 with headers at once, then one byte a second of a 1,000-byte body, for at most ``seconds``."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    for _ in range(seconds):
        if stop.wait(1.0):
            return
        handler.wfile.write(b" ")
        handler.wfile.flush()


# ---- sqlite URIs with a query (u4, u9, u11) ------------------------------------------------------

@pytest.mark.parametrize("query", ["?cache=shared", "?mode=ro", "?x=1"])
def test_a_sqlite_uri_with_a_query_never_changes_a_foreign_database(query, tmp_path, monkeypatch, capsys,
                                                                     design_bench_dir):
    """The guard reads the file SQLAlchemy would open (the path before ``?``): another program's
    database is refused in one line and keeps its tables only."""
    monkeypatch.chdir(tmp_path)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE issues (id INTEGER)")
    before = foreign.read_bytes()
    one_line_exit_2([*RUN, "--tracking-uri", f"sqlite:///{foreign}{query}"], capsys, "another program's")
    assert foreign.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.db"]


@pytest.mark.parametrize(("schema", "shown"), [("CREATE VIEW v AS SELECT 1", "view v"),
                                               ("PRAGMA user_version = 7", "user_version 7"),
                                               ("PRAGMA application_id = 1234", "application_id 1234")])
def test_a_database_with_a_view_or_a_program_mark_but_no_table_is_another_programs(schema, shown, tmp_path,
                                                                                  monkeypatch, capsys,
                                                                                  design_bench_dir):
    """Pass 18: a database whose only object was a view was taken as empty: MLflow's 65 tables were added to it and
    the run exited 0. Pass 24: the same with SQLite's application_id, the header field that marks a file's format."""
    monkeypatch.chdir(tmp_path)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute(schema)
    before = foreign.read_bytes()
    err = one_line_exit_2([*RUN, "--tracking-uri", f"sqlite:///{foreign}"], capsys, "another program's")
    assert shown in err, err
    assert foreign.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.db"]


def test_a_corrupt_store_with_a_query_is_one_line_without_warnings(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    corrupt = tmp_path / "mlflow.db"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        one_line_exit_2([*RUN, "--tracking-uri", f"sqlite:///{corrupt}?x=1"], capsys, "restore it from a backup")
    assert not [w for w in caught if "SAWarning" in type(w.message).__name__], caught


@pytest.mark.parametrize(("version", "shown"), [("deadbeef0000", "deadbeef0000"),
                                               ("abc\n\x1b[31mRED", "abc\\n\\x1b[31mRED")])
def test_a_store_of_an_unknown_schema_version_is_one_whole_line_that_names_both_ways(version, shown, tmp_path,
                                                                                     monkeypatch, capsys,
                                                                                     design_bench_dir):
    """Pass 17: MLflow's own message was cut mid-word ('please consult your databa') and advised only
    'mlflow db upgrade', which cannot help a store that a newer MLflow wrote. Pass 23: a version holding a newline
    gave MLflow's message cut at the newline, with no fix."""
    store = tmp_path / "mlflow.db"
    subprocess.run([sys.executable, "-c", "import sys; from mlflow import MlflowClient; MlflowClient(sys.argv[1])"
                    ".search_experiments()", f"sqlite:///{store}"], check=True, capture_output=True, timeout=120)
    # a real store (built in another process: this one would keep it open), then a version no MLflow here knows
    with sqlite3.connect(store) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (version,))
    before = store.read_bytes()
    monkeypatch.chdir(tmp_path)
    err = one_line_exit_2([*RUN, "--tracking-uri", f"sqlite:///{store}"], capsys, f"schema is version {shown}, not")
    assert err.endswith("or pass another --tracking-uri") and "mlflow db upgrade" in err and "newer" in err, err
    assert store.read_bytes() == before


def test_a_read_only_query_on_a_new_store_is_refused(tmp_path, monkeypatch, capsys):
    """Decision: SQLite options in the URI are refused (the driver ignores them, or ``mode=ro`` would make a
    store read-only that a run must write); the message names the URI without them."""
    monkeypatch.chdir(tmp_path)
    err = one_line_exit_2([*RUN, "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db?mode=ro"], capsys,
                          "SQLite options")
    assert f"sqlite:///{tmp_path}/mlflow.db" in err
    assert list(tmp_path.iterdir()) == []


# ---- a tracking server with user:password@ (t3b) and one that trickles (t2-trickle) ----------------

def requiring_basic_auth(user_password: bytes) -> Reply:
    """An MLflow-like answer for requests with Basic auth ``user:password``, 401 for any other."""
    expected = "Basic " + base64.b64encode(user_password).decode()

    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        ok = handler.headers.get("Authorization") == expected
        body = (RUN_JSON if "/runs/get" in handler.path else  # --resume asks for the sweep's run and its experiment
                EXPERIMENT_JSON if "/experiments/get?" in handler.path else MLFLOW_JSON)
        answer(handler, 200 if ok else 401, body if ok else b'{"error_code": "UNAUTHENTICATED"}')

    return reply


def test_a_server_url_with_credentials_is_probed_with_basic_auth(serve):
    url = serve(requiring_basic_auth(b"u:p%w"))
    with_credentials = url.replace("http://", "http://u:p%25w@")
    assert check_tracking_server(with_credentials, timeout_s=5) == with_credentials
    wrong = url.replace("http://", "http://u:nope@")
    with pytest.raises(UserError, match="HTTP 401 .authentication"):
        check_tracking_server(wrong, timeout_s=5)


def test_a_server_that_trickles_its_answer_fails_within_the_budget(serve, tmp_path, monkeypatch, capsys):
    """Headers at once, then one byte a second: each read is quick, the whole answer is not."""
    stop = threading.Event()

    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        trickle(handler, stop, seconds=30)

    url = serve(reply)
    monkeypatch.chdir(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(UserError, match="did not answer completely within 2 s"):
            check_tracking_server(url, timeout_s=2)
        assert time.monotonic() - started < 6
        started = time.monotonic()
        one_line_exit_2([*RUN, "--tracking-uri", url], capsys, "did not answer completely")
        assert time.monotonic() - started < 10
    finally:
        stop.set()


def test_mlflow_calls_to_a_server_that_trickles_end_within_their_deadline(serve, tmp_path, monkeypatch, capsys,
                                                                          design_bench_dir):
    """The probe gets a quick answer, every MLflow call a trickle: MLflow's per-read timeout never fires,
    the overall deadline (2 s, no retry, + 5 s) does, in one line."""
    stop = threading.Event()

    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        if "max_results=1" in handler.path:  # ignite-mbo's probe
            answer(handler, 200, MLFLOW_JSON)
            return
        trickle(handler, stop, seconds=40)

    url = serve(reply)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    try:
        started = time.monotonic()
        one_line_exit_2([*RUN, "--tracking-uri", url], capsys, "did not answer in time")
        assert time.monotonic() - started < 25
    finally:
        stop.set()


# ---- the artifact root beside a local store is a file (f6, f7) ----------------------------------------

@pytest.mark.parametrize("command", ["run", "sweep"])
def test_an_artifact_root_that_is_a_file_is_refused_before_the_store(command, tmp_path, monkeypatch, capsys,
                                                                     design_bench_dir):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlartifacts").write_text("a file")
    space = tmp_path.parent / f"{tmp_path.name}-space.yaml"
    space.write_text("name: s\ntrial: {task: TFBind8-Exact-v0, baseline: grad-ascent, fidelity: quick}\n")
    argv = RUN if command == "run" else ["sweep", str(space), "--quiet"]
    one_line_exit_2([*argv, "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"], capsys, "mlartifacts")
    assert [p.name for p in tmp_path.iterdir()] == ["mlartifacts"]


# ---- data download never prints an endpoint's password (dd3, dd4) -----------------------------------

def test_data_download_masks_the_endpoints_password(serve, tmp_path):
    url = serve(lambda handler: answer(handler, 404, b'{"error": "not here"}'))  # fails at once, no retries
    env = {**os.environ, "HF_ENDPOINT": url.replace("http://", "http://u:hunter2@"), "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "0", "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"}
    done = subprocess.run([sys.executable, "-m", "ignite_mbo.cli", "data", "download", "--task", "tf_bind_8",
                           "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode != 0
    assert "hunter2" not in done.stdout + done.stderr, done.stderr
    assert "u:***@127.0.0.1" in done.stderr, done.stderr


# ---- SIGTERM (p4, p1, p7) --------------------------------------------------------------------------

def statuses(store: Path) -> list[str]:
    try:
        with sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True, timeout=5) as connection:
            return [row[0] for row in connection.execute("SELECT status FROM runs")]
    except sqlite3.Error:
        return []


@pytest.mark.slow
def test_sigterm_to_run_while_training_marks_the_run_killed(tmp_path, design_bench_dir):
    store = tmp_path / "mlflow.db"
    argv = [sys.executable, "-m", "ignite_mbo.cli", "run", "--fidelity", "quick", "--quiet", "--threads", "1",
            "--set", "epochs=100000", "--tracking-uri", f"sqlite:///{store}"]
    process = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir)})
    try:
        deadline = time.monotonic() + 120
        while statuses(store) != ["RUNNING"] and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)  # training
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, err
    assert len(err.strip().splitlines()) == 1 and "SIGTERM" in err, err
    assert statuses(store) == ["KILLED"]


@pytest.mark.slow
def test_sigterm_while_a_new_store_is_built_leaves_no_half_built_store(tmp_path, design_bench_dir):
    """MLflow's migrations are stopped by SIGTERM after a first table exists (p1): the new store and its
    journal are removed, so the next run builds a fresh one instead of failing 'table issues already exists'."""
    script = (
        "import os, signal, sys, time\n"
        "import mlflow.store.db.utils as utils\n"
        "from ignite_mbo.cli import main\n"
        "def upgrade(engine):\n"
        "    with engine.begin() as connection:\n"
        "        connection.exec_driver_sql('CREATE TABLE issues (id INTEGER)')\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "utils._upgrade_db = upgrade\n"
        f"sys.exit(main({[*RUN, '--tracking-uri', f'sqlite:///{tmp_path}/mlflow.db']!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir)})
    assert done.returncode == 143, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())


@pytest.mark.slow
def test_sigterm_to_a_sweep_while_ray_starts_exits_143_and_releases_the_folder(tmp_path, design_bench_dir):
    space = tmp_path / "space.yaml"
    space.write_text("name: tiny\ntrial: {task: TFBind8-Exact-v0, baseline: grad-ascent, fidelity: quick}\n")
    argv = [sys.executable, "-m", "ignite_mbo.cli", "sweep", str(space), "--num-cpus", "1",
            "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    process = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir)})
    err, _ = stop_when(process, ray_starting(process, 1))  # Ray takes over 1 s to start anywhere; CI had Tune running by 7 s
    assert process.returncode == 143, err
    assert "SIGTERM received" not in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "ignite_mbo_results" / "tiny").exists()


# ---- third pass: redirects, masks, sweep.json, dangling artifact links, HTTP 500 (F1, F2, F10, F6) -----

@pytest.fixture
def logger() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """An HTTP server on another host (127.0.0.2, else 127.0.0.1) that records every request's headers."""
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            seen.append(dict(self.headers.items()))
            answer(self, 200, MLFLOW_JSON)

        def log_message(self, *args: object) -> None:
            pass

    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    except OSError:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    assert isinstance(host, str)
    try:
        yield f"http://{host}:{port}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("auth", ["userinfo", "token"])
def test_the_probe_never_follows_a_redirect_with_credentials(auth, serve, logger, tmp_path, monkeypatch, capsys):
    target, seen = logger

    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", target + handler.path)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    url = serve(reply)
    if auth == "userinfo":
        url = url.replace("http://", "http://alice:hunter2@")
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-hunter2")
    monkeypatch.chdir(tmp_path)
    err = one_line_exit_2([*RUN, "--tracking-uri", url], capsys, "redirect")
    assert target in err and "hunter2" not in err, err
    assert not any("Authorization" in headers for headers in seen), seen
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("text", "shown"), [
    ("http://alice:p@ssWORDLEAK@127.0.0.1:5999", "http://alice:***@127.0.0.1:5999"),
    ("uri http://alice:pw LEAK@host:1/x here", "uri http://alice:***@host:1/x here"),
    ("http://ghp_TOKEN@host/x", "http://***@host/x"),
    ("mlflow+https://u:p q@h and sqlite:///a:b@c", "mlflow+https://u:***@h and sqlite:///a:b@c"),
    ("no server at http://127.0.0.1:1/?token=QueryS3cret; start", "no server at http://127.0.0.1:1/?***; start"),
    ("'https://u:p@h:5/x?a=b&key=K'", "'https://u:***@h:5/x?***'"),
])
def test_mask_hides_the_whole_userinfo_and_query(text, shown):
    assert mask(text) == shown


def test_sweep_json_holds_no_password_and_resume_takes_it_again(serve, tmp_path, monkeypatch):
    url = serve(requiring_basic_auth(b"alice:pw"))
    secret = url.replace("http://", "http://alice:pw@")
    space = tmp_path / "space.yaml"
    space.write_text("name: s\ntrial: {task: TFBind8-Exact-v0, baseline: grad-ascent, fidelity: quick}\n")
    folder = tmp_path / "out" / "s"
    folder.mkdir(parents=True)
    record = SweepRecord(spec=load_spec(space).model_dump(mode="json"), tracking_uri=secret, experiment="s",
                         parent_run_id="0" * 32, storage_path=str(folder.parent),
                         experiment_path=str(folder))
    record.save(folder)
    text = (folder / SWEEP_FILE).read_text()
    assert "pw" not in text and "alice" not in text and url in text, text
    assert record.tracking_uri == secret  # only the file is without it
    plan = plan_sweep(space, tracking_uri=secret, output_dir=tmp_path / "out", resume=True)
    assert plan.tracking_uri == secret
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    assert plan_sweep(space, output_dir=tmp_path / "out", resume=True).tracking_uri == url
    with pytest.raises(UserError, match="resume without --tracking-uri"):
        plan_sweep(space, tracking_uri=f"sqlite:///{tmp_path}/other.db", output_dir=tmp_path / "out", resume=True)


def test_a_dangling_artifact_root_link_is_refused_before_the_store(tmp_path, monkeypatch, capsys, design_bench_dir):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlartifacts").symlink_to("/nonexistent-ignite-mbo")
    one_line_exit_2([*RUN, "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"], capsys, "mlartifacts")
    assert [p.name for p in tmp_path.iterdir()] == ["mlartifacts"]


def test_a_server_that_answers_500_after_the_probe_is_named_so(serve, tmp_path, monkeypatch, capsys,
                                                                design_bench_dir):
    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        if "max_results=1" in handler.path:  # ignite-mbo's probe
            answer(handler, 200, MLFLOW_JSON)
        else:
            answer(handler, 500, b'{"error_code": "INTERNAL_ERROR"}')

    url = serve(reply)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    err = one_line_exit_2([*RUN, "--tracking-uri", url], capsys, "HTTP 500")
    assert "did not answer in time" not in err, err


def test_a_store_with_a_hot_journal_from_a_killed_writer_is_read_not_refused(tmp_path):
    """A writer killed mid-transaction (a second Ctrl-C) leaves ``mlflow.db-journal``; a read-only open then
    fails with "attempt to write a readonly database". The guard reads it as SQLite would, rolled back."""
    from ignite_mbo.store_guard import check_sqlite_store

    store = tmp_path / "mlflow.db"
    killed_mid_transaction = (
        "import os, sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1]); c.execute('create table t(x)'); c.commit()\n"
        "c.execute('pragma cache_size=1'); c.execute('begin')\n"
        "for _ in range(2000): c.execute('insert into t values (?)', ('x' * 500,))\n"
        "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", killed_mid_transaction, str(store)], check=True, timeout=60)
    assert (tmp_path / "mlflow.db-journal").stat().st_size > 0
    with pytest.raises(UserError, match="another program's SQLite database .tables: t."):
        check_sqlite_store(store)  # read, not "cannot be read as SQLite"
    assert sqlite3.connect(store).execute("select count(*) from t").fetchone() == (0,), "the last committed state"


# ---- fifth pass: the store misbehaves after the probe (R7: redirects; R8: the run is closed, not left RUNNING) --

def recording(seen: list[str]) -> Reply:
    """A listener that records every request that reaches it (method and path) and answers like MLflow."""
    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        seen.append(f"{handler.command} {handler.path} auth={'Authorization' in handler.headers}")
        answer(handler, 200, MLFLOW_JSON)

    return reply


def redirecting_to(target: str, status: int = 307) -> Callable[[http.server.BaseHTTPRequestHandler], None]:
    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Location", target + handler.path)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return reply


@pytest.mark.parametrize("status", [302, 307])
def test_mlflow_calls_after_the_probe_never_follow_a_redirect(status, serve, tmp_path, monkeypatch, capsys,
                                                              design_bench_dir):
    """The probe gets MLflow's answer, every later MLflow call a redirect to another port: nothing reaches
    it (a 307 would carry the body), and the line names the redirect, not a timeout or HTTP 500."""
    seen: list[str] = []
    target = serve(recording(seen))
    redirect = redirecting_to(target, status)

    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        if "max_results=1" in handler.path:  # ignite-mbo's probe
            answer(handler, 200, MLFLOW_JSON)
        else:
            redirect(handler)

    url = serve(reply).replace("http://", "http://alice:hunter2@")
    monkeypatch.chdir(tmp_path)
    err = one_line_exit_2([*RUN, "--tracking-uri", url], capsys, f"answered a redirect (HTTP {status} to {target}/")
    assert "does not follow redirects" in err and "hunter2" not in err, err
    assert seen == []


class MlflowProxy:
    """A proxy on 127.0.0.1 in front of a real MLflow server that passes every request until the run logs its
    first metrics, then answers ``fault(handler, seconds since then)`` where that returns True; records what
    it did."""

    def __init__(self, upstream: str, fault: Callable[[http.server.BaseHTTPRequestHandler, float], bool]) -> None:
        import http.client

        self.log: list[str] = []
        self.tripped_at: float | None = None
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.tripped_at is None and "log-batch" in self.path and b'"step"' in body:
                    proxy.tripped_at = time.monotonic()
                if proxy.tripped_at is not None and "/api/" in self.path:
                    if fault(self, time.monotonic() - proxy.tripped_at):
                        proxy.log.append(f"fault {self.command} {self.path}")
                        return
                proxy.log.append(f"pass {self.command} {self.path}")
                host, port = upstream.removeprefix("http://").split(":")
                connection = http.client.HTTPConnection(host, int(port), timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                connection.request(self.command, self.path, body=body or None, headers=headers)
                response = connection.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mlflow_upstream(tmp_path: Path) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (sqlite store, proxied artifacts), stopped afterwards."""
    import socket

    from processes import answers_health, wait_until_up

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mlflow = Path(sys.executable).parent / "mlflow"
    command = [str(mlflow) if mlflow.exists() else "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
               "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"]
    log = tmp_path / "mlflow.log"
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(lambda: answers_health(uri), process, log, "the MLflow server", timeout_s=120, interval_s=0.5)
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def run_statuses(upstream: str) -> list[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(upstream)
    experiment = client.get_experiment_by_name("runs")
    return [run.info.status for run in client.search_runs([experiment.experiment_id])] if experiment else []


@pytest.mark.slow
def test_a_redirect_mid_run_is_not_followed(mlflow_upstream, serve, tmp_path, monkeypatch, capsys,
                                            design_bench_dir):
    """R7: once the run logs metrics, the server answers 307 to another port: nothing arrives there, and the
    line names the redirect and that the run may show RUNNING (closing it is redirected too)."""
    seen: list[str] = []
    target = serve(recording(seen))
    redirect = redirecting_to(target, 307)

    def fault(handler: http.server.BaseHTTPRequestHandler, _: float) -> bool:
        redirect(handler)
        return True

    proxy = MlflowProxy(mlflow_upstream, fault)
    monkeypatch.chdir(tmp_path)
    try:
        started = time.monotonic()
        err = one_line_exit_2([*RUN, "--tracking-uri", proxy.url.replace("http://", "http://alice:hunter2@")],
                              capsys, f"answered a redirect (HTTP 307 to {target}/")
        assert time.monotonic() - started < 60
    finally:
        proxy.close()
    assert proxy.tripped_at is not None, proxy.log
    assert seen == [], seen
    assert "may show RUNNING" in err and "hunter2" not in err, err


@pytest.mark.slow
def test_a_store_that_fails_for_seconds_mid_run_gets_the_run_closed_failed(mlflow_upstream, tmp_path, monkeypatch,
                                                                          capsys, design_bench_dir):
    """R8: HTTP 500 for 4 s from the first metrics on, then healthy: the run fails in one line (HTTP 500), and
    its MLflow run is marked FAILED with the reason, not left RUNNING."""

    def fault(handler: http.server.BaseHTTPRequestHandler, since: float) -> bool:
        if since > 4:
            return False
        answer(handler, 500, b'{"error_code": "INTERNAL_ERROR", "message": "boom"}')
        return True

    with failing_through(MlflowProxy(mlflow_upstream, fault), monkeypatch, tmp_path) as proxy:
        err = one_line_exit_2([*RUN, "--tracking-uri", proxy.url], capsys, "HTTP 500")
    assert "may show RUNNING" not in err, err
    assert run_statuses(mlflow_upstream) == ["FAILED"], proxy.log


@contextmanager
def failing_through(proxy: MlflowProxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[MlflowProxy]:
    """A command run in ``tmp_path`` against ``proxy`` (closed afterwards), whose failed HTTP calls fail at once
    (no retries by MLflow) and whose run closing gets its full budget of tries."""
    from ignite_mbo import run_closing

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setattr(run_closing, "_gave_up_at", [float("-inf")])
    try:
        yield proxy
    finally:
        proxy.close()


def answers_500_to(part: str, method: str = "") -> Callable[[http.server.BaseHTTPRequestHandler, float], bool]:
    """A fault for :class:`MlflowProxy`: HTTP 500 to every request whose path holds ``part`` (and of ``method``)."""
    def fault(handler: http.server.BaseHTTPRequestHandler, since: float) -> bool:
        if part not in handler.path or method not in handler.command:
            return False
        answer(handler, 500, b'{"error_code": "INTERNAL_ERROR", "message": "boom"}')
        return True

    return fault


@pytest.mark.slow
def test_a_run_whose_first_writes_fail_is_closed_failed_not_left_running(mlflow_upstream, tmp_path, monkeypatch,
                                                                          capsys, design_bench_dir):
    """Pass 17: runs/create passed, then every log-batch (the run's params first) answered 500. `run` failed in one
    line, but its new run stayed RUNNING for good: no runs/update was sent."""
    with failing_through(MlflowProxy(mlflow_upstream, answers_500_to("runs/log-batch")), monkeypatch, tmp_path) as proxy:
        proxy.tripped_at = time.monotonic()  # faults from the first request on
        err = one_line_exit_2([*RUN, "--tracking-uri", proxy.url], capsys, "HTTP 500")
    assert "may show RUNNING" not in err, err
    assert any(line.startswith("fault POST /api/2.0/mlflow/runs/log-batch") for line in proxy.log), proxy.log
    assert run_statuses(mlflow_upstream) == ["FAILED"], proxy.log


@pytest.mark.slow
def test_a_sweep_whose_first_artifact_fails_closes_its_sweep_run(mlflow_upstream, tmp_path, monkeypatch, capsys,
                                                                 design_bench_dir):
    """Pass 17: the upload of the sweep's first artifact (sweep_spec.json) answered 500. The sweep gave its folder
    back in one line, but its parent run `sweep:<name>` stayed RUNNING on the server."""
    from mlflow.tracking import MlflowClient

    (tmp_path / "tiny.yaml").write_text("name: tiny\ntrial: {fidelity: quick}\ngrid: {seed: [0]}\n")
    with failing_through(MlflowProxy(mlflow_upstream, answers_500_to("mlflow-artifacts", "PUT")), monkeypatch,
                         tmp_path) as proxy:
        proxy.tripped_at = time.monotonic()
        assert main(["sweep", "tiny.yaml", "--tracking-uri", proxy.url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("running 1 trials") and "HTTP 500" in err[-1] and len(err) == 2, err
    assert any(line.startswith("fault PUT") for line in proxy.log), proxy.log
    client = MlflowClient(mlflow_upstream)
    experiment = client.get_experiment_by_name("tiny")
    assert experiment is not None, proxy.log
    runs = client.search_runs([experiment.experiment_id])
    assert [(run.info.run_name, run.info.status) for run in runs] == [("sweep:tiny", "FAILED")], proxy.log
    assert not (tmp_path / "ignite_mbo_results" / "tiny").exists()
