"""``ignite-mbo rerun RUN_ID``: run a recorded trial again from its MLflow record alone, and compare scores.

The run's params give the trial config (:func:`ignite_mbo.provenance.config_from_params`); the
effective baseline settings it recorded are pinned when today's code would resolve them differently.
The run's tags say which code and libraries it ran with; a difference is printed, not refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ignite_mbo import mlflow_store as store
from ignite_mbo import tasks
from ignite_mbo.config import TrialConfig
from ignite_mbo.errors import UserError, shown
from ignite_mbo.limits import check_trial
from ignite_mbo.progress import SILENT, Progress
from ignite_mbo.provenance import config_from_params, environment_tags
from ignite_mbo.trial import run_trial

SCORES = ("score_100th", "score_80th", "score_50th", "score_mean")
"""The oracle scores a rerun must reproduce."""


@dataclass
class Rerun:
    """A recorded trial run again: its config, the recorded and the new scores, and what differs."""

    run_id: str
    config: TrialConfig
    recorded: dict[str, float]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    """Settings pinned to their recorded values, and code or library versions that differ from the record."""

    def score_lines(self) -> list[str]:
        """One line per score: recorded, now, and whether they agree."""
        lines = []
        for name in SCORES:
            if name in self.recorded and name in self.summary:
                old, new = self.recorded[name], float(self.summary[name])
                verdict = "same" if math.isclose(old, new, rel_tol=1e-9, abs_tol=1e-12) else "DIFFERS"
                lines.append(f"{name:<12} recorded {old:.6f}  now {new:.6f}  {verdict}")
        return lines

    @property
    def same_scores(self) -> bool:
        lines = self.score_lines()
        return bool(lines) and not any(line.endswith("DIFFERS") for line in lines)


def rerun(tracking_uri: str, run_id: str, *, data_dir: str | None = None, device: str = "auto",
          progress: Progress = SILENT) -> Rerun:
    """Run trial ``run_id`` of the store at ``tracking_uri`` again, in this process (no Ray, nothing recorded)."""
    params, tags, metrics = store.run_record(tracking_uri, run_id)
    config, changed = config_from_params(params)
    notes = list(changed)
    now = environment_tags()
    notes += [f"{key.removeprefix('ignite_mbo.')}: recorded {tags[key]}, now {value}"
              for key, value in now.items() if key in tags and tags[key] != value]
    if not any(key in tags for key in now):
        notes.append("the run records no code or library versions (made before ignite-mbo recorded them)")
    for name in SCORES:  # compared at the end: checked before the trial runs
        if name in metrics and not isinstance(metrics[name], (int, float)):  # a float, unless the store was edited
            raise UserError(f"the run's recorded {name} is {shown(metrics[name])}, not a number (an edited record?); "
                            "pass the id of a trial run made by ignite-mbo")
    task = tasks.make(config.task, data_dir, **config.checked_task_options())
    check_trial(config, task, device=device)  # an edited record meets the bounds `run` checks, in one line
    result = run_trial(config, task, device=device, progress=progress)
    recorded = {name: metrics[name] for name in SCORES if name in metrics}
    return Rerun(run_id, config, recorded, dict(result.summary), notes)
