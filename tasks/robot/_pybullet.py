"""pybullet for the robot task, imported on first use and without the "pybullet build time" banner.

The `robot` task module is imported whenever toto-eval registers its tasks, so importing pybullet with it would
make every command need pybullet (a source build on some platforms) and print its C module's banner on stderr.
`p` stands in for the module: the first attribute read imports it, with the C-level stderr silenced only during
the import. Every module of this package imports `p` (and `data_path`) from here.
"""

from __future__ import annotations

import ctypes
import os
import sys
from types import ModuleType

from toto_eval.common.errors import ConfigError


def _quiet_import() -> ModuleType:
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import pybullet

            ctypes.CDLL(None).fflush(None)  # anything still in C's stdio buffers goes to /dev/null
    except ImportError as err:
        raise ConfigError(f"the robot task needs pybullet (pip install pybullet): {err}") from None
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return pybullet


class _Lazy:
    """Attribute reads go to pybullet, imported by the first one; each attribute is then kept on the instance,
    so the simulation loop's calls cost a plain lookup."""

    def __getattr__(self, name: str):
        value = getattr(_module(), name)
        setattr(self, name, value)
        return value


def _module() -> ModuleType:
    return sys.modules.get("pybullet") or _quiet_import()


p = _Lazy()


def data_path() -> str:
    """pybullet_data's folder of URDFs and meshes (shipped in the pybullet wheel)."""
    _module()  # pybullet_data is plain Python, but its import should not be the first to load pybullet
    import pybullet_data

    return pybullet_data.getDataPath()
