"""95% confidence intervals for every main metric: a bootstrap over test samples, or Wilson for success rates.

A mini-suite number without its interval cannot be compared with another: 48 test clips put +-14 points on a
top-1. Intervals come from the evaluated samples themselves: a percentile bootstrap (the statistic recomputed on
`resamples` resamples of the test samples, drawn with a fixed seed, so the interval is deterministic) for
accuracies, distances, J&F and mAP; the Wilson score interval for a success rate over episodes, which stays
inside [0, 1] and behaves at 0/n and n/n where the normal approximation does not.

Each interval is stored in the result as `{"low", "high", "level", "method", "n"}` in the metric's own units.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

LEVEL = 0.95
RESAMPLES = 1000
SEED = 0  # intervals do not move with --seed: the same samples give the same interval


def record(low: float, high: float, method: str, n: int, resamples: int | None = None) -> dict:
    out = {"low": float(low), "high": float(high), "level": LEVEL, "method": method, "n": int(n)}
    if resamples is not None:
        out["resamples"] = resamples
    return out


def bootstrap_mean(values: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """Percentile bootstrap of the mean of per-sample values (hits for an accuracy, distances for L1)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return record(math.nan, math.nan, "bootstrap", 0, resamples)
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    means = values[idx].mean(1)
    low, high = np.percentile(means, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return record(low, high, "bootstrap", n, resamples)


def bootstrap(n: int, statistic: Callable[[np.ndarray], float], resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """Percentile bootstrap of any statistic of the samples: `statistic(indices)` on each resample of range(n)."""
    if n == 0 or resamples == 0:
        return record(math.nan, math.nan, "bootstrap", n, resamples)
    rng = np.random.default_rng(seed)
    stats = np.array([statistic(rng.integers(0, n, size=n)) for _ in range(resamples)], dtype=np.float64)
    low, high = np.nanpercentile(stats, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return record(low, high, "bootstrap", n, resamples)


def wilson(successes: int, n: int, level: float = LEVEL) -> dict:
    """The Wilson score interval of a binomial proportion."""
    if n == 0:
        return record(math.nan, math.nan, "wilson", 0)
    z = {0.95: 1.959963984540054}.get(level) or _z(level)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return record(max(0.0, centre - half), min(1.0, centre + half), "wilson", n)


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf((1 + level) / 2))


def hits_interval(hits: np.ndarray) -> list[float]:
    """[low, high] of an accuracy from per-sample hits (the compact form per-layer rows carry)."""
    rec = bootstrap_mean(hits)
    return [rec["low"], rec["high"]]
