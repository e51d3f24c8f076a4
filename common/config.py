"""Strict construction of frozen dataclass configs from dicts, dotted keys and `key=value` strings.

nanoGPT's configurator got one thing right that many harnesses get wrong: an unknown key or a value of the wrong
type is an error, never silently ignored. Every task, probe and training config goes through `build_config`.

Configs nest (a task's `probe: ProbeConfig`), and an override names a nested field with a dotted key
(`probe.lrs`), in a dict or on the command line (`--set k400_probe.probe.lrs=[1e-3,3e-3]`). Overrides apply on
top of a base config, field by field, so a nested override changes only the fields it names and keeps the
task's own defaults for the rest.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from .errors import ConfigError

C = TypeVar("C")


def build_config(cls: type[C], values: dict[str, Any] | None = None, where: str = "", base: C | None = None) -> C:
    """`cls` with `values` applied on `base` (or on the defaults), each key checked and each value typed.

    Keys may be dotted (`"probe.lrs"`) or values nested dicts (`{"probe": {"lrs": ...}}`) for dataclass fields.
    """
    label = where or cls.__qualname__
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    changes = {}
    for key, value in nest(values or {}).items():
        if key not in fields:
            raise ConfigError(f"{label}: unknown key {key!r} (known: {', '.join(sorted(fields))})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            inner = getattr(base, key) if base is not None else _default(fields[key])
            changes[key] = build_config(tp, value, f"{label}.{key}", base=inner)
        else:
            changes[key] = _coerce(tp, value, f"{label}.{key}")
    if base is not None:
        return dataclasses.replace(base, **changes)
    return cls(**changes)


def subset(cls: type[C], source: object, **values: Any) -> C:
    """`cls` from the fields `source` shares with it (a task config handing its head settings to the head's
    own config), plus `values`."""
    shared = {f.name: getattr(source, f.name) for f in dataclasses.fields(cls) if hasattr(source, f.name)}  # type: ignore[arg-type]
    return cls(**{**shared, **values})


def nest(values: dict[str, Any]) -> dict[str, Any]:
    """`{"probe.lrs": x, "epochs": 2}` -> `{"probe": {"lrs": x}, "epochs": 2}` (nested dicts are merged)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        head, dot, rest = key.partition(".")
        if dot:
            value = {rest: value}
        if isinstance(value, dict) and isinstance(out.get(head), dict):
            out[head] = {**out[head], **nest(value)}
        else:
            out[head] = nest(value) if isinstance(value, dict) else value
    return out


def parse_overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """`["k400_probe.probe.epochs=3", ...]` -> `{"k400_probe": {"probe.epochs": "3"}}` (values stay strings)."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        scope, dot, field = key.partition(".")
        if not sep or not dot or not field:
            raise ConfigError(f"--set {pair!r}: expected TASK.KEY=VALUE (KEY may be dotted: probe.lrs)")
        out.setdefault(scope, {})[field] = value
    return out


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.lower() == "none")
        if is_none and type(None) in typing.get_args(tp):
            return None
        errors = []
        for arm in typing.get_args(tp):
            if arm is type(None):
                continue
            try:
                return _coerce(arm, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: {value!r} is not allowed")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {typing.get_args(tp)}")
        return value
    if origin is tuple:
        items = _split_list(value) if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        arm = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if arm is None and len(args) != len(items):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(items)}")
        return tuple(_coerce(arm or args[i], v, where) for i, v in enumerate(items))
    return _scalar(tp, value, where)


def _scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
    elif tp in (int, float):  # an int for an int; an int or a float for a float; never a bool; or their text
        exact = isinstance(value, int) or (tp is float and isinstance(value, float))
        if exact and not isinstance(value, bool):
            return tp(value)
        if isinstance(value, str):
            try:
                return tp(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def _split_list(text: str) -> list[str]:
    """ "1e-3,3e-3" or "[1e-3, 3e-3]" (the command line's list forms) -> ["1e-3", "3e-3"]; "[]" -> []."""
    text = text.strip()
    if text[:1] + text[-1:] in ("[]", "()"):
        text = text[1:-1]
    return [part.strip() for part in text.split(",")] if text.strip() else []
