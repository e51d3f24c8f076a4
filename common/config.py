"""Strict construction of frozen dataclass configs from dicts and `key=value` strings.

nanoGPT's configurator got one thing right that many harnesses get wrong: an unknown key or a value of the wrong
type is an error, never silently ignored. Every task, probe and training config goes through `build_config`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from .errors import ConfigError

C = TypeVar("C")


def build_config(cls: type[C], values: dict[str, Any] | None = None, where: str = "") -> C:
    """`cls(**values)` after checking every key exists and every value has the field's type."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    label = where or cls.__qualname__
    for key in values:
        if key not in fields:
            raise ConfigError(f"{label}: unknown key {key!r} (known: {', '.join(sorted(fields))})")
    checked = {key: _coerce(hints[key], value, f"{label}.{key}") for key, value in values.items()}
    return cls(**checked)


def parse_overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """`["k400_probe.epochs=3", ...]` -> `{"k400_probe": {"epochs": "3"}}` (values stay strings until typed)."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        scope, dot, field = key.partition(".")
        if not sep or not dot or not field:
            raise ConfigError(f"--set {pair!r}: expected TASK.KEY=VALUE")
        out.setdefault(scope, {})[field] = value
    return out


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
        items = value.split(",") if isinstance(value, str) else value
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
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")
