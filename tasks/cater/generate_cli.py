"""`toto-eval cater-generate`: write a CATER-style dataset (official task-3 layout) with the built-in generator.

    toto-eval cater-generate --out data/cater/all_actions --videos 5500
    toto-eval cater-generate --out data/cater/all_actions_cameramotion --camera-motion

The defaults are CATER's (320x240, 301 frames, shadows, 5500 videos split 70/30); `--data-root data` then runs
the `cater` task on it. Generation is deterministic in `--seed`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from toto_eval.common.errors import ConfigError

from .generator import SceneConfig
from .mini import DatasetConfig, write_dataset


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("cater-generate", help="write a CATER-style dataset (videos, scenes, lists)")
    defaults = DatasetConfig()
    p.add_argument("--out", type=Path, required=True, help="the variant folder to create (e.g. .../all_actions)")
    p.add_argument("--videos", type=int, default=defaults.videos, help="videos to render (split 70/30 train/val)")
    p.add_argument("--width", type=int, default=defaults.width, help="frame width in pixels (even)")
    p.add_argument("--height", type=int, default=defaults.height, help="frame height in pixels (even)")
    p.add_argument("--frames", type=int, default=defaults.video_frames, help="frames rendered per video (<= 301)")
    p.add_argument("--no-shadows", action="store_true", help="half the rendering cost")
    p.add_argument("--camera-motion", action="store_true", help="the _cameramotion variant")
    p.add_argument("--max-motions", type=int, default=999, help="2 gives CATER's max2action variant")
    p.add_argument("--seed", type=int, default=0, help="scenes and motions are a pure function of it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.out.exists() and any(args.out.iterdir()):
        raise ConfigError(f"{args.out}: folder exists and is not empty; choose a new --out")
    if args.width % 2 or args.height % 2 or args.videos < 2:
        raise ConfigError("--width and --height must be even (H.264) and --videos at least 2")
    scene = SceneConfig(camera_motion=args.camera_motion, max_motions=args.max_motions)
    cfg = dataclasses.replace(
        DatasetConfig(),
        videos=args.videos,
        width=args.width,
        height=args.height,
        video_frames=args.frames,
        shadows=not args.no_shadows,
        seed=args.seed,
        scene=scene,
    )
    stats = write_dataset(args.out, cfg)
    print(f"wrote {stats['videos']} videos to {args.out} in {stats['seconds']:.0f} s")
    return 0
