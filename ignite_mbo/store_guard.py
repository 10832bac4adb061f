"""A tracking store that misbehaves fails fast and in one line, and never leaks a password.

- Every MLflow HTTP call has a timeout, few retries and an overall deadline (:func:`bound_http_calls`): a
  server that accepts the connection and never answers, or trickles its answer, gives an error within
  seconds, not a hang.
- A SQLite file that is not an MLflow store (corrupt, another kind of file, or another program's
  database) is refused before MLflow adds its tables to it (:func:`check_sqlite_store`).
- An error raised by MLflow, its HTTP client or SQLAlchemy becomes one line (:func:`store_failure`).
- Credentials in a URI (``http://user:password@host``) are masked in every message (:func:`mask`).

Nothing here imports MLflow (``mlflow_store`` is its only user).
"""

from __future__ import annotations

import fcntl
import math
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from urllib.parse import unquote

from ignite_mbo.errors import UserError, printable

HTTP_TIMEOUT_S = 10
"""Seconds one MLflow HTTP request may take (MLflow's own default is 120)."""
HTTP_MAX_RETRIES = 2
"""Retries of a failed MLflow HTTP request (MLflow's own default is 7, with growing back-off)."""
HTTP_BACKOFF_FACTOR = 1
HTTP_SETTINGS: dict[str, tuple[float, type]] = {"MLFLOW_HTTP_REQUEST_TIMEOUT": (HTTP_TIMEOUT_S, float),
                                                "MLFLOW_HTTP_REQUEST_MAX_RETRIES": (HTTP_MAX_RETRIES, int),
                                                "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": (HTTP_BACKOFF_FACTOR, float)}
"""MLflow's HTTP settings (environment) that ignite-mbo sets unless the user did: its default and type."""
ARTIFACTS_FOLDER = "mlartifacts"
"""The artifact root beside a sqlite store (``mlflow_store.experiment_id``)."""
MLFLOW_TABLES = {"experiments", "runs", "alembic_version"}
"""Tables that make an SQLite file an MLflow store (else it is another program's)."""
MLFLOW_CORE_TABLES = MLFLOW_TABLES | {"metrics", "latest_metrics", "params", "tags", "experiment_tags"}
"""Tables every MLflow store has held since 2019: a store lacking one is damaged (pass 27: MLflow re-created a
dropped ``metrics`` table in an old layout, and the store stayed broken)."""
_CREDENTIALS = re.compile(r"(?P<scheme>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,63}://)(?P<userinfo>[^/?#\r\n]{1,4096})@")
"""A URL's userinfo: everything up to the last ``@`` before the path, as URL parsers split it (spaces too).
Both parts are bounded (a scheme starts where a run of scheme characters starts), so a long text is
scanned in linear time."""
_QUERY = re.compile(r"(?P<url>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,63}://[^\s?#'\"]{0,4096})\?[^\s#'\"();,]+")
"""A URL's query (it may carry a token), in linear time as :data:`_CREDENTIALS`."""
_USER = re.compile(r"[^\s:@]+")
_HTTP_STATUS = re.compile(r"too many (\d{3}) error responses|HTTP (\d{3})|status code:? (\d{3})")
_STORE_ERROR_MODULES = ("mlflow", "requests", "urllib3", "sqlalchemy", "sqlite3")


def _masked(match: re.Match[str]) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    shown = f"{user}:***" if colon and _USER.fullmatch(user) else "***"  # a user name alone may be a token
    return f"{match['scheme']}{shown}@"


def mask(text: str) -> str:
    """``text`` with the userinfo of every ``scheme://user:password@host`` masked: ``user:***@``, or ``***@``
    when there is no password (the user name may be a token) or the user name is odd; and the query of every
    such URL (``?token=...``) masked whole: ``?***``."""
    return _QUERY.sub(r"\g<url>?***", _CREDENTIALS.sub(_masked, text))


def without_credentials(uri: str) -> str:
    """``uri`` without its ``user:password@`` (what may be written to a file)."""
    return _CREDENTIALS.sub(lambda match: match["scheme"], uri)


