"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

MATERIALIZE_HINT = (
    "materialize it with 'python /work/shared/tools/materialize_design_bench.py DIR' "
    "(or 'ignite-mbo data download --task all') and run pytest with IGNITE_MBO_DATA_DIR=DIR"
)


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
