"""Trial checkpoints: trained surrogates and search progress, so a retried or resumed trial resumes.

A :class:`CheckpointStore` is made active for the duration of one trial (a context variable).
``Context.fit`` (the one door through which baselines train regularized surrogates) consults it:
a surrogate fit named ``name`` that an earlier attempt of the trial finished is restored (weights,
regularizer state, the loss's state, the training history, and the metrics the trial logged while
it trained) instead of trained again; otherwise it is trained and saved. Every random draw of a fit
comes from streams named after the fit (:mod:`ignite_mbo.streams`), so no RNG state needs saving. A
fingerprint (shapes, settings) guards against restoring a fit whose call changed. A loss that
carries state (an object, not a plain function) is restored only if it has
``state_dict``/``load_state_dict``; otherwise that surrogate is trained again.

The search itself is not checkpointed inside baselines' loops: the store records how far it got
(the last ``search/...`` step logged), which the trial reports with its checkpoint.
"""

from __future__ import annotations

import json
import os
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ignite_mbo.atomic import atomic_write
from ignite_mbo.progress import EpochMetrics, MetricLogger

STATE_FILE = "state.json"

_ACTIVE: ContextVar[CheckpointStore | None] = ContextVar("ignite_mbo_checkpoint_store", default=None)


def active() -> CheckpointStore | None:
    """The store of the trial running in this context, if any."""
    return _ACTIVE.get()


def _restorable(loss: Any) -> bool:
    if isinstance(loss, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return True
    return callable(getattr(loss, "state_dict", None)) and callable(getattr(loss, "load_state_dict", None))


def _is_function(loss: Any) -> bool:
    return isinstance(loss, (types.FunctionType, types.BuiltinFunctionType, types.MethodType))


class CheckpointStore:
    """One trial's checkpoint folder; ``on_save`` persists it (e.g. ``tune.report(checkpoint=...)``)."""

    def __init__(self, directory: str | os.PathLike[str], on_save: Callable[[str], None] | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.on_save = on_save
        path = self.directory / STATE_FILE
        self.state: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
        self.state.setdefault("surrogates", {})
        self.state.setdefault("search", {})
        self.calls = 0  # surrogate fits reached so far in this attempt
        self.restored = 0
        self.trained = 0
        self._recording: list[tuple[dict[str, float], int, bool]] | None = None
        self._log: MetricLogger = lambda metrics, step: None

    # -- activation and the trial's logger ------------------------------------------------------
    @contextmanager
    def activate(self) -> Iterator[CheckpointStore]:
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def wrap_log(self, log: MetricLogger) -> MetricLogger:
        """The trial's logger, seen by the store: what it logs while a surrogate trains is recorded for a replay."""

        def wrapped(metrics: dict[str, float], step: int) -> None:
            if self._recording is not None:
                self._recording.append(({key: float(value) for key, value in metrics.items()}, step,
                                        isinstance(metrics, EpochMetrics)))
            if any(key.startswith("search/") for key in metrics):
                self.state["search"] = {"last_logged_step": step, "surrogates_trained": self.calls}
            log(metrics, step)

        self._log = log
        return wrapped

    # -- surrogates -----------------------------------------------------------------------------
    def restore_surrogate(self, name: str, fingerprint: dict[str, Any], model: nn.Module, regularizer: Any,
                          loss: Any) -> list[dict[str, float]] | None:
        """Called by ``Context.fit`` before training: the history if fit ``name`` was restored, else None."""
        self.calls += 1
        entry = self.state["surrogates"].get(name)
        if (entry is None or not _restorable(loss)
                or entry["fingerprint"] != json.loads(json.dumps(fingerprint, default=str))):
            self._recording = []
            return None
        tensors = torch.load(self.directory / entry["file"], map_location="cpu", weights_only=True)
        model.load_state_dict(tensors["model"])
        regularizer.load_state_dict(entry["regularizer"])
        if "loss" in tensors:
            loss.load_state_dict(tensors["loss"])
        for metrics, step, epoch_end in entry["logged"]:  # exactly what the trial logged the first time
            self._log(EpochMetrics(metrics) if epoch_end else metrics, step)
        self.restored += 1
        return [dict(epoch) for epoch in entry["history"]]

    def save_surrogate(self, name: str, fingerprint: dict[str, Any], model: nn.Module, regularizer: Any,
                       loss: Any, history: list[dict[str, float]]) -> None:
        """Called by ``Context.fit`` after training (not after a restore)."""
        logged, self._recording = self._recording or [], None
        self.trained += 1
        if not _restorable(loss):
            return
        file = f"{name.replace('/', '_')}.pt"
        tensors: dict[str, Any] = {"model": {key: value.detach().cpu() for key, value in model.state_dict().items()}}
        if not _is_function(loss):
            tensors["loss"] = loss.state_dict()
        atomic_write(self.directory / file, lambda partial: torch.save(tensors, partial))
        self.state["surrogates"][name] = {
            "file": file, "fingerprint": json.loads(json.dumps(fingerprint, default=str)),
            "regularizer": regularizer.state_dict(), "history": history, "logged": logged,
        }
        self.save(f"{name} trained")

    # -- the folder -----------------------------------------------------------------------------
    def save(self, reason: str, **state: Any) -> None:
        """Write ``state.json`` (with ``state`` merged in) and hand the folder to ``on_save``."""
        self.state.update(state)
        text = json.dumps(self.state, indent=1, default=float)
        atomic_write(self.directory / STATE_FILE, lambda partial: partial.write_text(text))
        if self.on_save is not None:
            self.on_save(reason)

    def progress(self) -> str:
        """Where the trial got to, in words (MLflow tag on failure)."""
        search = self.state.get("search") or {}
        text = f"{self.calls} surrogate training call(s) reached ({self.restored} restored, {self.trained} trained)"
        if search:
            text += f"; search logged step {search.get('last_logged_step')}"
        return text


def fingerprint(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: Any, regularizer: Any,
                loss: Any) -> dict[str, Any]:
    """What must match for a saved surrogate to stand in for this fit."""
    return {
        "settings": repr(settings), "x": list(x.shape), "y": list(y.shape),
        "parameters": [[name, list(value.shape)] for name, value in model.state_dict().items()],
        "regularizer": type(regularizer).__name__, "loss": getattr(loss, "__qualname__", type(loss).__qualname__),
    }
