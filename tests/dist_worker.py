"""Worker script for the distributed tests: run under `torchrun` (or alone, as rank 0 of 1) by tests/test_dist.py.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/dist_worker.py extract OUT [DELAY]
    ... tests/dist_worker.py batchnorm OUT
    ... tests/dist_worker.py probe OUT MODE CACHE

`extract` fills one cache entry from a deterministic synthetic source with toto_test; DELAY (seconds per sample)
slows it down so a test can kill a rank half way. Each rank writes its pid to OUT/pid.<rank>. `batchnorm` runs
`GlobalBatchNorm` on each rank's half of a fixed batch and saves outputs, input gradients and running statistics.
`probe` runs the mini `k400_probe` (small settings) with probe mode MODE and the mini data under CACHE.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import ClassVar

import torch

import toto_eval.harness.cache as cache_module
from toto_eval.harness import dist as distributed
from toto_eval.harness.cache import FeatureCache
from toto_eval.harness.evaluate import create_backbone

N = 22  # not a multiple of the block size or the world size: uneven shares


class SlowSource:
    """N seeded random 2-frame clips in [0, 255]; sample 5 is unreadable."""

    ids: ClassVar[list[str]] = [f"s{i:02d}" for i in range(N)]
    views = 1

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __len__(self) -> int:
        return N

    def identity(self) -> dict:
        return {"dataset": "dist-test", "n": N}

    def load(self, i: int) -> torch.Tensor:
        from toto_eval.common.errors import data_error

        time.sleep(self.delay)
        if i == 5:
            raise data_error(f"clip{i}.mp4", "corrupt")
        g = torch.Generator().manual_seed(i)
        return (torch.rand(1, 2, 3, 64, 64, generator=g) * 255).round().to(torch.uint8)


def extract(out: Path, delay: float) -> None:
    torch.set_num_threads(1)
    cache_module.FLUSH_SECONDS = 0  # mark rows filled after every batch, so a kill leaves partial progress
    d = distributed.init("cpu")
    (out / f"pid.{d.rank}").write_text(str(os.getpid()))
    cache = FeatureCache(out / "cache", dist=d)
    feats = cache.extract(create_backbone("toto_test"), SlowSource(delay), layers=[0, 3], token_layers=[1],
                          batch_size=4)  # fmt: skip
    if d.main:
        (out / "done").write_text(f"{feats.stats['computed']}\n")


def batchnorm(out: Path) -> None:
    import numpy as np

    from toto_eval.harness.probes import GlobalBatchNorm

    d = distributed.init("cpu")
    x = torch.randn(10, 6, 5, generator=torch.Generator().manual_seed(0)) * 3 + 1  # (B, C, L), B split 5 + 5
    mine = x.chunk(d.world)[d.rank].clone().requires_grad_(True)
    norm = GlobalBatchNorm(6).train()
    y = norm(mine)
    (y * torch.arange(y.numel()).view_as(y)).sum().backward()  # a loss that weights every output differently
    np.savez(out / f"bn.{d.rank}.npz", y=y.detach().numpy(), grad=mine.grad.numpy(),
             mean=norm.running_mean.numpy(), var=norm.running_var.numpy())  # fmt: skip


def probe(out: Path, mode: str, cache: Path) -> None:
    from toto_eval.harness.evaluate import RunOptions, evaluate

    torch.set_num_threads(1)
    options = RunOptions(
        cache_dir=cache, results_dir=out / "results", layers=[1, 3], probe_mode=mode, seed=0,
        task_config={"k400_probe": {"probe.epochs": "2", "probe.batch_size": "25", "probe.lrs": "[1e-3,1e-2]"}},
    )  # fmt: skip
    (result,) = evaluate(create_backbone("toto_test"), "k400_probe", options)
    assert result.ok, result.error


if __name__ == "__main__":
    command, target = sys.argv[1], Path(sys.argv[2])
    target.mkdir(parents=True, exist_ok=True)
    commands = {
        "extract": lambda: extract(target, float(sys.argv[3]) if len(sys.argv) > 3 else 0.0),
        "batchnorm": lambda: batchnorm(target),
        "probe": lambda: probe(target, sys.argv[3], Path(sys.argv[4])),
    }
    commands[command]()
