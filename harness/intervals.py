"""95% confidence intervals for every main metric: a bootstrap over test samples, or Wilson for success rates.

A mini-suite number without its interval cannot be compared with another: 48 test clips put +-14 points on a
top-1. Intervals come from the evaluated samples themselves: a percentile bootstrap (the statistic recomputed on
`resamples` resamples of the test samples, drawn with a fixed seed, so the interval is deterministic) for
accuracies, distances, J&F and mAP; the Wilson score interval for a success rate over episodes, which stays
inside [0, 1] and behaves at 0/n and n/n where the normal approximation does not.

Each interval is stored in the result as `{"low", "high", "level", "method", "n"}` in the metric's own units.
Bootstrap intervals also keep their `replicates`: the statistic on every resample, as base64 of little-endian
float32 (one line, not a thousand: 5 KB per metric). The resamples depend only on (seed, n), so two results over
the same test samples in the same order (`samples`, a digest of their ids, where the task knows them) were
resampled identically, and the difference of their replicates is the paired bootstrap of the difference between
the two models: far narrower than the two marginal intervals, since both were scored on the same hard and easy
samples (`leaderboard/intervals.py` compares rows that way). A success rate gets them from a bootstrap over its
episodes, beside its Wilson interval.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Callable, Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 1000
SEED = 0  # intervals do not move with --seed: the same samples give the same interval


def record(
    low: float,
    high: float,
    method: str,
    n: int,
    resamples: int | None = None,
    replicates: np.ndarray | None = None,
    ids: Sequence[str] | None = None,
) -> dict:
    out = {"low": float(low), "high": float(high), "level": LEVEL, "method": method, "n": int(n)}
    if resamples is not None:
        out["resamples"] = resamples
    if replicates is not None:
        out["replicates"] = encode_replicates(replicates)
    if ids is not None:
        out["samples"] = samples_digest(ids)
    return out


def encode_replicates(values: np.ndarray) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")


def decode_replicates(text: str) -> np.ndarray:
    """The float64 replicates of an encoded record; ValueError when `text` is not what encode_replicates wrote."""
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) % 4:
        raise ValueError("replicates are not float32")
    return np.frombuffer(raw, dtype="<f4").astype(np.float64)


def samples_digest(ids: Sequence[str]) -> str:
    """What two results must share to be compared sample by sample: their test samples' ids, in order."""
    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()[:16]


def resample_means(values: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """The mean of `values` on each resample, drawn in chunks (ImageNet's 50,000 val images would otherwise
    hold a 400 MB index array); the draws are the same stream as one (resamples, n) draw, or as `bootstrap`'s."""
    n, rng, out = len(values), np.random.default_rng(seed), []
    for start in range(0, resamples, 64):
        out.append(values[rng.integers(0, n, size=(min(64, resamples - start), n))].mean(1))
    return np.concatenate(out)


def bootstrap_mean(
    values: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED, ids: Sequence[str] | None = None
) -> dict:
    """Percentile bootstrap of the mean of per-sample values (hits for an accuracy, distances for L1)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return record(math.nan, math.nan, "bootstrap", 0, resamples)
    means = resample_means(values, resamples, seed)
    low, high = np.percentile(means, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return record(low, high, "bootstrap", n, resamples, means, ids)


def bootstrap(
    n: int,
    statistic: Callable[[np.ndarray], float],
    resamples: int = RESAMPLES,
    seed: int = SEED,
    ids: Sequence[str] | None = None,
) -> dict:
    """Percentile bootstrap of any statistic of the samples: `statistic(indices)` on each resample of range(n)."""
    if n == 0 or resamples == 0:
        return record(math.nan, math.nan, "bootstrap", n, resamples)
    rng = np.random.default_rng(seed)
    stats = np.array([statistic(rng.integers(0, n, size=n)) for _ in range(resamples)], dtype=np.float64)
    low, high = np.nanpercentile(stats, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return record(low, high, "bootstrap", n, resamples, stats, ids)


def success_interval(outcomes: Sequence[bool], ids: Sequence[str] | None = None) -> dict:
    """Wilson interval of a success rate over episodes, with bootstrap replicates for paired comparisons."""
    hits = np.asarray(outcomes, dtype=np.float64)
    out = wilson(int(hits.sum()), len(hits))
    if len(hits):
        out["resamples"] = RESAMPLES
        out["replicates"] = encode_replicates(resample_means(hits))
    if ids is not None:
        out["samples"] = samples_digest(ids)
    return out


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
