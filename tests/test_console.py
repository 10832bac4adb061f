"""What the terminal shows: the sweep's start line, its table with a live N/M done line, a resumed sweep's
state, and download retries as they happen."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ignite_mbo.config import TrialConfig
from ignite_mbo.platform.console import TrialTable, announce, duration
from ignite_mbo.retries import retries_shown
from ignite_mbo.trainables.params import TrialLookup

GRID = [{"task": "TFBind8-Exact-v0", "baseline": "grad-ascent", "regularizer": {"name": name}, "seed": 0}
        for name in ("none", "ignite")]
LOOKUP = TrialLookup([TrialConfig.parse(point) for point in GRID])


@dataclass
class FakeTrial:
    trial_id: str
    config: dict[str, Any]
    status: str = "PENDING"
    last_result: dict[str, Any] = field(default_factory=dict)


def test_the_sweep_says_what_it_runs_and_where_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    announce(tmp_path / "ignite_mbo_results" / "quick-2", 12, resume=False)
    assert capsys.readouterr().err == "running 12 trials -> ignite_mbo_results/quick-2 (starting Ray)\n"
    announce(Path("/elsewhere/quick"), 12, resume=True)
    assert capsys.readouterr().err == "resuming 12 trials -> /elsewhere/quick (starting Ray)\n"


def test_rows_on_stdout_and_a_done_count_with_eta_on_stderr(capsys):
    table = TrialTable(LOOKUP)
    trials = [FakeTrial("a", {"trial": GRID[0]}), FakeTrial("b", {"trial": GRID[1]})]
    table.setup(total_num_samples=2)
    table.on_step_begin(0, trials)
    trials[0].last_result = {"trial_completed": 1, "score_100th": 0.9123, "surrogate_epochs": 3}
    table.on_trial_complete(1, trials, trials[0])
    trials[1].last_result = {"trial_completed": 1, "score_100th": 0.5, "recovered_finished_run": 1}
    table.on_trial_complete(2, trials, trials[1])
    table.on_experiment_end(trials)
    captured = capsys.readouterr()
    rows = [line.split() for line in captured.out.splitlines()]
    assert rows[0][0] == "baseline" and rows[2] == ["grad-ascent", "none", "TFBind8", "0", "finished", "3", "0.912"]
    assert rows[3][5] == "restored", "a trial recovered from its finished run does not claim 0 epochs"
    status = captured.err.splitlines()
    assert status[0].startswith("1/2 done, ETA ") and status[1] == "2/2 done"
    assert "\x1b" not in captured.out + captured.err, "no escape codes"


def test_a_resumed_sweep_says_how_much_was_done(capsys):
    table = TrialTable(LOOKUP, total=12)
    trials = [FakeTrial(str(i), {"trial": GRID[0]}, status="TERMINATED" if i < 5 else "PENDING") for i in range(12)]
    table.setup(total_num_samples=12)
    table.on_step_begin(0, trials)
    table.on_step_begin(1, trials)
    trials[5].last_result = {"trial_completed": 1, "score_100th": 0.7}
    table.on_trial_complete(2, trials, trials[5])
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "resuming: 5 of 12 done" and err[1].startswith("6/12 done, ETA ")


def test_durations_read_as_people_write_them():
    assert [duration(s) for s in (0, 42.4, 185, 3725)] == ["0s", "42s", "3m05s", "1h02m"]


def test_download_retries_are_shown_as_they_happen(capsys, monkeypatch):
    # huggingface_hub's own handler keeps the sys.stderr of whichever test first configured it (an earlier
    # test's closed capture): without it, this test sees only what it logs itself.
    monkeypatch.setattr(logging.getLogger("huggingface_hub"), "handlers", [])
    logger = logging.getLogger("huggingface_hub.utils._http")
    with retries_shown():
        logger.warning("'(ReadTimeoutError(\"HTTPSConnectionPool(host='huggingface.co', port=443): Read timed out.\"))' "
                       "thrown while requesting GET https://huggingface.co/datasets/x/resolve/main/a.npy?download=1")
        logger.warning("Retrying in 2s [Retry 2/5].")
        logger.info("not shown")
    logger.warning("after the download: not ours to show")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("download: retry 2/5 in 2s (") and "Read timed out" in lines[0]
    assert lines[0].endswith("a.npy)") and len(lines) <= 2
