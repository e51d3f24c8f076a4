"""Benchmark the CATER-style generator: simulation alone, then simulation + rendering + mp4 (videos per minute).

    python bench/bench_cater_gen.py [--videos 40] [--width 64 --height 64 --frames 48] [--shadows]

Numbers depend on machine load; say how loaded the machine was when quoting them.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from toto_eval.tasks.cater.generator import generate_scene
from toto_eval.tasks.cater.mini import MINI, write_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--width", type=int, default=MINI.width)
    parser.add_argument("--height", type=int, default=MINI.height)
    parser.add_argument("--frames", type=int, default=MINI.video_frames)
    parser.add_argument("--shadows", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    for seed in range(args.videos):
        generate_scene(seed)
    sim = (time.perf_counter() - start) / args.videos
    print(f"simulation only: {sim * 1000:.0f} ms/scene ({60 / sim:.0f} scenes/minute)")
    cfg = dataclasses.replace(
        MINI, videos=args.videos, width=args.width, height=args.height, video_frames=args.frames, shadows=args.shadows
    )
    with tempfile.TemporaryDirectory() as tmp:
        stats = write_dataset(Path(tmp), cfg)
    print(
        f"{args.width}x{args.height}, {args.frames} frames, shadows={args.shadows}: "
        f"{stats['videos_per_minute']:.0f} videos/minute ({stats['seconds']:.1f} s for {args.videos})"
    )


if __name__ == "__main__":
    main()
