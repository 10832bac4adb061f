"""The command line: --help everywhere, and bad input as one line on stderr, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ignite_mbo.cli import main


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working directory; tests assert it stays empty after bad input."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def fails_cleanly(capsys, workdir: Path, argv: list[str], needle: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert needle in err, err
    assert list(workdir.iterdir()) == [], "bad input must write nothing"
    return err


@pytest.mark.parametrize("command", [[], ["run"], ["sweep"], ["report"], ["data"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: ignite-mbo" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "--task", "TFBind9-Exact-v0"], "unknown task"),
        (["run", "--baseline", "gradient-descent"], "unknown baseline"),
        (["run", "--regularizer", "sam"], "unknown regularizer 'sam'; choose one of none, ignite, ignite2"),
        (["run", "--regularizer", "ignite", "--rho", "-1"], "rho"),
        (["run", "--regularizer", "none", "--epsilon", "0.1"], "unknown option"),
        (["run", "--seed", "abc"], "invalid int value"),
        (["run", "--seed", "-1"], "seed"),
        (["run", "--set", "epochs=many"], "epochs"),
        (["run", "--set", "epochs"], "KEY=VALUE"),
        (["run", "--fidelity", "medium"], "invalid choice"),
        (["sweep", "does-not-exist.yaml"], "not found"),
        (["report", "no-such-sweep"], "no results table"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, needle, capsys, workdir):
    fails_cleanly(capsys, workdir, argv, needle)


def test_missing_and_corrupt_data(capsys, workdir, design_bench_dir, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    err = fails_cleanly(capsys, workdir, ["run", "--data-dir", str(empty)], "TF-Bind-8 data missing")
    assert "ignite-mbo data download" in err
    corrupt = tmp_path_factory.mktemp("corrupt")
    shutil.copytree(design_bench_dir / "tf_bind_8-SIX6_REF_R1", corrupt / "tf_bind_8-SIX6_REF_R1")
    target = corrupt / "tf_bind_8-SIX6_REF_R1" / "tf_bind_8-y-0.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    fails_cleanly(capsys, workdir, ["run", "--data-dir", str(corrupt)], "corrupt")
    fails_cleanly(capsys, workdir, ["data", "verify", "--task", "tf_bind_8", "--data-dir", str(corrupt)], "tf_bind_8")


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("name: x\ntrial: {task: [unclosed\n", "not valid YAML at line"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("name: x\ntrial: {baseline: nope}\n", "unknown baseline"),
        ("name: x\ngrid: {seed: [0, -3]}\n", "seed"),
        ("name: x\ntrial: {}\nresorces: {cpu: 1}\n", "unknown option"),
        ("name: x\nresources: {gpu: -1}\n", "gpu"),
        ("name: x\ngrid: {regularizer: [none, {name: ignite, rho: zero}]}\n", "rho"),
    ],
)
def test_malformed_search_space(yaml_text, needle, capsys, workdir, tmp_path_factory):
    space = tmp_path_factory.mktemp("spaces") / "space.yaml"
    space.write_text(yaml_text)
    fails_cleanly(capsys, workdir, ["sweep", str(space)], needle)


def test_run_prints_summary_json_on_last_line(design_bench_dir):
    """The installed console script end to end, as a user runs it."""
    completed = subprocess.run(
        ["ignite-mbo", "run", "--regularizer", "ignite", "--fidelity", "quick", "--seed", "1",
         "--set", "hidden_size=64", "--set", "epochs=1", "--epsilon", "0.05"],
        capture_output=True, text=True, env={**os.environ, "IGNITE_MBO_DATA_DIR": str(design_bench_dir),
                                            "OMP_NUM_THREADS": "1"}, check=True,
    )
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    for key in ("score_100th", "score_80th", "score_50th", "num_candidates", "sharpness_candidates",
                "sharpness_train", "final_lambda"):
        assert key in summary
    assert summary["num_candidates"] == 128
    assert summary["config"]["regularizer"]["epsilon"] == 0.05
