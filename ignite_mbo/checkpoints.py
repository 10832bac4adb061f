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

A long fit is also saved between epochs, at most every :data:`PARTIAL_SAVE_EVERY_S` seconds
(weights, Adam state, minibatch-order generators, regularizer state, history): a trial stopped after
three hours of a four-hour fit (a lost node, a resumed sweep, a killed benchmark) goes on from its
last save, and ends with the same weights as an unbroken fit. Only fits whose loss is a plain
function are saved so (a loss with state may draw random numbers the store cannot replay).

A store's folder is a Tune checkpoint in a sweep, a folder per trial under ``benchmarks/trials.py
--checkpoints DIR``, and :func:`trial_folder` under ``ignite-mbo run --checkpoints DIR``; ``state.json`` is
checked against what this module writes before it is used, and a file it names is read as tensors only.

The search itself is not checkpointed inside baselines' loops: the store records how far it got
(the last ``search/...`` step logged), which the trial reports with its checkpoint. The CPU time
that earlier attempts spent up to their last save is kept (:attr:`CheckpointStore.cpu_time_before`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, NotRequired

import torch
from pydantic import AfterValidator, TypeAdapter, ValidationError
from torch import nn
from typing_extensions import TypedDict  # (not typing's: pydantic reads a TypedDict from here on Python < 3.12)

from ignite_mbo.atomic import atomic_write
from ignite_mbo.best_epochs import BestEpochs
from ignite_mbo.errors import UserError, shown_path
from ignite_mbo.progress import EpochMetrics, MetricLogger
from ignite_mbo.training import FitCheckpoint, FitState

STATE_FILE = "state.json"
PARTIAL_SAVE_EVERY_S = 600.0
"""A fit in progress is saved when this many seconds passed since it started or was last saved."""

_ACTIVE: ContextVar[CheckpointStore | None] = ContextVar("ignite_mbo_checkpoint_store", default=None)


def active() -> CheckpointStore | None:
    """The store of the trial running in this context, if any."""
    return _ACTIVE.get()


def _restorable(loss: Any) -> bool:
    if isinstance(loss, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return True
    return callable(getattr(loss, "state_dict", None)) and callable(getattr(loss, "load_state_dict", None))


def _plain_name(name: str) -> str:
    if not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"{name!r} is not a file name in the folder")
    return name


_START_OVER = "delete the folder {} to start the trial over"
_FileName = Annotated[str, AfterValidator(_plain_name)]
_Logged = list[tuple[dict[str, float], int, bool]]


class _Fit(TypedDict):  # a finished surrogate fit, as ``save_surrogate`` writes it
    file: _FileName
    fingerprint: Any
    regularizer: dict[str, list[float]]
    history: list[dict[str, float]]
    logged: _Logged


class _Best(TypedDict):
    scores: list[float | None]
    epochs: list[int | None]
    regularizer: dict[str, list[float]]


class _PartialEntry(_Fit):  # a fit saved between epochs, as ``_PartialFit.save`` writes it
    epochs_done: int
    best: NotRequired[_Best]


class _State(TypedDict):
    surrogates: NotRequired[dict[str, _Fit]]
    search: NotRequired[dict[str, int]]
    partial: NotRequired[dict[str, _PartialEntry]]
    cpu_time_s: NotRequired[float]
    failure: NotRequired[str]  # why the attempt that saved it failed (a sweep's trial, before Tune retries it)


_STATE = TypeAdapter(_State)


def _read_state(path: Path) -> dict[str, Any]:
    """``state.json`` checked against what this module writes, or one line saying how to start over."""
    try:
        return dict(_STATE.validate_json(path.read_bytes()))
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "the file"
        raise UserError(f"{shown_path(path)} is not a checkpoint state ignite-mbo wrote ({where}: {problem['msg']}); "
                        f"{_START_OVER.format(shown_path(path.parent))}") from None


def _load_tensors(path: Path, keys: list[str]) -> dict[str, Any]:
    """A checkpoint file's ``keys`` (never unpickled: ``weights_only``), or one line saying how to start over."""
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as error:  # missing, truncated, not torch's, unsafe
        raise UserError(f"the checkpoint file {shown_path(path)} cannot be read ({type(error).__name__}); "
                        f"{_START_OVER.format(shown_path(path.parent))}") from None
    missing = [key for key in keys if not isinstance(tensors, dict) or key not in tensors]
    if missing:
        raise UserError(f"the checkpoint file {shown_path(path)} lacks {', '.join(missing)}; "
                        f"{_START_OVER.format(shown_path(path.parent))}")
    return tensors


def trial_folder(root: Path, config: Any) -> Path:
    """The checkpoint folder under ``root`` of the trial ``config`` describes (named after its settings)."""
    settings = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return root / hashlib.sha256(settings.encode()).hexdigest()[:16]


def left_by_a_stopped_attempt(folder: Path) -> str | None:
    """What an earlier, stopped attempt saved in the trial folder ``folder``, in words (its state checked first,
    nothing created); None if it saved nothing."""
    path = folder / STATE_FILE
    if not path.is_file():
        return None
    state = _read_state(path)
    saved = [f"{len(state.get('surrogates', {}))} surrogate fit(s) finished"]
    saved += [f"fit {name!r} at epoch {entry['epochs_done']}" for name, entry in state.get("partial", {}).items()]
    return f"{', '.join(saved)}; {state.get('cpu_time_s', 0.0):,.0f} CPU s spent"


def _is_function(loss: Any) -> bool:
    return isinstance(loss, (types.FunctionType, types.BuiltinFunctionType, types.MethodType))


class CheckpointStore:
    """One trial's checkpoint folder; ``on_save`` persists it (e.g. ``tune.report(checkpoint=...)``)."""

    def __init__(self, directory: str | os.PathLike[str], on_save: Callable[[str], None] | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.on_save = on_save
        path = self.directory / STATE_FILE
        self.state: dict[str, Any] = _read_state(path) if path.is_file() else {}
        self.state.setdefault("surrogates", {})
        self.state.setdefault("search", {})
        self.state.setdefault("partial", {})
        self.cpu_time_before = float(self.state.get("cpu_time_s", 0.0))
        """CPU seconds that earlier attempts spent, up to their last save."""
        self._cpu_started = time.process_time()
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
        if entry is None or not _restorable(loss) or entry["fingerprint"] != _as_json(fingerprint):
            self._recording = []
            return None
        path = self.directory / entry["file"]
        tensors = _load_tensors(path, ["model", *(["loss"] if not _is_function(loss) else [])])
        try:
            model.load_state_dict(tensors["model"])
        except RuntimeError as error:  # the fingerprint matched, so the file itself was changed
            raise UserError(f"the checkpoint file {shown_path(path)} does not fit this trial's model "
                            f"({str(error).splitlines()[0][:200]}); {_START_OVER.format(shown_path(path.parent))}") from None
        regularizer.load_state_dict(entry["regularizer"])
        if "loss" in tensors:
            loss.load_state_dict(tensors["loss"])
        self._replay(entry["logged"])  # exactly what the trial logged the first time
        self.restored += 1
        return [dict(epoch) for epoch in entry["history"]]

    def partial_fit(self, name: str, fingerprint: dict[str, Any], loss: Any) -> FitCheckpoint | None:
        """The between-epochs checkpoint of fit ``name``, for ``training.fit``; None if its loss has state."""
        return _PartialFit(self, name, _as_json(fingerprint)) if _is_function(loss) else None

    def _replay(self, logged: list[tuple[dict[str, float], int, bool]]) -> None:
        """Log again what an earlier attempt logged while it trained (epoch ends as epoch ends)."""
        for metrics, step, epoch_end in logged:
            self._log(EpochMetrics(metrics) if epoch_end else metrics, step)

    def save_surrogate(self, name: str, fingerprint: dict[str, Any], model: nn.Module, regularizer: Any,
                       loss: Any, history: list[dict[str, float]]) -> None:
        """Called by ``Context.fit`` after training (not after a restore)."""
        logged, self._recording = self._recording or [], None
        self.trained += 1
        partial = self.state["partial"].pop(name, None)
        if partial is not None:
            (self.directory / partial["file"]).unlink(missing_ok=True)
        if not _restorable(loss):
            return
        file = f"{name.replace('/', '_')}.pt"
        tensors: dict[str, Any] = {"model": {key: value.detach().cpu() for key, value in model.state_dict().items()}}
        if not _is_function(loss):
            tensors["loss"] = loss.state_dict()
        atomic_write(self.directory / file, lambda partial: torch.save(tensors, partial))
        self.state["surrogates"][name] = {
            "file": file, "fingerprint": _as_json(fingerprint),
            "regularizer": regularizer.state_dict(), "history": history, "logged": logged,
        }
        self.save(f"{name} trained")

    # -- the folder -----------------------------------------------------------------------------
    def save(self, reason: str, **state: Any) -> None:
        """Write ``state.json`` (with ``state`` merged in) and hand the folder to ``on_save``."""
        self.state.update(state, cpu_time_s=self.cpu_time_before + time.process_time() - self._cpu_started)
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


class _PartialFit:
    """A :class:`~ignite_mbo.training.FitCheckpoint` kept in a store: ``{name}.partial.pt`` and an entry in state.json."""

    def __init__(self, store: CheckpointStore, name: str, fingerprint: dict[str, Any]) -> None:
        self.store, self.name, self.fingerprint = store, name, fingerprint
        self.file = f"{name.replace('/', '_')}.partial.pt"
        self.last_save = time.monotonic()

    def load(self) -> FitState | None:
        entry = self.store.state["partial"].get(self.name)
        if entry is None or entry["fingerprint"] != self.fingerprint:
            return None
        tensors = _load_tensors(self.store.directory / self.file,
                                ["model", "optimizer", "orders", *(["best_model"] if "best" in entry else [])])
        logged = [(metrics, step, epoch_end) for metrics, step, epoch_end in entry["logged"]]
        self.store._replay(logged)  # what the earlier attempt logged, as a restored fit replays it
        self.store._recording = logged
        best = entry.get("best")
        return FitState(entry["epochs_done"], tensors["model"], tensors["optimizer"], tensors["orders"],
                        entry["regularizer"], entry["history"],
                        None if best is None else BestEpochs(len(best["scores"]), best["scores"], best["epochs"],
                                                             tensors["best_model"], best["regularizer"]))

    def save(self, state: Callable[[], FitState]) -> None:
        if time.monotonic() - self.last_save < PARTIAL_SAVE_EVERY_S:
            return
        fit = state()
        tensors = {"model": fit.model, "optimizer": fit.optimizer, "orders": fit.orders}
        entry = {"file": self.file, "fingerprint": self.fingerprint, "epochs_done": fit.epochs_done,
                 "regularizer": fit.regularizer, "history": fit.history, "logged": list(self.store._recording or [])}
        if fit.best is not None:
            tensors["best_model"] = {key: value.cpu() for key, value in fit.best.model.items()}
            entry["best"] = {"scores": fit.best.scores, "epochs": fit.best.epochs, "regularizer": fit.best.regularizer}
        atomic_write(self.store.directory / self.file, lambda partial: torch.save(tensors, partial))
        self.store.state["partial"][self.name] = entry
        self.store.save(f"{self.name}: {fit.epochs_done} epochs trained")
        self.last_save = time.monotonic()


def _as_json(fingerprint: dict[str, Any]) -> Any:
    """``fingerprint`` as it reads back from state.json (tuples as lists, objects as text), to compare with."""
    return json.loads(json.dumps(fingerprint, default=str))


def fingerprint(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: Any, regularizer: Any,
                loss: Any) -> dict[str, Any]:
    """What must match for a saved surrogate to stand in for this fit."""
    return {
        "settings": repr(settings), "x": list(x.shape), "y": list(y.shape),
        "parameters": [[name, list(value.shape)] for name, value in model.state_dict().items()],
        "regularizer": type(regularizer).__name__, "loss": getattr(loss, "__qualname__", type(loss).__qualname__),
    }