def bound_http_calls(rest_utils: ModuleType | None = None) -> None:
    """Give MLflow's HTTP calls a timeout and few retries, unless the user set them (environment,
    inherited by Ray workers started afterwards), and, given MLflow's ``rest_utils``, an overall deadline
    (:mod:`ignite_mbo.http_deadline`: a server that trickles its answer defeats a per-read timeout)."""
    for name, (default, _) in HTTP_SETTINGS.items():
        os.environ.setdefault(name, str(default))
    if rest_utils is not None:  # MLflow's, from mlflow_store._client: each call bounded as a whole
        from ignite_mbo import http_deadline

        http_deadline.install(rest_utils)


def check_http_settings() -> None:
    """The MLflow HTTP settings in the environment are numbers >= 0 (pass 28: MLflow read 'abc' deep inside the
    first call to the server, a 51-line traceback)."""
    for name, (default, kind) in HTTP_SETTINGS.items():
        given = os.environ.get(name, str(default))
        try:
            number = kind(given)
            valid = math.isfinite(number) and number >= 0
        except ValueError:
            valid = False
        if not valid:
            raise UserError(f"{name}={printable(given[:40])} is not a {'whole ' if kind is int else ''}number of "
                            f"{'retries' if kind is int else 'seconds' if 'TIMEOUT' in name else 'back-off'} >= 0; "
                            f"set it to one (e.g. {default}) or unset it")


def _read_schema(uri: str) -> tuple[dict[str, str], tuple | None, int]:
    """The schema of the SQLite database at ``uri`` (each object's name: its kind, table, view, index or trigger,
    and ``user_version``/``application_id`` when a program set them), the first ``quick_check`` row, and how many
    schema versions its ``alembic_version`` table holds (0 without one)."""
    connection = sqlite3.connect(uri, uri=True, timeout=5)
    try:
        schema = {name: kind for kind, name in connection.execute("SELECT type, name FROM sqlite_master")}
        for pragma in ("user_version", "application_id"):  # a program marks its file with these, tables or not
            if value := connection.execute(f"PRAGMA {pragma}").fetchone()[0]:
                schema[f"{pragma} {value}"] = "pragma"
        versions = (connection.execute("SELECT count(*) FROM alembic_version").fetchone()[0]
                    if schema.get("alembic_version") == "table" else 0)
        return schema, connection.execute("PRAGMA quick_check(1)").fetchone(), versions
    finally:
        connection.close()


def check_sqlite_store(path: Path, fix: str = "pass a new file as --tracking-uri") -> None:
    """Refuse ``path`` unless it is missing, empty, or a readable SQLite database holding MLflow's tables
    (and only then may MLflow open it); ``fix`` is what to do about another program's database. Read-only: the
    file is never changed, except that a hot journal left by a killed writer is rolled back, as any SQLite reader
    would."""
    if not path.exists():
        return
    if not path.is_file():  # a FIFO or a device would hang MLflow or feed it garbage
        raise UserError(f"tracking store {path} is not a regular file; name a new file or an MLflow sqlite store")
    if path.stat().st_size == 0:
        return
    try:
        with open(path, "rb") as handle:
            header = handle.read(16)
        if header != b"SQLite format 3\x00":
            raise sqlite3.DatabaseError("not a database")
        try:
            schema, check, versions = _read_schema(f"{path.as_uri()}?mode=ro")
        except sqlite3.OperationalError as error:
            hot = any(path.with_name(path.name + suffix).exists() for suffix in ("-journal", "-wal"))
            if "readonly" not in str(error) or not hot:
                raise
            # A process killed mid-transaction left a hot journal, which a reader must roll back: SQLite does
            # that on a read-write open, as MLflow's own would; the content is the last committed state.
            schema, check, versions = _read_schema(path.as_uri())
    except sqlite3.OperationalError as error:
        if "locked" in str(error):
            return  # a sweep is writing it: MLflow's own retries handle that
        raise UserError(f"tracking store {path} cannot be read as SQLite ({error}); pass another --tracking-uri") from None
    except sqlite3.DatabaseError:
        raise UserError(f"tracking store {path} is not an SQLite database (corrupt, or another kind of file); "
                        "restore it from a backup or pass a new --tracking-uri") from None
    if check and check[0] != "ok":
        problem = " ".join(str(check[0]).split())[:200]
        raise UserError(f"tracking store {path} is corrupt (SQLite: {problem}); restore it from a backup or "
                        "pass a new --tracking-uri")
    if schema and not MLFLOW_TABLES <= {name for name, kind in schema.items() if kind == "table"}:
        kinds = {kind for kind in schema.values() if kind != "table"}  # pass 18: a view alone was taken as empty
        shown = ", ".join(name if kind in ("table", "pragma") else f"{kind} {name}" for name, kind in sorted(schema.items())[:5])
        raise UserError(f"{path} is another program's SQLite database ({'tables' if not kinds else 'schema'}: {shown}), "
                        f"not an MLflow store; it is left as it is: {fix}")
    if schema and (missing := sorted(MLFLOW_CORE_TABLES - {name for name, kind in schema.items() if kind == "table"})):
        raise UserError(f"tracking store {path} lacks MLflow's {', '.join(missing)} table{'s' if len(missing) > 1 else ''}: "
                        "it is damaged, and left as it is; restore it from a backup or pass a new --tracking-uri")
    if versions > 1:  # pass 26: alembic's "more than one head" traceback
        raise UserError(f"tracking store {path} records {versions} schema versions (alembic_version; an MLflow store "
                        "has one): it is damaged, and left as it is; restore it from a backup or pass a new --tracking-uri")


