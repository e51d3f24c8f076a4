"""`toto-eval run`: evaluate one backbone on tasks, write one result file per task, print a summary.

    toto-eval run --backbone toto_tiny --tasks all                    # the mini suite
    toto-eval run --backbone toto_large --checkpoint CKPT --tasks all --data-root /data
    toto-eval run --config run.toml                                   # or a result file: run it again
    toto-eval run --backbone toto_tiny --tasks all --seeds 0-4         # one run per seed, results/seed<N>/

`--config` takes a TOML run file (keys are this command's long options, plus `[task.NAME]` tables of config
values) or a result JSON (what that result's run was); options given on the command line win over it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..common.files import default_cache_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="evaluate a backbone on tasks", description=__doc__)
    add_run_options(p)
    p.add_argument(
        "--seeds",
        help="several seeds (0-4, or 0,3,7): one run per seed into RESULTS/seed<N>, features computed once; "
        "`toto-eval leaderboard --results-dir RESULTS/seed* --pool-seeds` pools them",
    )
    p.set_defaults(func=run)


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The options of `run` (and of every command that describes a run, such as `plan`)."""
    p.add_argument("--config", help="a run.toml, or a result .json to run again; options given here win")
    p.add_argument("--backbone", help="a registered name (`toto-eval ls backbones`) or timm:<name>")
    p.add_argument("--checkpoint", help="local weights for the backbone (file or checkpoint folder)")
    p.add_argument("--random-init", action="store_true", help="evaluate an untrained network on purpose (flagged)")
    p.add_argument("--tasks", default="all", help="task names, tags or 'all', comma-separated")
    p.add_argument("--data-root", type=Path, help="folder of the real datasets in their official layouts")
    p.add_argument("--suite", choices=("mini",), help="the generated mini suite (what runs without --data-root)")
    p.add_argument("--full-protocol", action="store_true", help="on the mini suite, keep each task's full protocol")
    p.add_argument("--layers", default="all", help="'all', 'lastN', or comma-separated indices (negatives count back)")
    p.add_argument("--limit", type=int, help="a seeded random subset of N samples per split (results are flagged)")
    p.add_argument(
        "--limit-seed", type=int, default=0, help="seeds the --limit subset (not --seed: every seed reads the same)"
    )
    p.add_argument("--device", default="cpu", help="torch device for the backbone and the probes")
    p.add_argument("--seed", type=int, default=0, help="seeds python, numpy, torch, probes and data order")
    p.add_argument("--batch-size", type=int, default=32, help="clips per backbone forward pass")
    p.add_argument("--num-workers", type=int, default=0, help="data-loading processes")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        help="features and mini datasets ($TOTO_EVAL_CACHE_DIR or ~/.cache/toto-eval)",
    )
    p.add_argument("--results-dir", type=Path, default=Path("results"), help="where result files are written")
    p.add_argument(
        "--overwrite",
        choices=("always", "never"),
        default="always",
        help="'never' keeps existing successful results and skips those tasks",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TASK.KEY=VALUE",
        help="override a task config value; KEY may be dotted (probe.lrs=[1e-3,3e-3]); repeatable",
    )
    p.add_argument("--include", action="append", default=[], help="a Python file that registers more (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--jobs",
        type=int,
        help="on a CPU, tasks run at once in worker processes, each on cores/jobs threads (default: one per "
        "core; 1 on a GPU or under torchrun)",
    )
    p.add_argument(
        "--probe-mode",
        choices=("auto", "cached", "online"),
        default="auto",
        help="probe tasks train on cached tokens or online from the backbone; auto: online where the token "
        "cache would not fit the budget",
    )
    p.add_argument("--cache-budget", help="bytes the feature cache may take, e.g. 500G (default: the free disk)")


