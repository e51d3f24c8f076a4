"""`toto-eval ls backbones|tasks|probes`: what is registered, with one line each."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="list registered backbones, tasks or probes")
    p.add_argument("what", choices=("backbones", "tasks", "probes"), help="which registry to list")
    p.add_argument("--include", action="append", default=[], help="a Python file that registers more (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .evaluate import load_builtins
    from .registry import BACKBONES, PROBES, TASKS, include_files

    load_builtins()
    include_files(args.include)
    registry = {"backbones": BACKBONES, "tasks": TASKS, "probes": PROBES}[args.what]
    for name in registry.names():
        obj = registry.get(name)
        if args.what == "tasks":
            print(f"{name:24s} v{obj.version}  tags={','.join(obj.tags)}  metric={obj.main_metric}")
        else:
            doc = (obj.__doc__ or "").strip().splitlines()
            print(f"{name:24s} {doc[0] if doc else ''}")
    return 0
