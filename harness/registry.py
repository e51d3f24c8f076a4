"""Name -> factory registries for backbones, tasks and probes.

One small generic `Registry` (timm's and lm-eval's idea, at a tenth of the size): a decorator registers a
factory under one or more names; a "module:attr" string registers it lazily so heavy optional dependencies load
only when asked for; installed packages add entries through an entry-point group; an unknown name is an error
that suggests the closest names.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from ..common.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to factories, filled by `register` and (lazily) by an entry-point group."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T | str] = {}
        self._families: dict[str, Callable] = {}  # "timm" -> factory taking the part after "timm:"
        self._plugins_loaded = entry_point_group is None

    def register(self, *names: str) -> Callable[[T], T]:
        """Decorator: `@BACKBONES.register("toto_base", "toto_large")`."""

        def deco(obj: T) -> T:
            for name in names:
                self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T | str) -> None:
        """Register `obj` (or a lazy "module:attr" string) under `name`; duplicates are an error."""
        if name in self._items and self._items[name] is not obj:
            raise ConfigError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = obj

    def add_family(self, prefix: str, factory: Callable) -> None:
        """Register every `prefix:ARG` name at once: `get("timm:vit_small_patch16_224")` is `factory` with ARG
        bound as its first argument (a family of models named by another library's names)."""
        self._families[prefix] = factory

    def get(self, name: str) -> T:
        """The factory registered as `name`; an unknown name raises with a "did you mean" suggestion."""
        self._load_plugins()
        prefix, colon, arg = name.partition(":")
        if colon and prefix in self._families and name not in self._items:
            return functools.partial(self._families[prefix], arg)  # type: ignore[return-value]
        if name not in self._items:
            raise ConfigError(self.unknown_message(name))
        obj = self._items[name]
        if isinstance(obj, str):
            module, _, attr = obj.partition(":")
            obj = getattr(importlib.import_module(module), attr)
            self._items[name] = obj
        return obj  # type: ignore[return-value]

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching an fnmatch glob."""
        self._load_plugins()
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def unknown_message(self, name: str) -> str:
        """'unknown <kind> <name>; did you mean ...?' (or the list of known names)."""
        close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
        known = ", ".join([*self.names(), *(f"{p}:NAME" for p in self._families)]) or "none"
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {known}"
        return f"unknown {self.kind} {name!r}{hint}"

    def _load_plugins(self) -> None:
        # Entry points are read once, on first use, so importing toto_eval stays cheap.
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            if ep.name not in self._items:
                self._items[ep.name] = ep.value


BACKBONES: Registry = Registry("backbone", "toto_eval.backbones")
TASKS: Registry = Registry("task", "toto_eval.tasks")
PROBES: Registry = Registry("probe")


INCLUDED: list[str] = []  # the files include_files imported, so that worker processes import them too


def include_files(paths: list[str]) -> None:
    """Import users' Python files so their `@BACKBONES.register(...)` / `@TASKS.register(...)` run (--include)."""
    import importlib.util
    import sys
    from pathlib import Path

    for path in paths:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"{file}: --include file not found")
        spec = importlib.util.spec_from_file_location(f"toto_eval_include_{file.stem}", file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        INCLUDED.append(str(file.resolve()))