def parse_layers(text: str | None):
    """'all' -> None, 'last4' -> 4 (timm's "last n"), '0,-1' -> [0, -1]."""
    if text is None or text == "all":
        return None
    if text.startswith("last"):
        return _int(text[4:], "--layers")
    return [_int(part, "--layers") for part in text.split(",")]


def _int(text: str, flag: str) -> int:
    from ..common.errors import ConfigError

    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not an integer") from None


def prepare(args: argparse.Namespace):
    """(backbone, task names, RunOptions) of a run's options, checked before any compute (`evaluate` then
    refuses a plan over the cache budget, with its table, before it computes anything)."""
    from ..common.config import parse_overrides
    from ..common.errors import ConfigError
    from .evaluate import RunOptions, create_backbone, resolve_tasks, task_config
    from .plan import parse_size
    from .registry import TASKS, include_files

    if not args.backbone:
        raise ConfigError("--backbone is required (or a --config that names one)")
    if args.suite == "mini" and args.data_root:
        raise ConfigError("--suite mini and --data-root exclude each other")
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: must be 1 or more (tasks run at once)")
    include_files(args.include)
    names = resolve_tasks(args.tasks)
    overrides = parse_overrides(args.set)
    for scope in overrides:
        if scope not in names:
            raise ConfigError(f"--set {scope}.…: task {scope!r} is not among the selected tasks ({', '.join(names)})")
    mini = args.data_root is None and not args.full_protocol
    for name in names:  # every config is checked before any compute
        task_config(TASKS.get(name), mini, overrides.get(name))
    backbone = create_backbone(args.backbone, args.checkpoint, args.random_init)
    options = RunOptions(
        data_root=args.data_root,
        cache_dir=args.cache_dir,
        results_dir=args.results_dir,
        device=args.device,
        seed=args.seed,
        layers=parse_layers(args.layers),
        limit=args.limit,
        limit_seed=args.limit_seed,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        overwrite=args.overwrite,
        progress=not (args.no_progress or getattr(args, "quiet", False)),  # -q: warnings only, so no bars either
        mini_overrides=not args.full_protocol,
        probe_mode=args.probe_mode,
        jobs=args.jobs,
        cache_budget=parse_size(args.cache_budget) if args.cache_budget else None,
        task_config=overrides,
    )
    return backbone, names, options


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,7' -> [0, 3, 7]; ranges and single seeds may mix ('0-2,9')."""
    from ..common.errors import ConfigError

    seeds: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        low = _int(first, "--seeds")
        high = _int(last, "--seeds") if dash else low
        if high < low:
            raise ConfigError(f"--seeds: {part.strip()!r} is an empty range")
        seeds += [s for s in range(low, high + 1) if s not in seeds]
    return seeds


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import logging

    from ..common.errors import ConfigError
    from .evaluate import evaluate
    from .summary import print_seed_summary, print_summary

    seeds = parse_seeds(args.seeds) if getattr(args, "seeds", None) else None
    if seeds is not None and args.seed != 0:
        raise ConfigError("--seed and --seeds exclude each other")
    backbone, names, options = prepare(args)
    log = logging.getLogger(__name__)
    if args.data_root is None:
        log.info("no --data-root: the mini suite (generated on first use; results flagged)")
    if seeds is None:
        results = evaluate(backbone, names, options)
        print_summary(results)
        return 0 if all(r.ok for r in results) else 1
    by_seed = {}
    for seed in seeds:  # one backbone for every seed: its features are cached by the first and read back after
        folder = options.results_dir / f"seed{seed}"
        log.info("seed %d (%d of %d) -> %s", seed, len(by_seed) + 1, len(seeds), folder)
        by_seed[seed] = evaluate(backbone, names, dataclasses.replace(options, seed=seed, results_dir=folder))
    print_seed_summary(by_seed)
    log.info("a row over the seeds: toto-eval leaderboard --results-dir %s/seed* --pool-seeds", options.results_dir)
    return 0 if all(r.ok for results in by_seed.values() for r in results) else 1
