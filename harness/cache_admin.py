"""`toto-eval cache ls|verify|prune`: look after the feature cache without reading its code.

`ls` lists entries (backbone, dataset, split, samples, size, state); `verify` checks every complete entry against
its checksum record (every chunk of every array, every small file; see cache_entry.py) and names what differs,
one line per entry; `verify --repair` marks the damaged rows "to do" (or removes an entry whose small files or
headers are damaged), so the next run that uses the entry recomputes exactly those; `prune` deletes incomplete
entries and entries of an older format (the default), entries of one backbone, or everything (`--all`, which
also empties the probe-grid checkpoints and robot outcomes stored beside the features), each under its
lock (never in the middle of another process creating, completing or repairing it; do not prune under a running
extraction, which would have to start that entry again).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..common.files import default_cache_dir

if TYPE_CHECKING:
    from .cache import FeatureCache


def add_parser(sub: argparse._SubParsersAction) -> None:
    cache = sub.add_parser("cache", help="list, verify or prune cached features")
    cache.add_argument("action", choices=("ls", "verify", "prune"), help="what to do with the cache entries")
    cache.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        help="the cache ($TOTO_EVAL_CACHE_DIR or ~/.cache/toto-eval)",
    )
    cache.add_argument("--backbone", help="prune: only entries of this backbone")
    cache.add_argument("--all", action="store_true", help="prune: every entry")
    cache.add_argument(
        "--repair", action="store_true", help="verify: mark damaged rows (or entries) for recomputation by the next run"
    )
    cache.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .cache import FeatureCache

    cache = FeatureCache(args.cache_dir / "features")
    return {"ls": list_entries, "verify": verify_entries, "prune": prune_entries}[args.action](cache, args)


def describe(path: Path) -> dict:
    from .cache_entry import FORMAT_VERSION

    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        meta = {}
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    source = meta.get("source", {}) if isinstance(meta.get("source"), dict) else {}
    if meta.get("format") != FORMAT_VERSION:
        state = f"old (format {meta.get('format')})"
    else:
        state = "complete" if (path / "COMPLETE").exists() else "partial"
    return {
        "key": path.name,
        "backbone": meta.get("backbone"),
        "dataset": source.get("dataset", "?"),
        "split": source.get("split", "?"),
        "n": meta.get("n"),
        "mib": size / 2**20,
        "state": state,
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


def verify_entries(cache: FeatureCache, args: argparse.Namespace) -> int:
    from ..common.files import file_lock
    from .cache_entry import Entry

    bad = 0
    for path in cache.entries():
        state = describe(path)["state"]
        if state != "complete":
            print(f"{path.name}: {state}, not checked (no checksums until an entry completes)")
            continue
        entry = Entry(path, {}, [])
        with file_lock(entry.lock_path):  # not while another process completes or repairs it
            damage = entry.verify()
            if damage and args.repair:
                entry.reset(damage)
        if not damage:
            print(f"{path.name}: ok")
            continue
        bad += 1
        more = f" (and {len(damage) - 1} more)" if len(damage) > 1 else ""
        print(f"{path.name}: BAD: {damage[0].text}{more}")
        if args.repair:
            whole = any(d.rows is None for d in damage)
            print(f"{path.name}: {'removed' if whole else 'damaged rows'} marked for recomputation by the next run")
    fix = "" if args.repair or not bad else " (`toto-eval cache verify --repair`, or the next run, recomputes them)"
    print(f"{bad} bad entries{fix}")
    return 1 if bad else 0


def prune_entries(cache: FeatureCache, args: argparse.Namespace) -> int:
    from ..common.files import file_lock
    from .cache_entry import Entry

    removed = 0
    for path in cache.entries():
        info = describe(path)
        if (
            args.all
            or (args.backbone and info["backbone"] == args.backbone)
            or (not args.backbone and info["state"] != "complete")
        ):
            lock = Entry(path, {}, []).lock_path
            with file_lock(lock):
                shutil.rmtree(path)
                lock.unlink(missing_ok=True)  # a process waiting on it notices and locks the new file
            removed += 1
    print(f"removed {removed} entries from {cache.root}")
    if args.all:  # work derived from features (probe-grid checkpoints, robot outcomes) goes with them
        from .task import STATE_KINDS

        for kind in STATE_KINDS:
            folder = cache.root.parent / kind
            if folder.is_dir():
                shutil.rmtree(folder)
                print(f"removed {folder}")
    return 0
