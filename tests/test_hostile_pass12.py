"""Issue 18, twelfth adversarial pass (and what pass 11 noted beside its defects): one test per case."""

from __future__ import annotations

import signal

import pytest
import sqlalchemy.exc

from ignite_mbo.cli import main
from ignite_mbo.platform.signals import Stopped
from ignite_mbo.store_guard import store_failure


def test_a_full_store_line_quotes_the_cause_not_sqlalchemys_autoflush_hint() -> None:
    """Pass 11: a store whose disk filled while MLflow's session autoflushed quoted SQLAlchemy's preamble
    ('raised as a result of Query-invoked autoflush; consider using a session.no_autoflush block ...')."""
    import sqlite3

    cause = sqlite3.OperationalError("database or disk is full")
    error = sqlalchemy.exc.OperationalError("INSERT INTO metrics ...", {}, cause)
    error.add_detail("raised as a result of Query-invoked autoflush; consider using a session.no_autoflush block "
                     "if this flush is occurring prematurely")
    assert str(error).startswith("(raised as a result of Query-invoked autoflush"), str(error)  # as SQLAlchemy says it
    line = store_failure(error)
    assert line is not None and "disk holding the tracking store is full" in line, line
    assert "autoflush" not in line and "database or disk is full" in line, line


@pytest.mark.parametrize(("stop", "status"), [(KeyboardInterrupt(), 130), (Stopped(signal.SIGTERM), 143)])
def test_a_resume_stopped_before_tune_names_the_resume_command(stop, status, monkeypatch, capsys) -> None:
    """Pass 11: Ctrl-C while ``sweep --resume`` still imported its libraries said only 'interrupted'; the sweep is
    as it was, and the line now says how to finish it. A new sweep stopped that early has nothing to finish."""
    import ignite_mbo.platform.sweep as sweep

    def stopped(*args: object, **kwargs: object) -> None:
        raise stop

    monkeypatch.setattr(sweep, "run_sweep", stopped)
    assert main(["sweep", "space.yaml", "--num-cpus", "1", "--resume"]) == status
    line = capsys.readouterr().err.strip()
    assert line.endswith("; to finish the sweep run: ignite-mbo sweep space.yaml --num-cpus 1 --resume"), line
    assert main(["sweep", "space.yaml"]) == status
    assert "--resume" not in capsys.readouterr().err
