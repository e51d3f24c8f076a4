"""Fault points: places where a test may kill this process (SIGKILL, as a crash or an OOM killer would).

The fault-injection tests (tests/test_faults.py) need to stop a run at an exact, repeatable place: between writing
rows and marking them filled, between a temporary file and its rename, between two files of a finished probe grid.
Code calls `point("cache.flush")` there. Nothing happens unless the environment asks for it:

    TOTO_EVAL_FAULT=cache.flush:3          SIGKILL this process the 3rd time it reaches "cache.flush"
    TOTO_EVAL_FAULT=a:1,b:2                either, whichever comes first
    TOTO_EVAL_FAULT_LOG=/tmp/hits.txt      append each point's name when it is reached (a test counts a clean
                                           run's hits to know which (name, N) kill points exist)

The environment is read once per process; without it `point` is one dict lookup. Counts are per process, so
under torchrun every rank counts (and is killed) on its own.
"""

from __future__ import annotations

import os
import signal

ENV = "TOTO_EVAL_FAULT"
LOG_ENV = "TOTO_EVAL_FAULT_LOG"

_targets: dict[str, int] | None = None  # name -> the hit to die at; None until the environment is read
_log: str | None = None
_hits: dict[str, int] = {}


def point(name: str) -> None:
    """A named place where a test may kill this process; a no-op unless TOTO_EVAL_FAULT(_LOG) asks."""
    if _targets is None:
        _configure()
    if not _targets and _log is None:
        return
    hit = _hits[name] = _hits.get(name, 0) + 1
    if _log is not None:
        with open(_log, "a") as f:
            f.write(f"{name}\n")
    if _targets.get(name) == hit:
        os.kill(os.getpid(), signal.SIGKILL)


def arm(spec: str = "", log: str | None = None) -> None:
    """Set this process's fault points explicitly, counts reset (a forked child: the environment is not re-read)."""
    global _targets, _log
    _targets, _log = parse(spec), log
    _hits.clear()


def parse(spec: str) -> dict[str, int]:
    """`"a:1,b:2"` -> `{"a": 1, "b": 2}`; a malformed spec is an error (a test that kills nothing must not pass)."""
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, count = part.rpartition(":")
        if not name or not count.isdigit() or int(count) < 1:
            raise ValueError(f"{ENV}: {part!r} is not NAME:N with N >= 1")
        out[name] = int(count)
    return out


def _configure() -> None:
    global _targets, _log
    _targets = parse(os.environ.get(ENV, ""))
    _log = os.environ.get(LOG_ENV) or None
