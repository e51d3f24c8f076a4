"""`--config FILE` for `run` and `plan`: a run described in a file, turned into the options it stands for.

Two kinds of file describe a run:

- a TOML run file (read with the standard library's `tomllib`): top-level keys are the long options of `run`
  (`backbone`, `tasks`, `layers`, `limit`, `seed`, `random_init`, ...), and `[task.NAME]` tables hold task
  config values, nested tables for nested configs (`[task.k400_probe.probe]`);
- a result file (`results/<backbone>/<checkpoint>/<task>.json`): the run that produced it, i.e. its backbone and
  checkpoint, task, seed, run options, and the task config values that differ from the task's defaults.

The file becomes command-line options placed before the ones the user typed, so anything typed wins.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from ..common.errors import ConfigError

FLAGS = ("random_init", "full_protocol", "no_progress")  # boolean options: present or absent


def expand_config(argv: list[str]) -> list[str]:
    """`[cmd, ..., --config F, ...]` -> `[cmd, <options from F>, ..., ...]` (F removed); else `argv` unchanged."""
    for i, word in enumerate(argv):
        if word == "--config" and i + 1 < len(argv):
            path, rest = argv[i + 1], argv[:i] + argv[i + 2 :]
        elif word.startswith("--config="):
            path, rest = word.split("=", 1)[1], argv[:i] + argv[i + 1 :]
        else:
            continue
        return rest[:1] + config_options(Path(path)) + rest[1:]
    return argv


def config_options(path: Path) -> list[str]:
    """The command-line options a run file or result file stands for."""
    if not path.is_file():
        raise ConfigError(f"{path}: --config file not found")
    if path.suffix == ".json":
        return _options(*_from_result(path))
    try:
        values = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not a TOML run file ({err})") from None
    tasks = values.pop("task", {})
    if not isinstance(tasks, dict):
        raise ConfigError(f"{path}: [task] must be tables of task config values ([task.NAME])")
    return _options(values, tasks)


def _options(values: dict[str, Any], tasks: dict[str, dict]) -> list[str]:
    out: list[str] = []
    for key, value in values.items():
        dest = key.replace("-", "_")
        if dest in FLAGS:
            out += [f"--{dest.replace('_', '-')}"] if value else []
        elif value is not None:
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            out += [f"--{dest.replace('_', '-')}", text]
    for task, config in tasks.items():
        out += [x for key, value in _leaves(config) for x in ("--set", f"{task}.{key}={_text(value)}")]
    return out


def _from_result(path: Path) -> tuple[dict[str, Any], dict[str, dict]]:
    from .evaluate import load_builtins, task_config
    from .registry import TASKS
    from .results import read_result

    result = read_result(path)
    run = dict(result.run)
    values = {"backbone": result.backbone, "tasks": result.task, "seed": result.seed, **run}
    if run.get("limit") is not None and "limit_seed" not in run:
        values["limit_seed"] = result.seed  # recorded before --limit-seed existed, when --seed drew the subset
    if result.checkpoint not in ("builtin", "random-init"):
        values["checkpoint"] = result.checkpoint
    values["random_init"] = bool(result.flags.get("random_init")) and "checkpoint" not in values
    load_builtins()
    mini = bool(result.flags.get("mini")) and not run.get("full_protocol")
    default = json.loads(json.dumps(_asdict(task_config(TASKS.get(result.task), mini, None)[0])))
    changed = {k: v for k, v in _leaves(result.config) if dict(_leaves(default)).get(k, object()) != v}
    return values, {result.task: changed}


def _asdict(config: Any) -> dict:
    import dataclasses

    return dataclasses.asdict(config)


def _leaves(tree: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in tree.items():
        out += _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)]
    return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_text(v) for v in value) + "]"
    return str(value)
