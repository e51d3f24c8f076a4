"""The one learning-rate schedule: linear warm-up, then cosine decay to a floor.

Probe grids, the Ego4D heads, behaviour cloning and pre-training all train with it, so it is written once and a
run's learning rate at any step is a pure function of that step (which is what exact resume relies on).
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float = 0.0) -> float:
    """The factor on the peak learning rate at `step` (0-based) of `total`.

    Linear warm-up over the first `warmup` steps (step 0 already gets 1 / warmup), then a cosine from 1 down to
    `min_ratio` at step `total`; steps past `total` stay at `min_ratio`.
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
