"""Built-in tasks, one subpackage per task (data, protocol, metric, mini generator, command-line tools).

`load()` imports every task module so its `@TASKS.register` runs. Importing a task's package alone (say, for its
command-line scorer) does not import the task, so `toto-eval --help` and `toto-eval davis-score` stay cheap.
"""

from __future__ import annotations

import importlib

BUILTIN = ("cater", "davis", "ego4d_sta", "imagenet_probe", "k400", "robot")


def load() -> None:
    """Register every built-in task."""
    for name in BUILTIN:
        importlib.import_module(f"toto_eval.tasks.{name}.task")
