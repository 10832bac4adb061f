"""The command line's argparse pieces, and its flags and listings made from pydantic settings.

A trial's flags (``--task``, ``--seed``, ...) come from :class:`~ignite_mbo.config.TrialConfig`'s
fields, the regularizer hyperparameter flags (``--epsilon``, ...) from every registered regularizer
config, and ``ignite-mbo baselines`` from each baseline's ``Settings``: a field's ``description``
is the help, its default the "(default: ...)". A new field or regularizer appears by itself.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ignite_mbo.errors import UserError

if TYPE_CHECKING:
    from ignite_mbo.baselines import Baseline


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to an option's help unless the help already says its default or X is
    None or an empty list (unset: the help says what happens then)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        if "default" in help_text or action.default is None or action.default == []:
            return help_text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line with a pointer to --help, exit status 2; help shows defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def key_values(pairs: list[str], flag: str) -> dict[str, Any]:
    """``["epochs=5", "hidden_size=64"]`` -> ``{"epochs": 5, "hidden_size": 64}`` (values read as YAML scalars)."""
    from ignite_mbo.platform.spaces import read_yaml

    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"{flag} expects KEY=VALUE, got {pair!r}")
        if key in parsed:
            raise UserError(f"{flag} {key} is given twice; give each key once")
        try:
            parsed[key] = read_yaml(value) if value else ""
        except Exception:  # noqa: BLE001 - any YAML problem is the user's value
            raise UserError(f"{flag} {key}: {value!r} is not a YAML value") from None
    return parsed


def _scalar_type(annotation: Any) -> Any:
    """``int | None`` -> ``int``; other annotations as they are."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _show(value: Any) -> str:
    """A default as a user types it: booleans as on/off."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _default(field: FieldInfo) -> Any:
    return field.get_default(call_default_factory=True)


def add_field_flag(group: argparse._ActionsContainer, name: str, kind: Any, help_text: str) -> None:
    """``--name`` (underscores as dashes, a trailing one dropped) parsed as ``kind`` (a field's annotation;
    None: the text as given, for pydantic to read); unset, it stays None and the model's default applies."""
    kind = _scalar_type(kind)
    flag = f"--{name.rstrip('_').replace('_', '-')}"  # lambda_ (a Python keyword's field) is --lambda
    if kind is bool:
        group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
    elif typing.get_origin(kind) is typing.Literal:
        group.add_argument(flag, dest=name, choices=[str(choice) for choice in typing.get_args(kind)], help=help_text)
    else:
        group.add_argument(flag, dest=name, type=kind if kind in (int, float) else str, help=help_text)


def _per_owner(values: Mapping[str, str]) -> str:
    """``{"ignite": "a", "ignite2": "a", "sam": "b"}`` -> ``"a"`` if all agree, else ``"ignite, ignite2: a; sam: b"``."""
    owners: dict[str, list[str]] = {}
    for owner, value in values.items():
        owners.setdefault(value, []).append(owner)
    if len(owners) == 1:
        return next(iter(owners))
    return "; ".join(f"{', '.join(names)}: {value}" for value, names in owners.items())


def add_model_flags(group: argparse._ActionsContainer, model: type[BaseModel], *, skip: Iterable[str] = (),
                    choices: Mapping[str, Iterable[str]] | None = None) -> list[str]:
    """One flag per field of ``model`` (except ``skip``); ``choices`` adds "one of ..." to a field's help.
    Returns the fields' names, the keys of :func:`given` later."""
    added = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        default = _default(field)
        shown = default.model_dump().get("name", default) if isinstance(default, BaseModel) else default  # a regularizer
        listed = (choices or {}).get(name)
        help_text = field.description or name.replace("_", " ")
        if listed is not None:
            help_text += f"; one of {', '.join(listed)}"
        add_field_flag(group, name, field.annotation, f"{help_text} (default: {_show(shown)})")
        added.append(name)
    return added


def add_regularizer_flags(group: argparse._ActionsContainer, configs: Mapping[str, type[BaseModel]]) -> list[str]:
    """One flag per hyperparameter of any regularizer config. Where regularizers share a name, the help
    gives each one's description and default where they differ, and a type they disagree on is left to
    pydantic to read. Returns the hyperparameters' names."""
    fields: dict[str, dict[str, FieldInfo]] = {}
    for regularizer, config in configs.items():
        for name, field in config.model_fields.items():
            if name != "name":
                fields.setdefault(name, {})[regularizer] = field
    for name, owners in fields.items():
        kinds = {repr(_scalar_type(field.annotation)) for field in owners.values()}
        kind = next(iter(owners.values())).annotation if len(kinds) == 1 else None
        description = _per_owner({owner: field.description or name.replace("_", " ") for owner, field in owners.items()})
        default = _per_owner({owner: _show(_default(field)) for owner, field in owners.items()})
        add_field_flag(group, name, kind, f"{description} (default: {default})")
    return list(fields)


def given(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The flags among ``names`` that the user gave (unset flags are None)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def describe_baseline(baseline: Baseline[Any], task_ids: Iterable[str]) -> str:
    """A baseline's settings as aligned text: name, default, quick value, description; a per-task
    default is shown for each task."""
    fields = baseline.settings_type.model_fields
    rows = [("setting", "default", "quick", "description")]
    for name, field in fields.items():
        default = "per task" if name in baseline.per_task_defaults else _show(_default(field))
        quick = _show(baseline.quick[name]) if name in baseline.quick else ""
        rows.append((name, default, quick, field.description or ""))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [f"{baseline.name}: {len(fields)} settings (--set NAME=VALUE; quick: with --fidelity quick)"]
    lines += ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
              for row in rows]
    for name, default_for in baseline.per_task_defaults.items():
        per_task = ", ".join(f"{task_id} {default_for(task_id)}" for task_id in task_ids)
        lines.append(f"  per task, {name}: {per_task}")
    return "\n".join(line.rstrip() for line in lines)


def describe_baselines(name: str | None = None) -> str:
    """``ignite-mbo baselines [NAME]``: baseline ``name``'s settings, or every baseline's."""
    from ignite_mbo import baselines
    from ignite_mbo.tasks import REGISTRY

    chosen = [baselines.load(name)] if name else list(baselines.registry().values())
    return "\n\n".join(describe_baseline(baseline, REGISTRY) for baseline in chosen)
