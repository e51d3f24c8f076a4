"""Probe-grid training time at the mini probe tasks' shapes: the current code against the previous one.

The attentive grid (6 layers x 3 learning rates, 20 epochs, the mini suite's batch sizes) is trained on random
fp16 features shaped like the cached ones of `toto_tiny` (dim 256): CATER (280 train / 120 val clips, 512
tokens), Kinetics (240 / 144 x 2 views, 512 tokens), ImageNet (1,434 / 363 images, 64 tokens). "previous" is the
same grid with the two things this bench was written for undone: BatchNorm through its strided 3-D path
(`nn.BatchNorm1d` on the transposed tokens) and fp16 widened by numpy. Same seeds, so the two runs differ only
by float rounding; the bench prints both times, the ratio and the largest difference of the test
probabilities.

    OMP_NUM_THREADS=1 python bench/bench_probe_grid.py [--tasks cater k400 imagenet] [--epochs 20]
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from toto_eval.harness import probes
from toto_eval.harness.probe_grid import CachedFeed, fit_probe_grid
from toto_eval.harness.probes import ProbeConfig

SHAPES = {  # name: (train clips, val clips, val views, tokens, classes, batch size)
    "cater": (280, 120, 1, 512, 16, 16),
    "k400": (240, 144, 2, 512, 12, 64),
    "imagenet": (1434, 363, 1, 64, 10, 64),
}
LAYERS, DIM, HEADS = 6, 256, 4


def feeds(name: str) -> tuple[CachedFeed, CachedFeed, int, int]:
    n_train, n_val, views, tokens, classes, batch = SHAPES[name]
    rng = np.random.default_rng(0)

    def feed(n: int, v: int) -> CachedFeed:
        arrays = {
            k: rng.standard_normal((n, v, tokens, DIM), dtype=np.float32).astype(np.float16) for k in range(LAYERS)
        }
        return CachedFeed(arrays, np.arange(n), rng.integers(0, classes, n), ram_bytes=2**34)

    return feed(n_train, 1), feed(n_val, views), classes, batch


@contextmanager
def previous():
    """The grid as it was: strided 3-D BatchNorm, numpy fp16 widening."""
    local, batch = probes.GlobalBatchNorm._local, CachedFeed.batch

    def old_batch(self, rows, views, device):
        out = {}
        for layer, array in self._arrays.items():
            x = array[rows] if views is None else array[rows, views]
            x = torch.from_numpy(np.asarray(x, dtype=np.float32))
            out[layer] = (x.flatten(0, 1) if views is None else x).to(device)
        return out

    probes.GlobalBatchNorm._local = lambda self, x: nn.BatchNorm1d.forward(self, x)
    CachedFeed.batch = old_batch
    try:
        yield
    finally:
        probes.GlobalBatchNorm._local, CachedFeed.batch = local, batch


def timed(train: CachedFeed, val: CachedFeed, classes: int, cfg: ProbeConfig) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    result = fit_probe_grid(train, val, classes, cfg, num_heads=HEADS, seed=0)
    return time.perf_counter() - start, result.test_probs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    total = {"previous": 0.0, "current": 0.0}
    for name in args.tasks:
        train, val, classes, batch = feeds(name)
        cfg = replace(ProbeConfig(), epochs=args.epochs, batch_size=batch)
        with previous():
            old_s, old_p = timed(train, val, classes, cfg)
        new_s, new_p = timed(train, val, classes, cfg)
        total["previous"] += old_s
        total["current"] += new_s
        diff = float(np.abs(old_p - new_p).max())
        print(f"{name:<9} previous {old_s:6.1f} s  current {new_s:6.1f} s  {old_s / new_s:4.2f}x  max |dp| {diff:.1e}")
    print(f"{'total':<9} previous {total['previous']:6.1f} s  current {total['current']:6.1f} s  "
          f"{total['previous'] / total['current']:4.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
