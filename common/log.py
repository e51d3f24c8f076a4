"""Logging and progress for a library that stays quiet until a command line asks it to talk.

Library code logs through `logging.getLogger(__name__)` and shows progress with `progress(...)`. A bar is drawn
when the caller says so (`enabled=True`) or, for work deep inside the library that has no flag of its own (a mini
dataset generated on first use, robot demos, rollouts), when a command line asked for bars (`enabled=None`).
The command lines call `setup_logging(verbosity, bars=...)`: INFO to stderr by default, DEBUG with -v, WARNING
with -q (and no bars), and every record goes through `tqdm.write` so a message printed inside a loop never breaks
a progress bar. Python callers that configure nothing see warnings only, and no bars.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")
_bars = False  # set by setup_logging: whether a command line wants bars for work that has no flag of its own


class _TqdmHandler(logging.StreamHandler):
    """A stderr handler that writes above any live progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never raise
            self.handleError(record)


def setup_logging(verbosity: int = 0, prog: str = "toto-eval", bars: bool = True) -> None:
    """Configure the `toto_eval` loggers for a command line: 0 = INFO, >0 = DEBUG, <0 = WARNING (and no bars)."""
    global _bars
    _bars = bars and verbosity >= 0
    level = logging.INFO if verbosity == 0 else logging.DEBUG if verbosity > 0 else logging.WARNING
    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun only rank 0 narrates; the others warn
        level = max(level, logging.WARNING)
    handler = _TqdmHandler()
    handler.setFormatter(
        logging.Formatter(f"[{prog}] %(message)s" if verbosity <= 0 else "%(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger("toto_eval")
    root.handlers[:] = [handler]
    root.setLevel(level)


def progress(iterable: Iterable[T] | None = None, *, enabled: bool | None = None, **kwargs: Any) -> Any:
    """A tqdm bar with an ETA when `enabled` (None: when a command line asked for bars), else the bare iterable
    (or a no-op bar with `total=`)."""
    from tqdm.auto import tqdm

    on = _bars if enabled is None else enabled
    return tqdm(iterable, disable=not on or int(os.environ.get("RANK", "0")) > 0, dynamic_ncols=True, **kwargs)
