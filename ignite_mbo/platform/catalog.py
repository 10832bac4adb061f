"""``ignite-mbo spaces``: the search spaces that ship with ignite-mbo, one line each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ignite_mbo.errors import UserError
from ignite_mbo.platform.spaces import load_spec

SHIPPED = Path(__file__).resolve().parents[2] / "search_spaces"
"""The repository's ``search_spaces/`` folder (beside the package in a source checkout)."""


@dataclass(frozen=True)
class SpaceEntry:
    """One search space: its file, name, how many trials it runs, and its one-line description."""

    path: Path
    name: str
    trials: int
    description: str


def list_spaces(folder: Path = SHIPPED) -> list[SpaceEntry]:
    """Every ``*.yaml`` space in ``folder``, by name; a file that does not load is listed with its error."""
    if not folder.is_dir():
        raise UserError(f"no search-space folder at {folder}; pass --dir with a folder of YAML spaces")
    entries = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            spec = load_spec(path)
            entries.append(SpaceEntry(path, spec.name, spec.size_bound, spec.description or "-"))
        except UserError as error:
            entries.append(SpaceEntry(path, path.stem, 0, f"does not load: {error}"))
    return entries


def format_spaces(entries: list[SpaceEntry]) -> str:
    """A table: file, trials, description."""
    width = max([len(entry.path.name) for entry in entries] + [4])
    lines = [f"{'file':<{width}}  {'trials':>6}  description", f"{'-' * width}  {'-' * 6}  {'-' * 11}"]
    lines += [f"{entry.path.name:<{width}}  {entry.trials:>6}  {entry.description}" for entry in entries]
    return "\n".join(lines)
