"""Tasks side by side: one run's tasks spread over worker processes, for CPU machines with cores to spare.

On a CPU a single task leaves cores idle for much of its time: mini datasets are written, videos encoded and
decoded, robot episodes simulated and DAVIS masks scored by one thread, and small probe matmuls scale poorly
past a couple of threads. With `jobs` workers (spawned, each with `cores // jobs` torch threads) the mini
datasets are generated and the tasks run concurrently, the costliest first, so that one task's single-threaded
stretches overlap another's compute. Each worker receives the backbone once and rebuilds the run context from
the same options; the parent collects every result and writes it, so a parallel run writes the same files as a
serial one. Workers log in the parent's format with the task's name in front, and draw no progress bars (they
would interleave).

A backbone that cannot be pickled runs its tasks serially.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch

from .registry import INCLUDED, include_files

log = logging.getLogger(__name__)
_WORKER: dict[str, Any] = {}  # in a worker: the backbone, and the task being run (for the log prefix)


def cpu_cores() -> int:
    """The cores this process may use (the affinity mask, which a container or `taskset` may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def choose_jobs(requested: int | None, tasks: int, device: str, distributed: bool) -> int:
    """How many tasks run at once: 1 on an accelerator or under torchrun (the device is the bottleneck, and the
    ranks already share the work), else as requested, by default one per core; never more than the tasks."""
    if distributed or not device.startswith("cpu"):
        return 1
    wanted = cpu_cores() if requested is None else requested
    return max(1, min(wanted, tasks))


def threads_per_job(jobs: int) -> int:
    return max(1, cpu_cores() // jobs)


def open_pool(jobs: int, backbone: object) -> ProcessPoolExecutor | None:
    """`jobs` spawned workers that hold `backbone`, or None when it cannot be sent (then the run is serial)."""
    try:
        payload = pickle.dumps(backbone)
    except Exception as err:  # a local class, an open file handle...: run serially rather than fail
        log.info("tasks run one at a time: the backbone cannot be sent to worker processes (%s)", err)
        return None
    root = logging.getLogger("toto_eval")
    formats = [h.formatter._fmt for h in root.handlers if h.formatter is not None]
    setup = (root.getEffectiveLevel(), formats[0] if formats else "%(message)s", threads_per_job(jobs))
    return ProcessPoolExecutor(
        jobs,
        mp_context=multiprocessing.get_context("spawn"),  # fork would copy the parent's OpenMP pool: a deadlock
        initializer=_init,
        initargs=(payload, list(INCLUDED), setup),
    )


def as_finished(pool: ProcessPoolExecutor, fn: Callable[..., Any], calls: Iterable[tuple]) -> Iterator[tuple]:
    """Yield `(args, fn(*args), None)` for each tuple of `calls` as it finishes (submitted in order: costliest
    first), or `(args, None, reason)` when its worker died. `fn` is a module-level function; in the worker it
    reads the backbone with `worker_backbone()`."""
    pending: dict[Future, tuple] = {pool.submit(_call, fn, args): args for args in calls}
    while pending:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            args = pending.pop(future)
            try:
                yield args, future.result(), None
            except BrokenProcessPool as err:  # killed (out of memory?) or crashed: the others are recorded too
                yield args, None, f"its worker process died ({err})"
            except Exception as err:  # raised outside the task's own error handling (say, an unknown name)
                yield args, None, f"in its worker process: {type(err).__name__}: {err}"


def worker_backbone() -> Any:
    return _WORKER["backbone"]


class _TaskPrefix(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        task = _WORKER.get("task")
        if task and not getattr(record, "prefixed", False) and not str(record.msg).startswith(task):
            record.msg, record.prefixed = f"{task}: {record.msg}", True
        return True


def _init(payload: bytes, included: list[str], setup: tuple[int, str, int]) -> None:
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # ignored (say, a background job): stay ignored
        signal.signal(signal.SIGINT, _quit)  # Ctrl-C reaches the whole process group: the parent reports it once
    level, fmt, threads = setup
    torch.set_num_threads(threads)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(_TaskPrefix())
    root = logging.getLogger("toto_eval")
    root.handlers[:] = [handler]
    root.setLevel(level)
    include_files([p for p in included if p not in INCLUDED])  # their classes, before the backbone is unpickled
    _WORKER["backbone"] = pickle.loads(payload)


def _quit(signum: int, frame: object) -> None:
    # At once, as a kill would: no traceback per worker (an exception raised mid-import prints one), and a killed
    # task's cache work is resumable by design. The parent reports the interruption and keeps what finished.
    os._exit(130)


def _call(fn: Callable[..., Any], args: tuple) -> Any:
    _WORKER["task"] = args[0] if args and isinstance(args[0], str) else None
    return fn(*args)
