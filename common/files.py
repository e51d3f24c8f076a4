"""Writing files so that a crash, a full disk or a second process never leaves a half-written one behind.

`atomic_write_*` write to a hidden temporary name beside the target and rename it into place (rename is atomic
on POSIX), so a reader sees the old file or the new one, never a mix. `file_lock` is an advisory `flock` on a
lock file, for the few places where two processes could meet: creating or completing a cache entry, generating
a mini dataset, recording demonstrations. A full disk is turned into a one-line error naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import TotoEvalError


class DiskFullError(TotoEvalError):
    """The disk filled up while writing; what was written before is kept, the partial file is removed."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise disk_error(path, err) from err


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def disk_error(path: str | os.PathLike, err: OSError) -> Exception:
    """A full disk (ENOSPC, EDQUOT) as a one-line DiskFullError naming the file; any other OSError unchanged."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"{path}: no space left on the device; earlier results are kept, free space and rerun")
    return err


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (created if needed) for the `with` block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
