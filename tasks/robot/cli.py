"""`toto-eval robot demos`: record scripted-expert demonstrations once, for the `robot` task to reuse.

    toto-eval robot demos --out DATA/robot_demos [--tasks franka_pick,kuka_cabinet] [--demos 40] [--image-size 112]

writes one folder per task and settings (see `demos.py`); running it again only records what is missing. The
`robot` task reads `<--data-root>/robot_demos` when a data root is given, so the settings here must match the
task's (`image_size`, `max_steps`, `hold_steps`); the folder name's hash makes a mismatch a clear "not found".
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from toto_eval.common.errors import ConfigError

from .demos import expert_rate, record_demos
from .envs import TASK_NAMES, EnvConfig


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add `robot demos` to the toto-eval CLI."""
    robot = subparsers.add_parser("robot", help="robot manipulation utilities (pybullet)")
    sub = robot.add_subparsers(dest="robot_command", required=True)
    demos = sub.add_parser("demos", help="record expert demonstrations to disk (resumes; reuses what exists)")
    demos.add_argument("--out", type=Path, required=True, help="folder to write (e.g. DATA_ROOT/robot_demos)")
    demos.add_argument("--tasks", default=",".join(TASK_NAMES), help="comma-separated robot tasks")
    demos.add_argument("--demos", type=int, default=40, help="successful demonstrations per task")
    defaults = EnvConfig()
    demos.add_argument("--image-size", type=int, default=defaults.image_size, help="camera image side in pixels")
    demos.add_argument("--max-steps", type=int, default=defaults.max_steps, help="control steps per episode")
    demos.add_argument("--hold-steps", type=int, default=defaults.hold_steps, help="steps the goal must hold")
    demos.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Record the demos; prints one line per task with the expert's success over the seeds tried."""
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASK_NAMES]
    if unknown:
        raise ConfigError(f"--tasks: unknown robot task(s) {', '.join(unknown)} (known: {', '.join(TASK_NAMES)})")
    env_cfg = EnvConfig(image_size=args.image_size, max_steps=args.max_steps, hold_steps=args.hold_steps)
    for task in tasks:
        t0 = time.perf_counter()
        folder = record_demos(args.out, task, env_cfg, args.demos)
        ok, tried = expert_rate(folder)
        print(f"{task}: {ok}/{tried} expert episodes succeeded -> {folder} ({time.perf_counter() - t0:.1f}s)")
    return 0
