"""Issue 18, fifth adversarial pass: what still failed, one test per case.

A server that answers the probe with JSON nested thousands deep, or with bytes that are not HTTP, or
``{}`` to every call, gets one plain line; a store that fails on the first write after the probe gives
the sweep folder back; ``bo_raw_samples`` below ``bo_num_restarts`` is refused before anything runs; a
signal sent to the sweep's whole process group (a closed terminal, ``timeout``, ``kill -- -PGID``) stops
the sweep as a signal to the sweep alone does, because the local Ray's processes lead groups of their own.
Fake servers run on 127.0.0.1 inside the test and stop with it.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from ignite_mbo.cli import main
from ignite_mbo.errors import UserError, printable
from ignite_mbo.platform.checks import check_tracking_server

from processes import Reply, answer, http_servers, stop_when, trial_runs_started

RUN = ["run", "--fidelity", "quick", "--quiet", "--threads", "1", "--set", "epochs=1"]
TINY = "name: tiny\ntrial: {task: TFBind8-Exact-v0, baseline: grad-ascent, fidelity: quick}\n"


@pytest.fixture
def serve() -> Iterator[Callable[[Reply], str]]:
    with http_servers() as start:
        yield start


def one_plain_line(code: int, err: str, needle: str) -> None:
    assert code == 2, (code, err)
    line = err.strip()
    assert "\n" not in line and "Traceback" not in line and needle in line, line
    assert line.isprintable(), repr(line)


def test_printable_escapes_what_a_terminal_would_act_on() -> None:
    assert printable("a\x00b\rc\nd\x1b[31me") == "a\\x00b\\rc\\nd\\x1b[31me"
    assert printable("plain – ünïcode") == "plain – ünïcode"


def test_json_nested_thousands_deep_is_not_mlflow(serve) -> None:
    url = serve(lambda handler: answer(handler, 200, b"[" * 100_000 + b"]" * 100_000))
    with pytest.raises(UserError, match="not as an MLflow server"):
        check_tracking_server(url)


@pytest.fixture
def raw_bytes_server() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that answers every connection with NUL, CR, newlines and ANSI escapes."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with connection:
                connection.recv(65536)
                connection.sendall(b"\x00\x1b[31mEVIL\r\nsecond line\x1b[0m\r\n\r\n")

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_server_that_answers_raw_bytes_gets_one_plain_line(raw_bytes_server, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code = main([*RUN, "--tracking-uri", raw_bytes_server])
    one_plain_line(code, capsys.readouterr().err, raw_bytes_server)
    assert not list(tmp_path.iterdir())


def test_a_server_that_answers_empty_json_to_everything_is_named(serve, tmp_path, monkeypatch, capsys,
                                                                 design_bench_dir) -> None:
    url = serve(lambda handler: answer(handler, 200, b"{}"))
    monkeypatch.chdir(tmp_path)
    code = main([*RUN, "--tracking-uri", url])
    one_plain_line(code, capsys.readouterr().err, "without an id")


def test_bo_raw_samples_below_its_restarts_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys,
                                                                           design_bench_dir) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["run", "--baseline", "bo-qei", "--fidelity", "quick", "--quiet",
                 "--set", "bo_raw_samples=1", "--set", "bo_num_restarts=5"])
    one_plain_line(code, capsys.readouterr().err, "bo_raw_samples must be at least bo_num_restarts")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_store_that_fails_on_its_first_write_gives_the_sweep_folder_back(serve, tmp_path, monkeypatch, capsys,
                                                                          design_bench_dir) -> None:
    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        if "max_results=1" in handler.path:  # ignite-mbo's probe
            answer(handler, 200, b'{"experiments": []}')
        else:
            answer(handler, 500, b'{"error_code": "INTERNAL_ERROR"}')

    url = serve(reply)
    (tmp_path / "tiny.yaml").write_text(TINY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    code = main(["sweep", "tiny.yaml", "--quiet", "--num-cpus", "1", "--tracking-uri", url])
    one_plain_line(code, capsys.readouterr().err, "HTTP 500")
    assert not (tmp_path / "ignite_mbo_results").exists()  # the next sweep takes ignite_mbo_results/tiny


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_a_signal_to_the_sweeps_process_group_stops_it_gracefully(signum, tmp_path, design_bench_dir) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    argv = [sys.executable, "-m", "ignite_mbo.cli", "sweep", "tiny.yaml", "--num-cpus", "1",
            "--override", "trial.baseline_options.epochs=1000"]
    process = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env={**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir)})
    err, exit_s = stop_when(process, lambda: trial_runs_started(tmp_path / "mlflow.db"), signum, group=True)
    assert process.returncode == 128 + signum, err
    assert exit_s < 45, err  # not the 60 s a driver waits for a GCS the signal killed
    assert "--resume" in err and "GCS" not in err, err
