"""Issue 18, twelfth adversarial pass (and what pass 11 noted beside its defects): one test per case."""

from __future__ import annotations

import sqlalchemy.exc

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
