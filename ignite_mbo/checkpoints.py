"""Trial checkpoints: trained surrogates and search progress, so a retried or resumed trial resumes.

A :class:`CheckpointStore` is made active for the duration of one trial (a context variable).
:func:`ignite_mbo.training.train_surrogate` consults it: the n-th call in a trial restores the
n-th trained surrogate when the store has it (weights, regularizer state, training history, the
data generator's and the global RNGs' states after training, and the metrics the trial logged
while it trained), else trains and saves it. Baselines are deterministic given the seed, so the
n-th call of a retry is the n-th call of the first attempt; a fingerprint (shapes, settings,
prefix) guards against a mismatch, after which nothing more is restored. A loss function that
carries state (an object, not a plain function) is restored only if it has
``state_dict``/``load_state_dict``; otherwise that surrogate is trained again.

The search itself is not checkpointed inside baselines' loops: the store records how far it got
(the last ``search/...`` step logged), which the trial reports with its checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

MetricLogger = Callable[[dict[str, float], int], None]
STATE_FILE = "state.json"

_ACTIVE: ContextVar[CheckpointStore | None] = ContextVar("ignite_mbo_checkpoint_store", default=None)


def active() -> CheckpointStore | None:
    """The store of the trial running in this context, if any."""
    return _ACTIVE.get()


def _restorable(loss_fn: Any) -> bool:
    if isinstance(loss_fn, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return True
    return callable(getattr(loss_fn, "state_dict", None)) and callable(getattr(loss_fn, "load_state_dict", None))


def _rng_states() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch_cpu": torch.random.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{index}"] = state
    name, keys, position, has_gauss, cached = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    python_state = random.getstate()
    plain = {"numpy": [name, int(position), int(has_gauss), float(cached)],
             "python": [python_state[0], list(python_state[1]), python_state[2]]}
    return tensors, plain


def _set_rng_states(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    torch.random.set_rng_state(tensors["torch_cpu"])
    cuda = sorted(key for key in tensors if key.startswith("torch_cuda_"))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([tensors[key] for key in cuda])
    name, position, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, tensors["numpy_keys"].numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))


def _atomic_save(obj: Any, path: Path) -> None:
    partial = path.with_name(f".{path.name}.partial")
    torch.save(obj, partial)
    os.replace(partial, path)


def _atomic_json(obj: Any, path: Path) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(obj, indent=1, default=float))
    os.replace(partial, path)


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
        self.calls = 0  # train_surrogate calls so far in this attempt
        self.restored = 0
        self.trained = 0
        self._mismatch = False
        self._muted = False
        self._recording: list[tuple[dict[str, float], int]] | None = None
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
        """The trial's logger, seen by the store: recorded while a surrogate trains, muted on replay."""

        def wrapped(metrics: dict[str, float], step: int) -> None:
            if self._muted:
                return
            if self._recording is not None:
                self._recording.append(({key: float(value) for key, value in metrics.items()}, step))
            if any(key.startswith("search/") for key in metrics):
                self.state["search"] = {"last_logged_step": step, "surrogates_trained": self.calls}
            log(metrics, step)

        self._log = log
        return wrapped

    # -- surrogates -----------------------------------------------------------------------------
    def restore_surrogate(
        self, fingerprint: dict[str, Any], model: nn.Module, regularizer: Any, loss_fn: Any,
        generator: torch.Generator, log: MetricLogger | None, prefix: str,
    ) -> list[dict[str, float]] | None:
        """Called at the start of ``train_surrogate``: the history if this call was restored, else None."""
        key = f"surrogate_{self.calls}"
        self.calls += 1
        entry = self.state["surrogates"].get(key)
        if entry is None or self._mismatch or not _restorable(loss_fn):
            return self._begin()
        if entry["fingerprint"] != json.loads(json.dumps(fingerprint, default=str)):
            self._mismatch = True  # the call order changed: restore nothing from here on
            return self._begin()
        tensors = torch.load(self.directory / entry["file"], map_location="cpu", weights_only=True)
        model.load_state_dict(tensors["model"])
        regularizer.load_state_dict(entry["regularizer"])
        if "loss_fn" in tensors:
            loss_fn.load_state_dict(tensors["loss_fn"])
        generator.set_state(tensors["generator"])
        history = [dict(epoch) for epoch in entry["history"]]
        self._muted = True  # the baseline's own logger sees every epoch again; the trial's does not
        try:
            if log is not None:
                for epoch, metrics in enumerate(history):
                    log({prefix + name: value for name, value in metrics.items()}, epoch)
        finally:
            self._muted = False
        for metrics, step in entry["logged"]:  # exactly what the trial logged the first time
            self._log(metrics, step)
        _set_rng_states(tensors["rng"], entry["rng"])
        self.restored += 1
        return history

    def _begin(self) -> None:
        self._recording = []
        return None

    def save_surrogate(
        self, fingerprint: dict[str, Any], model: nn.Module, regularizer: Any, loss_fn: Any,
        generator: torch.Generator, history: list[dict[str, float]],
    ) -> None:
        """Called at the end of ``train_surrogate`` after training (not after a restore)."""
        logged, self._recording = self._recording or [], None
        self.trained += 1
        if not _restorable(loss_fn) or self._mismatch:
            return
        key = f"surrogate_{self.calls - 1}"
        rng_tensors, rng_plain = _rng_states()
        tensors = {"model": {name: value.detach().cpu() for name, value in model.state_dict().items()},
                   "generator": generator.get_state(), "rng": rng_tensors}
        if not isinstance(loss_fn, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
            tensors["loss_fn"] = loss_fn.state_dict()
        _atomic_save(tensors, self.directory / f"{key}.pt")
        self.state["surrogates"][key] = {
            "file": f"{key}.pt", "fingerprint": json.loads(json.dumps(fingerprint, default=str)),
            "regularizer": regularizer.state_dict(), "history": history, "logged": logged, "rng": rng_plain,
        }
        self.save(f"{key} trained")

    # -- the folder -----------------------------------------------------------------------------
    def save(self, reason: str, **state: Any) -> None:
        """Write ``state.json`` (with ``state`` merged in) and hand the folder to ``on_save``."""
        self.state.update(state)
        _atomic_json(self.state, self.directory / STATE_FILE)
        if self.on_save is not None:
            self.on_save(reason)

    def progress(self) -> str:
        """Where the trial got to, in words (MLflow tag on failure)."""
        search = self.state.get("search") or {}
        text = f"{self.calls} surrogate training call(s) reached ({self.restored} restored, {self.trained} trained)"
        if search:
            text += f"; search logged step {search.get('last_logged_step')}"
        return text


def fingerprint(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: Any, *, bootstrap: bool,
                prefix: str, regularizer: Any, loss_fn: Any) -> dict[str, Any]:
    """What must match for a saved surrogate to stand in for this ``train_surrogate`` call."""
    return {
        "prefix": prefix, "bootstrap": bootstrap, "settings": repr(settings),
        "x": list(x.shape), "y": list(y.shape),
        "parameters": [[name, list(value.shape)] for name, value in model.state_dict().items()],
        "regularizer": type(regularizer).__name__, "loss_fn": getattr(loss_fn, "__qualname__", type(loss_fn).__qualname__),
    }
