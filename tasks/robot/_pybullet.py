"""pybullet, imported once without the "pybullet build time" banner its C module writes to stderr.

The `robot` task is imported whenever toto-eval registers its tasks, so the banner would otherwise precede the
output of every command. Only the C-level file descriptor is silenced, only during the import; a failing import
still raises its Python exception. Every module of this package imports `p` from here.
"""

from __future__ import annotations

import ctypes
import os
import sys


def _quiet_import():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import pybullet

            ctypes.CDLL(None).fflush(None)  # anything still in C's stdio buffers goes to /dev/null
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return pybullet


p = _quiet_import()
