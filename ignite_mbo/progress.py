"""How a trial reports its progress (surrogate epochs, search steps) to whoever shows it.

Baselines and the training loop call ``progress.phase(name, total)`` when a phase starts and
``progress.advance()`` after each unit of it; the CLI shows a bar, Ray Tune and tests pass
:data:`SILENT`. Progress is for people: metrics go through the trial's ``log`` instead.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def phase(self, name: str, total: int) -> None:
        """A new phase of ``total`` units starts (e.g. ``"surrogate 2/5 epochs"``, 100)."""
        ...

    def advance(self, units: int = 1) -> None:
        """``units`` more units of the current phase are done."""
        ...


class _Silent:
    def phase(self, name: str, total: int) -> None:
        pass

    def advance(self, units: int = 1) -> None:
        pass


SILENT: Progress = _Silent()
