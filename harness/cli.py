"""`toto-eval`: a thin shell over the Python API.

Subcommands: `run` (evaluate a backbone on tasks), `ls` (backbones, tasks, probes), `cache` (ls, verify, prune),
and the task-provided commands registered in `TASK_COMMANDS` (each a module with `add_parser(subparsers)` and
`run(args) -> int`). Bad input prints one line, `toto-eval: error: ...`, and exits 2; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path

from ..common.config import parse_overrides
from ..common.errors import ConfigError, TotoEvalError
from .backbone import Layers

# Subcommands that live with their task: module paths, imported only when the CLI starts.
TASK_COMMANDS: tuple[str, ...] = (
    "toto_eval.tasks.davis.score_cli",
    "toto_eval.tasks.ego4d_sta.score_cli",
    "toto_eval.tasks.robot.cli",
    "toto_eval.tasks.cater.generate_cli",
    "toto_eval.leaderboard.cli",
)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        for path in getattr(args, "include", None) or []:
            include(path)
        return args.func(args)
    except TotoEvalError as err:
        print(f"toto-eval: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("toto-eval: interrupted; finished results and cached features are kept", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toto-eval", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    ls = sub.add_parser("ls", help="list registered backbones, tasks or probes")
    ls.add_argument("what", choices=("backbones", "tasks", "probes"))
    ls.add_argument("--include", action="append", help="a Python file that registers extra backbones or tasks")
    ls.set_defaults(func=_ls)
    from . import cache_admin

    cache_admin.add_parser(sub)
    for module in TASK_COMMANDS:
        importlib.import_module(module).add_parser(sub)
    return parser


def _add_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="evaluate a backbone on tasks")
    run.add_argument("--backbone", required=True, help="a registered name (see `toto-eval ls backbones`)")
    run.add_argument("--checkpoint", help="local weights for the backbone")
    run.add_argument("--random-init", action="store_true", help="evaluate an untrained network on purpose")
    run.add_argument("--tasks", default="all", help="task names, tags or 'all', comma-separated")
    run.add_argument("--data-root", type=Path, help="folder holding the real datasets in their official layouts")
    run.add_argument("--suite", choices=("mini",), help="the generated mini suite (the default without --data-root)")
    run.add_argument("--layers", default=None, help="'all', 'lastN', or comma-separated indices (negatives ok)")
    run.add_argument("--limit", type=int, help="a seeded random subset of N samples per split (flagged)")
    run.add_argument("--device", default="cpu")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--batch-size", type=int, default=32)
    run.add_argument("--num-workers", type=int, default=0, help="data-loading processes")
    run.add_argument("--cache-dir", type=Path, help="features and mini datasets (default ~/.cache/toto-eval)")
    run.add_argument("--results-dir", type=Path, default=Path("results"))
    run.add_argument(
        "--overwrite",
        choices=("always", "never"),
        default="always",
        help="'never' keeps existing successful results and skips those tasks",
    )
    run.add_argument("--set", action="append", default=[], metavar="TASK.KEY=VALUE", help="override a task config")
    run.add_argument("--include", action="append", help="a Python file that registers extra backbones or tasks")
    run.add_argument("--no-progress", action="store_true")
    run.set_defaults(func=_run)


def parse_layers(text: str | None) -> Layers:
    """'all' -> None, 'last4' -> 4 (timm's "last n"), '0,-1' -> [0, -1]."""
    if text is None or text == "all":
        return None
    if text.startswith("last"):
        return _int(text[4:], "--layers")
    return [_int(part, "--layers") for part in text.split(",")]


def _int(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not an integer") from None


def _run(args: argparse.Namespace) -> int:
    from .evaluate import DEFAULT_CACHE, RunOptions, create_backbone, evaluate, resolve_tasks
    from .summary import print_summary

    if args.suite == "mini" and args.data_root:
        raise ConfigError("--suite mini and --data-root exclude each other")
    names = resolve_tasks(args.tasks)
    backbone = create_backbone(args.backbone, args.checkpoint, args.random_init)
    if args.data_root is None:
        print("[toto-eval] no --data-root: running the mini suite (generated on first use; numbers are flagged mini)")
    overrides = parse_overrides(args.set)
    for scope in overrides:
        if scope not in names:
            raise ConfigError(f"--set {scope}.…: task {scope!r} is not among the selected tasks ({', '.join(names)})")
    options = RunOptions(
        data_root=args.data_root,
        cache_dir=args.cache_dir or DEFAULT_CACHE,
        results_dir=args.results_dir,
        device=args.device,
        seed=args.seed,
        layers=parse_layers(args.layers),
        limit=args.limit,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        task_config=overrides,
    )
    results = evaluate(backbone, names, options)
    print_summary(results)
    return 0 if all(r.ok for r in results) else 1


def _ls(args: argparse.Namespace) -> int:
    from .evaluate import load_builtins
    from .registry import BACKBONES, PROBES, TASKS

    load_builtins()
    registry = {"backbones": BACKBONES, "tasks": TASKS, "probes": PROBES}[args.what]
    for name in registry.names():
        obj = registry.get(name)
        if args.what == "tasks":
            print(f"{name:24s} v{obj.version}  tags={','.join(obj.tags)}  metric={obj.main_metric}")
        else:
            doc = (obj.__doc__ or "").strip().splitlines()
            print(f"{name:24s} {doc[0] if doc else ''}")
    return 0


def include(path: str) -> None:
    """Import a user's Python file so its `@BACKBONES.register(...)` / `@TASKS.register(...)` run."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: --include file not found")
    spec = importlib.util.spec_from_file_location(f"toto_eval_include_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


if __name__ == "__main__":
    sys.exit(main())
