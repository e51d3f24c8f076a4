"""Time every mini-suite generator and count what it writes (samples and frames per split).

    python bench/mini_generate.py [--out /tmp/minisuite-gen] [--tasks imagenet_probe,k400_probe,...]

Wall and CPU seconds per generator (CPU seconds are the robust number on a shared machine), the number of
samples per split and the number of frames (images count one). Not a test: quote the numbers with `uptime`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def _count_imagenet(root: Path) -> dict:
    return {s: {"samples": len(list((root / s).glob("*/*.JPEG")))} for s in ("train", "val")}


def _count_k400(root: Path) -> dict:
    from toto_eval.harness.video import metadata

    out = {}
    for split in ("train", "val"):
        videos = sorted((root / split).glob("*.mp4"))
        out[split] = {"samples": len(videos), "frames": sum(metadata(v).num_frames for v in videos)}
    return out


def _count_cater(root: Path) -> dict:
    from toto_eval.harness.video import metadata

    out = {}
    for split in ("train", "val"):
        names = [line.split()[0] for line in (root / "lists/localize" / f"{split}.txt").read_text().splitlines()]
        out[split] = {"samples": len(names), "frames": sum(metadata(root / "videos" / n).num_frames for n in names)}
    return out


def _count_davis(root: Path) -> dict:
    out = {}
    for split in ("train", "val"):
        names = (root / "ImageSets/2017" / f"{split}.txt").read_text().split()
        frames = sum(len(list((root / "JPEGImages/480p" / n).glob("*.jpg"))) for n in names)
        out[split] = {"samples": len(names), "frames": frames}
    return out


def _count_ego4d(root: Path) -> dict:
    out = {}
    for split in ("train", "val"):
        data = json.loads((root / "annotations" / f"fho_sta_{split}.json").read_text())
        out[split] = {"samples": len(data["annotations"]), "videos": len(data["info"]["video_metadata"])}
    return out


def generators() -> dict:
    from toto_eval.tasks.cater.mini import make_mini as cater
    from toto_eval.tasks.davis.mini import make_mini as davis
    from toto_eval.tasks.ego4d_sta.mini import make_mini as ego4d
    from toto_eval.tasks.imagenet_probe.mini import make_mini as imagenet
    from toto_eval.tasks.k400.mini import make_mini as k400

    return {
        "imagenet_probe": (imagenet, _count_imagenet),
        "k400_probe": (k400, _count_k400),
        "cater": (cater, _count_cater),
        "davis": (davis, _count_davis),
        "ego4d_sta": (ego4d, _count_ego4d),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/minisuite-gen/data"))
    parser.add_argument("--tasks", default="imagenet_probe,k400_probe,cater,davis,ego4d_sta")
    args = parser.parse_args()
    table = generators()
    for task in args.tasks.split(","):
        make, count = table[task]
        root = args.out / task
        if root.exists():
            shutil.rmtree(root)
        t0, c0 = time.perf_counter(), time.process_time()
        make(root)
        row = {"task": task, "wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(time.process_time() - c0, 1)}
        print(json.dumps(row | count(root)), flush=True)


if __name__ == "__main__":
    main()
