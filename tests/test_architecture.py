"""The house rules, checked: imports run downward (the worker side never imports the driver side) and
every MLflow call lives in one module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ignite_mbo"


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved against the package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_nothing_under_trainables_imports_platform():
    offenders = {path.name: sorted(name for name in imported_modules(path) if name.startswith("ignite_mbo.platform"))
                 for path in (PACKAGE / "trainables").rglob("*.py")}
    assert not {name: found for name, found in offenders.items() if found}


def test_importing_the_trainable_loads_no_platform_module():
    """Also indirectly: what a Ray worker imports to run a trial pulls in nothing from ignite_mbo.platform."""
    code = ("import sys, ignite_mbo.trainables.mbo; "
            "print(sorted(m for m in sys.modules if m.startswith('ignite_mbo.platform')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_every_mlflow_call_is_in_mlflow_store():
    users = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                   if any(name == "mlflow" or name.startswith("mlflow.") for name in imported_modules(path)))
    assert users == ["mlflow_store.py"]


def test_no_module_is_longer_than_400_lines():
    """A module with many jobs is split by phase (plan / tuner / sweep / finish), not allowed to grow."""
    lengths = {str(path.relative_to(PACKAGE)): len(path.read_text().splitlines()) for path in PACKAGE.rglob("*.py")}
    assert {name: lines for name, lines in lengths.items() if lines > 400} == {}
