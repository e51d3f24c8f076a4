"""95% confidence intervals as the leaderboard reads, shows and compares them.

Result files carry `intervals: {metric key: {"low", "high", "level", "method", "n"}}` in the metric's stored units,
and per-layer rows may carry `"<score key>_ci": [low, high]`. Older files have neither: every function here then
returns None and the tables look as before. A malformed interval is dropped with a note naming the file, never
guessed at.

Shown as `value ± half-width` when the interval is symmetric about the value at the precision shown, else as
`value [low, high]`: Wilson intervals near 0 or 1 and percentile-bootstrap intervals are often lopsided, and a
± would then misstate one side.

Two rows are compared, where they can be, on their paired difference: results that carry bootstrap `replicates`
over the same test samples (same `samples` digest, same count; see `harness/intervals.py`) were resampled
identically, so the percentiles of their replicates' differences are a 95% interval of the difference itself.
It is much narrower than the two marginal intervals, because both models meet the same hard and easy samples;
the two rows differ when it excludes 0. Rows without replicates (older files, other test sets) fall back to the
conservative reading: they "differ within the intervals" when their intervals overlap (overlap does not prove the
two are equal; non-overlap does show a difference at about this level).
"""

from __future__ import annotations

import binascii
import math
from dataclasses import dataclass, field

import numpy as np

from ..harness.intervals import decode_replicates

POOLED = "bootstrap over seeds and samples"  # the method of a pooled interval, whatever the runs' was


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float = 0.95
    method: str = ""
    n: int | None = None
    replicates: np.ndarray | None = field(default=None, compare=False, repr=False)  # the bootstrap's, if stored
    samples: str | None = None  # digest of the test samples' ids, in order

    def scaled(self, factor: float) -> Interval:
        reps = None if self.replicates is None else self.replicates * factor
        return Interval(self.low * factor, self.high * factor, self.level, self.method, self.n, reps, self.samples)


def paired_difference(a: Interval, b: Interval) -> tuple[float, float] | None:
    """The 95% interval of (a's metric - b's) from replicates on the same resamples; None when they do not pair."""
    if a.replicates is None or b.replicates is None or a.samples is None or a.samples != b.samples:
        return None
    if a.n != b.n or len(a.replicates) != len(b.replicates) or a.level != b.level:
        return None
    diff = a.replicates - b.replicates
    if np.isnan(diff).all():
        return None
    low, high = np.nanpercentile(diff, [100 * (1 - a.level) / 2, 100 * (1 + a.level) / 2])
    return float(low), float(high)


def pool_replicates(replicates: np.ndarray, seed: int = 0) -> np.ndarray:
    """Replicates of the mean over runs, from each run's replicates (runs, resamples): a two-level bootstrap.

    Replicate r averages, over runs drawn with replacement, each drawn run's replicate r (the same test resample
    in every run, so the samples stay paired). The draws depend only on the shape and `seed`, so two models pooled
    over the same number of runs are drawn alike and their pooled replicates still pair.
    """
    runs, reps = replicates.shape
    picks = np.random.default_rng(seed).integers(0, runs, size=(reps, runs))
    return np.nanmean(replicates[picks, np.arange(reps)[:, None]], axis=1)


def pool_interval(runs: list[Interval | None]) -> Interval | None:
    """The interval of the mean over runs that differ only in their seed, counting the seed's spread as well as the
    val samples'. With few runs it is still a little narrow: resampling S runs understates their spread by a
    factor (S - 1) / S in variance. None unless every run has replicates over the same samples."""
    first = runs[0] if runs else None
    if first is None or first.replicates is None or first.samples is None:
        return None
    same = (first.samples, first.n, first.level, len(first.replicates))
    if any(r is None or r.replicates is None or (r.samples, r.n, r.level, len(r.replicates)) != same for r in runs):
        return None
    reps = pool_replicates(np.stack([run.replicates for run in runs]))
    if np.isnan(reps).all():
        return None
    low, high = np.nanpercentile(reps, [100 * (1 - first.level) / 2, 100 * (1 + first.level) / 2])
    return Interval(float(low), float(high), first.level, POOLED, first.n, reps, first.samples)


def pooled_difference(pairs: list[tuple[Interval, Interval]]) -> tuple[float, float] | None:
    """The 95% interval of the mean of (a - b) over runs that differ only in their seed (one pair per run).

    A run's paired interval resamples the test samples only; the probe's initialisation and holdout, which the
    seed draws, move a score near chance by more than that. Both sides are pooled over seeds and samples
    (`pool_interval`, drawn alike) and then paired. None when any pair does not pair.
    """
    if not pairs or any(paired_difference(a, b) is None for a, b in pairs):
        return None
    a, b = pool_interval([a for a, _ in pairs]), pool_interval([b for _, b in pairs])
    return None if a is None or b is None else paired_difference(a, b)


def parse_intervals(raw: object) -> tuple[dict[str, Interval], list[str]]:
    """The valid intervals of a result's `intervals` field, and one problem line per entry that is not."""
    if raw is None:
        return {}, []
    if not isinstance(raw, dict):
        return {}, [f"intervals is a {type(raw).__name__}, not a mapping"]
    good, problems = {}, []
    for key, item in raw.items():
        parsed = _interval(item)
        if isinstance(parsed, Interval):
            good[str(key)] = parsed
        else:
            problems.append(f"interval {key!r}: {parsed}")
    return good, problems


def _interval(item: object) -> Interval | str:
    if not isinstance(item, dict):
        return "not a mapping"
    low, high, level = item.get("low"), item.get("high"), item.get("level", 0.95)
    if not (_number(low) and _number(high) and _number(level)):
        return "low, high and level must be numbers"
    if low > high:
        return f"low {low} > high {high}"
    n = item.get("n")
    replicates, samples = item.get("replicates"), item.get("samples")
    if replicates is not None:
        try:
            replicates = decode_replicates(replicates) if isinstance(replicates, str) else None
        except (ValueError, binascii.Error):
            replicates = None
        if replicates is None:
            return "replicates are not base64 float32"
    samples = samples if isinstance(samples, str) else None
    method = str(item.get("method", ""))
    return Interval(float(low), float(high), float(level), method, n if _count(n) else None, replicates, samples)


def layer_interval(row: dict, key: str) -> tuple[float, float] | None:
    """A per-layer row's `<key>_ci` pair, or None when it is missing or malformed."""
    pair = row.get(f"{key}_ci")
    if not isinstance(pair, list | tuple) or len(pair) != 2 or not all(_number(v) for v in pair):
        return None
    low, high = float(pair[0]), float(pair[1])
    return (low, high) if low <= high else None


def symmetric(value: float, low: float, high: float, decimals: int) -> bool:
    """True when value ± half-width gives back [low, high] to within the last digit shown."""
    if not low <= value <= high:
        return False
    tolerance = 0.5 * 10.0**-decimals
    return abs((value - low) - (high - value)) <= tolerance + 1e-12


def text(value: float, low: float, high: float, decimals: int, pm: str = "±") -> str:
    """`71.1 ± 0.4`, or `3.3 [0.9, 11.4]` where the interval is lopsided about the value."""
    if symmetric(value, low, high, decimals):
        return f"{value:.{decimals}f} {pm} {(high - low) / 2:.{decimals}f}"
    return f"{value:.{decimals}f} [{low:.{decimals}f}, {high:.{decimals}f}]"


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
