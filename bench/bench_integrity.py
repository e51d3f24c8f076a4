"""What the cache's integrity checks cost: SHA-256 throughput per entry, and a warm run with and without them.

A warm run (every feature already cached) opens each entry it reads and verifies its checksums once per process
(`Entry.check`: every chunk up to 8 GiB, a random sample beyond). This script measures

1. `verify` over every complete entry of a cache folder: bytes, seconds, GB/s;
2. the same warm `evaluate` call, alternately with the check and with `Entry.check` replaced by "ok", `--repeats`
   times each, interleaved, so that the ratio is measured under the same load.

Run (on a cache a finished run has filled):

    python bench/bench_integrity.py --cache-dir /work/range/cache --backbone toto_tiny --random-init \
        --tasks imagenet_probe,k400_probe --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from unittest import mock

from toto_eval.common.log import setup_logging
from toto_eval.harness.cache import FeatureCache
from toto_eval.harness.cache_entry import Entry
from toto_eval.harness.evaluate import RunOptions, create_backbone, evaluate


def verify_all(cache_dir: Path) -> None:
    total_bytes, total_s = 0, 0.0
    print("| entry | MiB | verify s | GB/s |\n|---|---|---|---|")
    for path in FeatureCache(cache_dir / "features").entries():
        entry = Entry(path, {}, [])
        if not entry.complete:
            continue
        size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
        t0 = time.perf_counter()
        damage = entry.verify(None)
        seconds = time.perf_counter() - t0
        assert not damage, damage[0].text
        total_bytes, total_s = total_bytes + size, total_s + seconds
        print(f"| {path.name[:16]} | {size / 2**20:.1f} | {seconds:.3f} | {size / max(seconds, 1e-9) / 1e9:.2f} |")
    print(f"| all | {total_bytes / 2**20:.1f} | {total_s:.3f} | {total_bytes / max(total_s, 1e-9) / 1e9:.2f} |")


def warm_run(args: argparse.Namespace, checked: bool) -> float:
    options = RunOptions(cache_dir=args.cache_dir)
    backbone = create_backbone(args.backbone, random_init=args.random_init)
    t0 = time.perf_counter()
    if checked:
        results = evaluate(backbone, args.tasks, options)
    else:
        with mock.patch.object(Entry, "check", lambda self, budget=None: "ok"):
            results = evaluate(backbone, args.tasks, options)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--backbone", default="toto_tiny")
    parser.add_argument("--random-init", action="store_true")
    parser.add_argument("--tasks", default="imagenet_probe,k400_probe")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    setup_logging(-1, bars=False)
    verify_all(args.cache_dir)
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.repeats):
        for checked in (True, False):
            times[checked].append(warm_run(args, checked))
    with_check, without = statistics.median(times[True]), statistics.median(times[False])
    added = f"{with_check - without:+.1f} s ({with_check / without - 1:+.1%})"
    print(f"\nwarm run ({args.tasks}), median of {args.repeats}: checked {with_check:.1f} s, "
          f"unchecked {without:.1f} s, "
          f"the checks add {added}")  # fmt: skip


if __name__ == "__main__":
    main()
