"""cluster.yaml: valid for Ray's cluster launcher (its own schema and checks), offline; and it does what
docs/cluster.md says (CUDA torch, the package, the data, token auth, the MLflow server on the head)."""

from __future__ import annotations

import copy
import json
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


@pytest.fixture(scope="module")
def prepared(raw) -> dict:
    """What `ray up` validates: the config merged with the provider's defaults (no cloud calls)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def test_validates_against_rays_schema(raw, prepared):
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(raw, schema)  # as written, not only after defaults are merged in
    assert prepared["provider"]["type"] == "aws"


def test_head_plus_autoscaling_gpu_workers(prepared):
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "trials stay off the head"
    workers = [t for name, t in types.items() if name != prepared["head_node_type"]]
    assert workers and all(t["resources"].get("GPU", 0) >= 1 for t in workers)
    assert all(t.get("min_workers", 0) == 0 and t["max_workers"] > 0 for t in workers), "scales from zero"
    assert sum(t["max_workers"] for t in workers) <= prepared["max_workers"]
    for node_type in types.values():
        image = node_type["node_config"]["ImageId"]
        assert image.startswith(("ami-", "resolve:ssm:/aws/service/deeplearning/"))


def test_setup_installs_cuda_torch_then_the_package_and_fetches_data(prepared):
    setup = prepared["setup_commands"]
    torch_step = next(i for i, c in enumerate(setup) if "download.pytorch.org/whl/cu" in c and " torch " in c)
    package_step = next(i for i, c in enumerate(setup) if "-e ~/ignite-mbo" in c)
    assert torch_step < package_step, "the CUDA build first, so the package's torch requirement is already met"
    head_setup = prepared["head_setup_commands"]  # prepare_config puts setup_commands first
    assert any("ignite-mbo data download" in c for c in head_setup)
    assert any("MLFLOW_TRACKING_URI=http://" in c for c in head_setup)
    assert any("IGNITE_MBO_STORAGE_PATH=s3://" in c for c in head_setup)


def test_head_starts_ray_with_token_auth_and_an_mlflow_server_on_its_private_address(prepared):
    head = " && ".join(prepared["head_start_ray_commands"])
    assert "RAY_AUTH_MODE=token ray start --head" in head and "--dashboard-host" in head
    mlflow = next(c for c in prepared["head_start_ray_commands"] if "mlflow server" in c)
    assert "--host $(hostname -I | cut -d\" \" -f1)" in mlflow, "bound to the private address, not 0.0.0.0"
    assert "--artifacts-destination" in mlflow and "--backend-store-uri sqlite:///" in mlflow
    assert '--allowed-hosts "$(hostname -I | cut -d" " -f1):5000,' in mlflow, "MLflow's host check: any address"
    worker = " && ".join(prepared["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token ray start --address=$RAY_HEAD_IP:6379" in worker
    mounts = prepared["file_mounts"]
    assert mounts.get("~/.ray/auth_token") == "~/.ray/auth_token", "every node shares the submitter's token"
    assert (ROOT / mounts["~/ignite-mbo"] / "pyproject.toml").is_file(), "the repository is synced"


def test_every_command_is_valid_bash(prepared):
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")
    for key in keys:
        for command in prepared[key]:
            checked = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
            assert checked.returncode == 0, f"{key}: {command}\n{checked.stderr}"
            shlex.split(command)  # quotes balance


def test_the_dashboard_listens_on_localhost_only_and_no_token_is_printed(raw, prepared):
    head = " && ".join(prepared["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head, "reached through `ray dashboard`'s tunnel"
    text = (ROOT / "cluster.yaml").read_text() + (ROOT / "docs" / "cluster.md").read_text()
    generating = [line for line in text.splitlines() if "ray get-auth-token" in line and "--generate" in line]
    assert generating and all(">/dev/null" in line for line in generating), "the token never reaches the terminal"


def test_the_submit_entry_script_works_when_copied_alone(tmp_path):
    """`ray submit cluster.yaml scripts/ignite_mbo_entry.py -- ...` copies the file alone and runs it with python."""
    import sys

    alone = tmp_path / "ignite_mbo_entry.py"
    alone.write_text((ROOT / "scripts" / "ignite_mbo_entry.py").read_text())
    version = subprocess.run([sys.executable, str(alone), "--version"], cwd=tmp_path, capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("ignite-mbo "), version.stderr
    bad = subprocess.run([sys.executable, str(alone), "sweep", "missing.yaml"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "search space missing.yaml not found" in bad.stderr
    assert list(tmp_path.iterdir()) == [alone], "nothing written"
