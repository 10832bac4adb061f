"""Pass 15 (an independent adversarial pass, 60 cases): a newline in a tracking URI or a search space's path."""

from __future__ import annotations

import os

import pytest

from ignite_mbo.cli import main

TINY = "name: tiny\ntrial: {task: TFBind8-Exact-v0, baseline: grad-ascent, fidelity: quick}\ngrid: {seed: [0]}\n"


@pytest.mark.parametrize("command", [["run", "--fidelity", "quick"], ["sweep", "tiny.yaml"]])
def test_a_tracking_uri_with_a_newline_is_refused_in_one_line_before_anything_is_written(command, tmp_path, capsys,
                                                                                          monkeypatch) -> None:
    """It was accepted: a store file named with a newline, and the closing 'MLflow store:' and 'mlflow ui' lines broken
    in two (--output-dir and --storage-path already refused one)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY)
    assert main([*command, "--tracking-uri", f"sqlite:///{tmp_path}/m\n.db"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "tracking URI" in line and "control character '\\n'" in line, line
    assert sorted(os.listdir(tmp_path)) == ["tiny.yaml"]


def test_a_search_space_path_with_a_newline_is_refused_in_one_line(tmp_path, capsys, monkeypatch) -> None:
    """It ran, and stopped, its resume command spanned two lines: the last line was not the command to run."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a\nb.yaml").write_text(TINY)
    assert main(["sweep", "a\nb.yaml"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "the search space 'a\\nb.yaml' holds the control character" in line, line
    assert sorted(os.listdir(tmp_path)) == ["a\nb.yaml"]
