"""`toto-eval cache ls|verify|prune`: look after the feature cache without reading its code.

`ls` lists entries (backbone, dataset, split, samples, size, state); `verify` checks that every complete entry's
arrays exist with the recorded shapes and that every row is filled or explained as skipped; `prune` deletes
incomplete entries (the default), entries of one backbone, or everything.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cache import FeatureCache


def add_parser(sub: argparse._SubParsersAction) -> None:
    cache = sub.add_parser("cache", help="list, verify or prune cached features")
    cache.add_argument("action", choices=("ls", "verify", "prune"), help="what to do with the cache entries")
    cache.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "toto-eval", help="the cache")
    cache.add_argument("--backbone", help="prune: only entries of this backbone")
    cache.add_argument("--all", action="store_true", help="prune: every entry")
    cache.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .cache import FeatureCache

    cache = FeatureCache(args.cache_dir / "features")
    return {"ls": list_entries, "verify": verify_entries, "prune": prune_entries}[args.action](cache, args)


def describe(path: Path) -> dict:
    meta = json.loads((path / "meta.json").read_text())
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    source = meta.get("source", {})
    return {
        "key": path.name,
        "backbone": meta.get("backbone"),
        "dataset": source.get("dataset", "?"),
        "split": source.get("split", "?"),
        "n": meta.get("n"),
        "mib": size / 2**20,
        "state": "complete" if (path / "COMPLETE").exists() else "partial",
    }


def list_entries(cache: FeatureCache, args: argparse.Namespace) -> int:
    entries = [describe(p) for p in cache.entries()]
    print(f"{'key':22s} {'backbone':16s} {'dataset':18s} {'split':8s} {'n':>7s} {'MiB':>9s}  state")
    for e in entries:
        print(
            f"{e['key']:22s} {e['backbone']!s:16s} {e['dataset']!s:18s} {e['split']!s:8s} {e['n']!s:>7s} "
            f"{e['mib']:9.1f}  {e['state']}"
        )
    print(f"{len(entries)} entries, {sum(e['mib'] for e in entries):.1f} MiB in {cache.root}")
    return 0


def check_entry(path: Path) -> str | None:
    """None if the entry is sound, else the first problem found."""
    import numpy as np

    from .cache import TODO

    meta = json.loads((path / "meta.json").read_text())
    for name, shape in meta["arrays"].items():
        file = path / f"{name}.npy"
        if not file.exists():
            return f"{file.name} missing"
        array = np.load(file, mmap_mode="r")
        if tuple(array.shape) != (meta["n"], *shape):
            return f"{file.name} has shape {array.shape}, meta says {(meta['n'], *shape)}"
    filled = np.load(path / "filled.npy")
    if (path / "COMPLETE").exists() and (filled == TODO).any():
        return f"marked complete but {int((filled == TODO).sum())} rows were never written"
    return None


def verify_entries(cache: FeatureCache, args: argparse.Namespace) -> int:
    bad = 0
    for path in cache.entries():
        problem = check_entry(path)
        bad += problem is not None
        print(f"{path.name}: {'ok' if problem is None else 'BAD: ' + problem}")
    print(f"{bad} bad entries")
    return 1 if bad else 0


def prune_entries(cache: FeatureCache, args: argparse.Namespace) -> int:
    removed = 0
    for path in cache.entries():
        info = describe(path)
        if (
            args.all
            or (args.backbone and info["backbone"] == args.backbone)
            or (not args.backbone and info["state"] == "partial")
        ):
            shutil.rmtree(path)
            path.with_name(f".{path.name}.lock").unlink(missing_ok=True)  # the entry's writers' lock goes with it
            removed += 1
    print(f"removed {removed} entries from {cache.root}")
    return 0