@contextmanager
def creating_store(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder of sqlite store ``path`` while a process builds or upgrades
    its schema: two sweeps that open a new store at once would otherwise race in MLflow's migrations.
    A new store whose schema could not be built is removed."""
    descriptor = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        existed = path.exists()
        try:
            yield
        except BaseException:  # a full disk, or SIGINT/SIGTERM raised as an exception (platform.signals)
            if not existed:  # a store this process began is not left half-built, nor its journal
                for leftover in ("", "-journal", "-wal", "-shm"):
                    path.with_name(path.name + leftover).unlink(missing_ok=True)
            raise
    finally:
        os.close(descriptor)  # releases the lock


def in_chain(error: BaseException | None, kind: type[BaseException]) -> BaseException | None:
    """``error``, or the first error it was raised from or during, that is a ``kind``; else None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


_AUTOFLUSH_NOTE = "(raised as a result of Query-invoked autoflush"
"""The line SQLAlchemy puts before the cause of a failed autoflush; the line quoted is the cause."""


def store_failure(error: BaseException) -> str | None:
    """One line for an error the tracking store raised (MLflow, HTTP, SQL), else None (a bug: keep its
    traceback)."""
    from ignite_mbo.http_deadline import RedirectRefused

    refused = in_chain(error, RedirectRefused)
    if refused is not None:  # MLflow wraps it in its own error ("API request to ... failed with exception ...")
        return mask(str(refused))
    chain: BaseException | None = error
    while chain is not None:
        if type(chain).__module__.split(".")[0] in _STORE_ERROR_MODULES:
            break
        chain = chain.__cause__ or chain.__context__
    if chain is None:
        return None
    lines = [line for line in str(chain).strip().splitlines() if not line.startswith(_AUTOFLUSH_NOTE)]
    first = mask(lines[0] if lines else type(chain).__name__)[:300]
    lowered = str(chain).lower()
    if "disk is full" in lowered or "no space left" in lowered:
        return ("the disk holding the tracking store is full (no space left on the device); free space there, then "
                f"run the command again (a new run or sweep may pass another --tracking-uri instead) ({first})")
    if "database is locked" in lowered:
        return ("the tracking store stayed locked by another program for minutes (database is locked); close what "
                "holds it (a sqlite3 shell, a backup, a stuck process), then try again (a sweep: with --resume)")
    schema = re.search(r"out-of-date database schema \(found version (.*?), but expected (\w+)\)", str(chain), re.S)
    if schema:  # pass 23: the found version is whatever the file holds, newlines and escapes included
        found = printable(schema[1][:60])
        return (f"the MLflow store's schema is version {found}, not {schema[2]} as this MLflow expects: if an "
                "older MLflow wrote it, back it up and run 'mlflow db upgrade URI'; if a newer one did, open it with "
                "that MLflow; or pass another --tracking-uri")
    status = _HTTP_STATUS.search(str(chain))
    if status and not any(word in lowered for word in ("timed out", "timeout")):
        code = next(group for group in status.groups() if group)
        return (f"the tracking server answered HTTP {code} ({first}); look at the MLflow server's log, "
                "or pass another --tracking-uri")
    if any(word in lowered for word in ("timed out", "timeout", "max retries", "connection")):
        return (f"the tracking server did not answer in time ({first}); check that it is up and not "
                "overloaded, or raise MLFLOW_HTTP_REQUEST_TIMEOUT")
    return f"the tracking store failed: {type(chain).__name__}: {first}"


# ---- tracking URIs ------------------------------------------------------------------------------

def default_tracking_uri(directory: str | os.PathLike[str] = ".") -> str:
    """A sqlite store in ``directory`` (absolute, so Ray workers in other folders find it)."""
    return f"sqlite:///{Path(directory).resolve() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative paths against the working folder), else None.

    As SQLAlchemy reads it: the path ends at the first ``?`` (the query) and is percent-decoded."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(unquote(uri.removeprefix("sqlite:///").partition("?")[0])).absolute()


def check_tracking_uri(uri: str, *, if_missing: str | None = None, timeout_s: float = 3.0, writes: bool = True) -> str:
    """The tracking URI, validated and made absolute; bad ones raise a one-line UserError.

    ``sqlite:///mlflow.db`` is resolved against the working folder; its folder must exist and, unless the command
    only reads it (``writes=False``: ``rerun``), be writable; with ``if_missing`` (the fix to name) the file must
    exist too. A query (``?mode=ro``, ``?cache=shared``) is refused after the file's checks: SQLAlchemy's SQLite
    driver ignores it (or, with ``uri=true``, it could make the store read-only, which a run must write).
    ``http(s)://`` must answer an MLflow API call within ``timeout_s``. Nothing is created.
    """
    hint = "use sqlite:///PATH/mlflow.db or http(s)://HOST:PORT of an MLflow server"
    from ignite_mbo.platform.checks import check_printable, check_tracking_server

    check_printable("tracking URI", mask(uri))  # a store file named with a newline breaks every line that names it
    if uri.startswith("sqlite:"):
        path = sqlite_path(uri)
        if path is None or not path.name:
            raise UserError(f"tracking URI {uri!r} names no database file; {hint}")
        if path.is_dir():
            raise UserError(f"tracking URI {uri!r} points at a folder; name a file, e.g. sqlite:///{path}/mlflow.db")
        if if_missing and not path.is_file():
            raise UserError(f"no MLflow store at {path}; {if_missing}")
        if not path.parent.is_dir():
            raise UserError(f"tracking URI {uri!r}: folder {path.parent} does not exist; create it or pick another path")
        writable = os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))
        if writes and not writable:
            raise UserError(f"tracking URI {uri!r}: {path} is not writable; pick a path you can write")
        check_sqlite_store(path, *[if_missing] if if_missing else [])  # a command that reads a sweep's store
        artifacts = path.parent / ARTIFACTS_FOLDER
        usable = artifacts.is_dir() and os.access(artifacts, (os.W_OK if writes else os.R_OK) | os.X_OK)
        if (artifacts.exists() or artifacts.is_symlink()) and not usable:  # a file, a FIFO, a dangling link
            raise UserError(f"{artifacts}, where the runs' artifacts of a store at {path} go, is not a "
                            f"{'writable' if writes else 'readable'} folder; move it away or put the store in another folder")
        if "?" in uri:
            raise UserError(f"tracking URI {uri!r} has SQLite options ({'?' + uri.partition('?')[2]}), which "
                            f"ignite-mbo does not pass on (it must write the store); use sqlite:///{path}")
        return f"sqlite:///{path}"
    if uri.startswith(("http://", "https://")):
        check_http_settings()
        bound_http_calls()
        return check_tracking_server(uri, timeout_s)  # a real API call, not only /health
    raise UserError(f"unsupported tracking URI {uri!r}; {hint}")
