"""What happens at step s: the learning rate and the clips each rank trains on.

Both are pure functions of (config, step), so the whole state a resumed run needs is the step counter: the data
order is a seeded permutation per epoch over the shard clips, the global batch at step s is the next `B` clips
of that stream, and rank r of W takes the r-th contiguous slice of it. One process with the same global batch
sees exactly the same clips as W ranks, which is what makes DDP and single-process runs comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..common.errors import ConfigError
from ..common.schedule import warmup_cosine


def lr_at(step: int, lr: float, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to `lr * min_ratio` at step `total`."""
    return lr * warmup_cosine(step, total, warmup, min_ratio)


@dataclass(frozen=True)
class BatchPlan:
    """How a global batch of `batch_tokens` tokens splits into sequences, ranks and micro-batches."""

    seq_len: int  # tokens per sequence
    sequences: int  # sequences per global batch
    world: int
    micro_batch: int  # sequences per forward pass on one rank
    accum: int  # micro-batches per rank per step

    @classmethod
    def make(cls, batch_tokens: int, seq_len: int, world: int, micro_batch: int) -> BatchPlan:
        sequences = batch_tokens // seq_len
        per_step = world * micro_batch
        if sequences < per_step or sequences % per_step:
            raise ConfigError(
                f"batch_tokens={batch_tokens} holds {sequences} sequences of {seq_len} tokens, which is not a "
                f"positive multiple of world size {world} x micro_batch {micro_batch}"
            )
        return cls(seq_len, sequences, world, micro_batch, sequences // per_step)

    @property
    def tokens(self) -> int:
        return self.sequences * self.seq_len


class DataOrder:
    """Clip index of the g-th sequence of the run: epoch g // N, position g % N of that epoch's permutation."""

    def __init__(self, num_clips: int, seed: int):
        self.num_clips, self.seed = num_clips, seed
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def clip(self, g: int) -> int:
        epoch, pos = divmod(g, self.num_clips)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.num_clips)
        return int(self._perm[pos])

    def micro_batch(self, plan: BatchPlan, step: int, rank: int, micro: int) -> list[int]:
        """Clips of micro-batch `micro` of rank `rank` at `step`."""
        first = step * plan.sequences + (rank * plan.accum + micro) * plan.micro_batch
        return [self.clip(g) for g in range(first, first + plan.micro_batch)]

    def state(self, plan: BatchPlan, step: int) -> dict:
        """The loader position after `step` steps (stored in checkpoints; derivable, kept for inspection)."""
        g = step * plan.sequences
        return {"step": step, "sequences_seen": g, "epoch": g // self.num_clips, "position": g % self.num_clips}


# Dense bf16 peak FLOP/s of common accelerators, for MFU when --peak-tflops is not given.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "V100": 125.0}


def peak_flops(device_name: str, override_tflops: float) -> float:
    """Peak FLOP/s of one device: the override if given, else a lookup by name, else 0 (MFU not reported)."""
    if override_tflops > 0:
        return override_tflops * 1e12
    for key, tflops in PEAK_TFLOPS.items():
        if key in device_name:
            return tflops * 1e12
    return 0.0


def format_seconds(seconds: float) -> str:
    """A duration for progress lines (ETAs): 4000.2 -> '1:06:40'."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def eta(elapsed: float, done: int, remaining: int) -> str:
    """Time left at the mean pace so far: `done` units took `elapsed` seconds, `remaining` to go."""
    return format_seconds(elapsed / max(done, 1) * remaining)
