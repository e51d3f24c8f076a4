"""Writing files so that a crash, a full disk or a second process never leaves a half-written one behind.

`atomic_write_*` write to a hidden temporary name beside the target (`.<name>.tmp-<host>-<pid>`) and rename it into
place (rename is atomic on POSIX), so a reader sees the old file or the new one, never a mix. A process killed
between the two leaves its temporary behind; the next write of the same target removes it, and
`remove_stale_temporaries` sweeps a folder, because the name says which process wrote it and a temporary of a
process that no longer runs on this host is garbage (one of another host or a live process is left alone).

`file_lock` is an advisory `flock` on a lock file, for the places where two processes could meet: creating,
completing or repairing a cache entry, generating a mini dataset, training one probe grid, writing one result.
The lock dies with its process, so a killed run never leaves a lock held. `preallocate` reserves a file's blocks,
so that writing into a memory map of it cannot meet a full disk (which kills the process with SIGBUS instead of
raising); a full disk becomes a one-line `DiskFullError` naming the file.

`temporary_files(root)` is the one definition of "a temporary file left behind" the fault tests count.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from . import faults
from .errors import TotoEvalError

DISK_FULL = "no space left on the device"  # in every DiskFullError message (results.py recognises it)
KEPT_HIDDEN = (".complete", ".manifest.json")  # hidden files that are part of a finished mini dataset
log = logging.getLogger(__name__)


class DiskFullError(TotoEvalError):
    """The disk filled up while writing; what was written before is kept, the partial file is removed."""


def disk_error(path: str | os.PathLike, err: OSError) -> Exception:
    """A full disk (ENOSPC, EDQUOT) as a one-line DiskFullError naming the file; any other OSError unchanged."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"{path}: {DISK_FULL}; earlier results are kept, free space and rerun")
    return err


def is_disk_full(message: str | None) -> bool:
    """Whether a one-line error message is a DiskFullError's."""
    return bool(message) and DISK_FULL in message


def default_cache_dir() -> Path:
    """Where features, mini datasets, probe states and control weights live unless `--cache-dir` says otherwise:
    `$TOTO_EVAL_CACHE_DIR`, else `~/.cache/toto-eval`."""
    return Path(os.environ.get("TOTO_EVAL_CACHE_DIR") or Path.home() / ".cache" / "toto-eval")


# --- atomic writes and their temporaries ------------------------------------------------------------------------


def temporary_path(path: str | os.PathLike) -> Path:
    """`.<name>.tmp-<host>-<pid>` beside `path`: hidden, and naming the process that writes it."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        faults.point("files.atomic_write")  # a kill here leaves the temporary: the next write removes it
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise disk_error(path, err) from err
    remove_stale_temporaries(path.parent, path.name)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def stale_temporary(path: Path) -> bool:
    """Whether `path` is an atomic write's temporary whose process no longer runs (on this host)."""
    head, sep, owner = path.name.rpartition(".tmp-")
    host, _, pid = owner.rpartition("-")
    if not (sep and head.startswith(".") and pid.isdigit()) or host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def remove_stale_temporaries(folder: str | os.PathLike, target: str | None = None) -> int:
    """Remove the stale temporaries in `folder` (of the file `target` only, if given); returns how many."""
    pattern = f".{target}.tmp-*" if target else ".*.tmp-*"
    removed = 0
    for path in Path(folder).glob(pattern):
        if stale_temporary(path):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def temporary_files(root: str | os.PathLike) -> list[Path]:
    """Every temporary file or folder under `root` (what a killed process may leave behind), sorted.

    A name is temporary when it is hidden (starts with ".": atomic-write temporaries `.x.tmp-<host>-<pid>`,
    generation folders `.<dataset>-XXXXXXXX`, `.ep_00003.<pid>.npz`), except lock files (`*.lock`: empty, and
    meant to stay) and the markers of a finished mini dataset (`.complete`, `.manifest.json`); or when it ends in
    `.tmp` or holds `.tmp.`/`.tmp-` anywhere (`step_0000005.tmp/`, `latest.tmp`). A temporary folder is listed
    once, not its contents.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *dirnames]:
            if _temporary_name(name):
                found.append(Path(dirpath) / name)
        dirnames[:] = [d for d in dirnames if not _temporary_name(d)]
    return sorted(found)


def _temporary_name(name: str) -> bool:
    if name.startswith("."):
        return not (name.endswith(".lock") or name in KEPT_HIDDEN)
    return name.endswith(".tmp") or ".tmp." in name or ".tmp-" in name


# --- locks ------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (created if needed) for the `with` block.

    Waiting is logged once. If the lock file was deleted and recreated while we waited (`cache prune`), the lock
    we got is on a file nobody else will lock: take the new one instead.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        f = open(path, "a")  # noqa: SIM115 -- held open for the whole `with` block of the caller
        try:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for %s (another process holds it)", path)
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        except BaseException:
            f.close()
            raise
        if _same_file(f, path):
            break
        f.close()
    try:
        yield
    finally:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        f.close()


def _same_file(f, path: Path) -> bool:
    try:
        return os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


# --- preallocation ----------------------------------------------------------------------------------------------


def preallocate(path: str | os.PathLike) -> bool:
    """Reserve the disk blocks of `path`'s whole current size (a sparse file becomes a real one).

    Returns False where the file system cannot (then a full disk met later, while writing into a memory map of
    the file, kills the process with SIGBUS); raises OSError(ENOSPC) when the disk cannot hold the file. Uses
    Linux `fallocate`, which reserves extents without writing them, never glibc's `posix_fallocate` fallback that
    writes every block (hours for a terabyte on a network file system).
    """
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return True
        return _fallocate(f.fileno(), size, Path(path))


def _fallocate(fd: int, size: int, path: Path) -> bool:
    call = _libc_fallocate()
    if call is None:
        log.debug("%s: cannot preallocate on %s", path, sys.platform)
        return False
    if call(fd, 0, 0, size) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        log.debug("%s: this file system cannot preallocate (%s)", path, os.strerror(err))
        return False
    raise OSError(err, os.strerror(err), str(path))


@functools.cache
def _libc_fallocate():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = getattr(libc, "fallocate64", None) or libc.fallocate
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    call.restype = ctypes.c_int
    return call
