"""`ignite-mbo sweep --address auto` as a Ray job: a local head with the dashboard (the job server) and
token authentication, an MLflow tracking server as on a cluster's head, `ray job submit` of the
quick sweep, and the MLflow runs (with artifacts uploaded through the server) it made.

The head gets its own token file (RAY_AUTH_TOKEN_PATH, never ~/.ray), free ports and a short temp
dir; the head and the MLflow server are stopped by their process ids (their process groups, then
every process carrying this test's marker in its environment) even when the test fails. Nothing
else on the machine is touched.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from processes import answers_health, kill_marked, wait_until_up

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray") if (BIN / "ray").exists() else (shutil.which("ray") or "ray")
IGNITE_BIN = Path(shutil.which("ignite-mbo", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}") or BIN).parent
MARKER = "IGNITE_MBO_TEST_HEAD"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Head:
    address: str  # the job server (dashboard) URL
    env: dict[str, str]  # what a client of this cluster needs: RAY_AUTH_MODE=token and the token


def ray_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def ray_head(tmp_path):
    temp = tempfile.mkdtemp(prefix="rj", dir="/tmp")  # short: Ray's unix sockets live under it
    token = Path(temp) / "auth_token"
    token.write_text(secrets.token_hex(32))
    marker = uuid.uuid4().hex
    env = {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), MARKER: marker,
                "PATH": f"{IGNITE_BIN}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    gcs, dashboard, client, agent, agent_grpc, runtime_env, metrics, node_manager, objects = free_ports(9)
    command = [
        RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={runtime_env}",
        f"--metrics-export-port={metrics}", f"--node-manager-port={node_manager}",
        f"--object-manager-port={objects}", "--num-cpus=2", "--num-gpus=0", f"--temp-dir={temp}",
        "--disable-usage-stats",
    ]
    log = (tmp_path / "head.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    head = Head(f"http://127.0.0.1:{dashboard}", env)
    try:
        wait_until_up(lambda: ray_cli("job", "list", "--address", head.address, env=env).returncode == 0,
                      process, tmp_path / "head.log", "the job server", timeout_s=180, interval_s=2)
        yield head
    finally:
        with closing(log):
            stop(process, marker)  # `ray start --block` stops its children on SIGTERM; the rest by id
        shutil.rmtree(temp, ignore_errors=True)


def stop(process: subprocess.Popen, marker: str) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    kill_marked(MARKER, marker)
    process.wait(timeout=30)


@pytest.fixture
def mlflow_server(tmp_path):
    """`mlflow server` as cluster.yaml starts it (here on 127.0.0.1): sqlite store, proxied artifacts."""
    (port,) = free_ports(1)
    marker = uuid.uuid4().hex
    env = {**os.environ, MARKER: marker, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [str(BIN / "mlflow") if (BIN / "mlflow").exists() else "mlflow", "server", "--host", "127.0.0.1",
               "--port", str(port), "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
               "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"]
    with (tmp_path / "mlflow.log").open("w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(lambda: answers_health(uri), process, tmp_path / "mlflow.log", "the MLflow server",
                      timeout_s=120, interval_s=1)
        yield uri
    finally:
        stop(process, marker)


def start_mlflow_server(tmp_path: Path, host: str, *extra: str) -> tuple[subprocess.Popen, str, str]:
    """`mlflow server` on ``host`` and a free port with a sqlite store: the process, its URL, its marker."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    marker = uuid.uuid4().hex
    env = {**os.environ, MARKER: marker, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [str(BIN / "mlflow") if (BIN / "mlflow").exists() else "mlflow", "server", "--host", host,
               "--port", str(port), "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
               "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1", *extra]
    with (tmp_path / "mlflow.log").open("w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return process, f"http://{host}:{port}", marker


def test_the_precheck_names_allowed_hosts_when_mlflow_refuses_the_address(tmp_path, capsys):
    """127.0.0.2 is a loopback address but neither localhost nor RFC 1918: MLflow's default host check
    refuses it as it refuses a public IP. /health still answers; the pre-check's API call does not."""
    from ignite_mbo.cli import main

    process, uri, marker = start_mlflow_server(tmp_path, "127.0.0.2")
    try:
        wait_until_up(lambda: answers_health(uri), process, tmp_path / "mlflow.log", "the MLflow server",
                      timeout_s=120, interval_s=1)
        assert main(["run", "--tracking-uri", uri, "--quiet"]) == 2
        error = capsys.readouterr().err.strip()
        host = uri.removeprefix("http://")
        assert error.splitlines() == [error] and "refuses requests addressed to" in error
        assert f"--allowed-hosts 127.0.0.2,{host}" in error, error
    finally:
        stop(process, marker)


@pytest.mark.slow
def test_quick_sweep_as_a_ray_job_with_token_auth(ray_head, mlflow_server, tmp_path, design_bench_dir):
    no_token = {key: value for key, value in ray_head.env.items() if key != "RAY_AUTH_MODE"}
    refused = ray_cli("job", "list", "--address", ray_head.address, env=no_token)
    assert refused.returncode != 0 and "Authentication required" in refused.stdout + refused.stderr

    uri = mlflow_server
    entrypoint = [
        "ignite-mbo", "sweep", str(ROOT / "search_spaces" / "quick.yaml"), "--address", "auto",
        "--tracking-uri", uri, "--output-dir", str(tmp_path / "out"), "--data-dir", str(design_bench_dir),
        "--override", "grid.seed=[0]",
        "--override", "trial.baseline_options={hidden_size: 32, epochs: 1, batch_size: 2048, solver_steps: 20}",
    ]
    submitted = ray_cli("job", "submit", "--address", ray_head.address, "--submission-id", "quick-sweep",
                        "--", *entrypoint, env=ray_head.env, timeout=600)
    output = submitted.stdout + submitted.stderr
    assert submitted.returncode == 0 and "Job 'quick-sweep' succeeded" in output, output[-4000:]
    assert "3 trials (0 failed)" in output

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("quick").experiment_id
    runs = client.search_runs([experiment], "tags.`ignite_mbo.kind` = 'trial'")
    sweep = client.search_runs([experiment], "tags.`ignite_mbo.kind` = 'sweep'")
    assert len(sweep) == 1 and sweep[0].info.status == "FINISHED"
    assert len(runs) == 3 and {run.info.status for run in runs} == {"FINISHED"}
    assert {run.data.tags["ignite_mbo.regularizer"] for run in runs} == {"none", "ignite", "ignite2"}
    assert {run.data.tags["ignite_mbo.sweep_run_id"] for run in runs} == {sweep[0].info.run_id}
    assert {run.data.tags["ignite_mbo.device"] for run in runs} == {"cpu"}
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"candidates.parquet", "surrogate_0.pt", "summary.json"} <= artifacts, "uploaded through the server"
    table = pd.read_parquet(tmp_path / "out" / "quick" / "results.parquet")
    assert len(table) == 3 and set(table["status"]) == {"TERMINATED"}
    assert set(table["mlflow_run_id"]) == {run.info.run_id for run in runs}


def guide_block() -> str:
    """The shell lines of docs/cluster.md's "A local head, step by step", as a user copies them."""
    text = (ROOT / "docs" / "cluster.md").read_text()
    section = text[text.index("## A local head, step by step"):]
    section = section[:section.index("\n* **")]
    return "\n".join(line[4:] for line in section.splitlines() if line.startswith("    "))


@pytest.mark.slow
def test_the_local_head_guide_runs_as_written_on_a_non_private_address(tmp_path, design_bench_dir):
    """docs/cluster.md's steps, literally, with HEAD_IP=127.0.0.2 (loopback, but neither localhost nor RFC 1918:
    MLflow's host check treats it as a public address), free ports, a throwaway HOME (token, --temp-dir) and a
    smaller sweep; then the runs in the MLflow server's store, and nothing of the head left running."""
    home = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # short: Ray's unix sockets live under it
    gcs, dashboard, mlflow_port, client, agent, agent_grpc, runtime_env, metrics, node_manager = free_ports(9)
    block = guide_block()
    assert "HEAD_IP=127.0.0.1 " in block and "ray stop" not in block and "--allowed-hosts" in block
    small = ("--override grid.seed=[0] --override 'trial.baseline_options={hidden_size: 32, epochs: 1, "
             "batch_size: 2048, solver_steps: 20}'")
    block = (block.replace("HEAD_IP=127.0.0.1 ", "HEAD_IP=127.0.0.2 ")
             .replace("--port=6379", f"--port={gcs} --ray-client-server-port={client} "
                      f"--dashboard-agent-listen-port={agent} --dashboard-agent-grpc-port={agent_grpc} "
                      f"--runtime-env-agent-port={runtime_env} --metrics-export-port={metrics} "
                      f"--node-manager-port={node_manager}")
             .replace("8265", str(dashboard)).replace("5000", str(mlflow_port))
             .replace(f"--tracking-uri http://$HEAD_IP:{mlflow_port}", f"--tracking-uri http://$HEAD_IP:{mlflow_port} {small}")
             .replace('--output-dir "$PWD/ignite_mbo_results"', f'--output-dir "{tmp_path / "out"}"'))
    marker = uuid.uuid4().hex
    env = {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN",
                                                                          "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")}
    env.update({"HOME": str(home), MARKER: marker, "IGNITE_MBO_DATA_DIR": str(design_bench_dir),
                "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                "PATH": f"{IGNITE_BIN}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    try:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=900)
        output = done.stdout + done.stderr
        assert done.returncode == 0 and "Job 'quick-1' succeeded" in output, output[-4000:]
        assert output.count("3 trials (0 failed)") == 2, "the submission's log, then `ray job logs` again"
        noise = [word for word in ("View run", "Downloading artifacts", "Traceback") if word in output]
        assert not noise, output[max(0, output.find(noise[0]) - 2000):][:6000] if noise else ""
        deadline = time.monotonic() + 30
        while (left := processes_under(home)) and time.monotonic() < deadline:
            time.sleep(1)
        assert not left, f"the guide's kill left processes of the head running: {left}"
    finally:
        kill_marked(MARKER, marker)
    client_ = MlflowClient(f"sqlite:///{home / 'ignite-head' / 'mlflow.db'}")
    experiment = client_.get_experiment_by_name("quick").experiment_id
    (sweep,) = client_.search_runs([experiment], "tags.`ignite_mbo.kind` = 'sweep'")
    trials = client_.search_runs([experiment], "tags.`ignite_mbo.kind` = 'trial'")
    assert sweep.info.status == "FINISHED" and len(trials) == 3
    assert {run.info.status for run in trials} == {"FINISHED"}
    assert {run.data.tags["mlflow.parentRunId"] for run in trials} == {sweep.info.run_id}
    shutil.rmtree(home, ignore_errors=True)


def processes_under(folder: Path) -> list[str]:
    """Command lines of the processes that name ``folder`` (the head's --temp-dir, the server's store)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(folder) in command:
                found.append(command[:200])
    return found
