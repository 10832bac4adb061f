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


def test_a_full_disk_without_a_file_name_is_named_by_the_fullest_path_the_command_writes(tmp_path, monkeypatch) -> None:
    """Pass 9: ``report`` on a full disk said 'a device this command writes to' (the error named no file); the line
    now names the argument whose device is (nearly) full."""
    import errno
    import os
    from types import SimpleNamespace

    from ignite_mbo.errors import path_error

    store, output = tmp_path / "small" / "mlflow.db", tmp_path / "out"
    store.parent.mkdir()
    real = os.statvfs

    def statvfs(path: object) -> object:
        free = 4096 if str(path).startswith(str(store.parent)) else real(path).f_bavail
        return SimpleNamespace(f_bavail=free, f_frsize=1)

    monkeypatch.setattr(os, "statvfs", statvfs)
    full = OSError(errno.ENOSPC, "No space left on device")
    line = path_error(full, [output, f"sqlite:///{store}", 3, None, ["x"]])
    assert line is not None and str(store) in line and "4,096 bytes free" in line, line
    monkeypatch.setattr(os, "statvfs", real)
    assert "a device this command writes to" in (path_error(full, [output]) or ""), "no full device: the old line"
