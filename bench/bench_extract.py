"""Benchmark: feature extraction through the cache — every layer against one layer, FLOP/s against matmul peak.

One backbone pass yields every requested layer, so extracting all layers should cost about the same as the
deepest one alone, and much more than the first alone (computation stops after the deepest requested block).
Each case runs into a fresh cache directory; FLOP/s counts the Toto trunk up to the deepest block.

Run: python bench/bench_extract.py                    # toto_test images, CPU
     python bench/bench_extract.py --backbone toto_base --random-init --n 64 --frames 1
     python bench/bench_extract.py --backbone toto_large --random-init --device cuda --n 256 --frames 16
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from toto_eval.harness.cache import FeatureCache
from toto_eval.harness.evaluate import create_backbone

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import matmul_peak


class Synthetic:
    """n seeded random clips at the backbone's resolution."""

    def __init__(self, n: int, frames: int, resolution: int) -> None:
        self.ids = [f"s{i}" for i in range(n)]
        self.frames, self.resolution = frames, resolution

    def __len__(self) -> int:
        return len(self.ids)

    def identity(self) -> dict:
        return {"dataset": "synthetic", "n": len(self.ids), "frames": self.frames}

    def load(self, i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(i)
        return torch.randn(1, self.frames, 3, self.resolution, self.resolution, generator=g)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="toto_test")
    parser.add_argument("--random-init", action="store_true")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    backbone = create_backbone(args.backbone, random_init=args.random_init)
    source = Synthetic(args.n, args.frames, backbone.preprocess.resolution)
    t, h, w = backbone.token_grid(args.frames, backbone.preprocess.resolution, backbone.preprocess.resolution)
    seq = t * h * w + 2
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_peak(device, dtype, 2048 if device.type == "cuda" else 1024, 5)
    n = backbone.num_layers
    cases = {"all layers": list(range(n)), "last layer": [n - 1], "first layer": [0]}
    print(f"{backbone.name}: {n} layers, {seq} tokens per clip, {args.n} clips; matmul peak {peak:.1f} GFLOP/s")
    print(f"{'case':12s} {'seconds':>8s} {'clips/s':>8s} {'GFLOP/s':>8s} {'% peak':>7s}")
    for label, layers in cases.items():
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            FeatureCache(tmp).extract(
                backbone, source, layers=layers, device=device, batch_size=args.batch_size, progress=False
            )
            seconds = time.perf_counter() - start
        depth = max(layers) + 1
        per_block = sum(p.numel() for p in backbone.model.layers[0].parameters() if p.ndim == 2)
        flops = args.n * seq * depth * (2.0 * per_block + 2.0 * seq * backbone.embed_dim)
        gflops = flops / seconds / 1e9
        print(f"{label:12s} {seconds:8.2f} {args.n / seconds:8.1f} {gflops:8.1f} {100 * gflops / peak:6.1f}%")


if __name__ == "__main__":
    main()
