"""Shared pytest fixtures."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import huggingface_hub  # noqa: F401 - its log handler binds the stderr of the moment it is imported: now the session's
import pytest

# (imported first inside a test, it bound that test's capsys stream, closed after; a download thread the trickle test
# gave up on then printed "--- Logging error ---" into a later test's captured stderr)

# A CI runner may start pytest as a script's background job (SIGINT ignored) or under nohup (SIGHUP ignored). The
# commands the tests start would inherit that and, as documented, keep ignoring it: the tests start them as a terminal
# would. (Python's own Ctrl-C handler here resets to the default in each child.)
STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)  # (ignite_mbo is not imported here yet)
for _signum in STOPPING:
    if signal.getsignal(_signum) == signal.SIG_IGN:
        signal.signal(_signum, signal.default_int_handler if _signum == signal.SIGINT else signal.SIG_DFL)

if TYPE_CHECKING:
    from ignite_mbo.tasks import Task
    from ignite_mbo.trial import TrialResult

    QuickRun = tuple[TrialResult, list[tuple[int, dict[str, float]]]]

MATERIALIZE_HINT = (
    "materialize it with 'python /work/shared/tools/materialize_design_bench.py DIR' "
    "(or 'ignite-mbo data download --task all') and run pytest with IGNITE_MBO_DATA_DIR=DIR"
)


@pytest.fixture(autouse=True)
def no_signal_left_ignored() -> Iterator[None]:
    """No test leaves this process ignoring a stopping signal: the commands later tests start would inherit it, and
    keep ignoring it as documented (a stopped run_sweep once left SIGINT and SIGTERM ignored in its caller)."""
    yield
    ignored = [signal.Signals(signum).name for signum in STOPPING if signal.getsignal(signum) == signal.SIG_IGN]
    assert not ignored, f"the test left {', '.join(ignored)} ignored in the pytest process"


@pytest.fixture(scope="session")
def design_bench_dir() -> Path:
    """The Design-Bench data dir from $IGNITE_MBO_DATA_DIR.

    Fails (never skips) when the variable is unset or a file is missing or has the wrong size.
    """
    from ignite_mbo.errors import UserError
    from ignite_mbo.tasks.data import DATA_DIR_ENV, FOLDERS, require

    value = os.environ.get(DATA_DIR_ENV)
    if not value:
        pytest.fail(f"{DATA_DIR_ENV} is not set; {MATERIALIZE_HINT}", pytrace=False)
    for folder in FOLDERS:
        try:
            require(folder, value, check_sha256=False)
        except UserError as exc:
            problem = f"{DATA_DIR_ENV}={value} is incomplete ({exc})"
            pytest.fail(f"{problem}; {MATERIALIZE_HINT}", pytrace=False)
    return Path(value).absolute()


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One intra-op thread per test process: small models run faster and timings stay stable on 2 cores."""
    import torch

    torch.set_num_threads(1)


# ---- the baselines at quick fidelity (shared by test_baselines*.py) -------------------------------


@pytest.fixture(scope="session")
def tf_bind_8(design_bench_dir: Path) -> Task:
    from ignite_mbo import tasks

    return tasks.make("TFBind8-Exact-v0", design_bench_dir)


@pytest.fixture(scope="session")
def tf_bind_10(design_bench_dir: Path) -> Task:
    """Built once per session (a second or two), then a 10,000-row training set as a trial draws one."""
    import numpy as np

    from ignite_mbo import tasks

    return tasks.make("TFBind10-Exact-v0", design_bench_dir).subsample(np.random.default_rng(0))


@pytest.fixture(scope="session")
def ackley() -> Task:
    from ignite_mbo import tasks

    return tasks.make("Synthetic-Ackley60-v0")


@pytest.fixture(scope="session")
def quick_run(tf_bind_8: Task) -> Callable[..., QuickRun]:
    """``quick_run(baseline, regularizer="none", task=None, seed=0, options=None, fresh=False)``
    -> ``(TrialResult, logged)``.

    A quick-fidelity trial on ``task`` (TF-Bind-8 unless told), with ``options`` as baseline options
    on top of the baseline's ``QUICK`` (e.g. ``baseline_checks.SMOKE[baseline]``). Memoised for the
    session per (baseline, regularizer, task, seed, options) unless ``fresh``; ``logged`` is every
    ``(step, metrics)`` the trial logged.
    """
    from ignite_mbo.config import TrialConfig
    from ignite_mbo.trial import run_trial

    cache: dict[tuple, QuickRun] = {}

    def _run(baseline: str, regularizer: str = "none", task: Task | None = None, seed: int = 0,
             options: dict | None = None, fresh: bool = False) -> QuickRun:
        task = tf_bind_8 if task is None else task
        options = options or {}
        key = (baseline, regularizer, task.task_id, seed, tuple(sorted(options.items())))
        if fresh or key not in cache:
            logged: list[tuple[int, dict[str, float]]] = []
            config = TrialConfig.parse(dict(task=task.task_id, baseline=baseline, regularizer={"name": regularizer},
                                            seed=seed, fidelity="quick", baseline_options=options))
            result = run_trial(config, task=task, log=lambda metrics, step: logged.append((step, dict(metrics))))
            if fresh:
                return result, logged
            cache[key] = (result, logged)
        return cache[key]

    return _run
