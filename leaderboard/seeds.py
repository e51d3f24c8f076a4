"""Rows over seeds: result files that differ only in `--seed` pooled into one entry (`leaderboard --pool-seeds`).

One run's interval resamples the val samples only; the seed also draws a probe's initialisation and holdout (and
a robot policy's), which near chance moves a score by more than that. Given one results directory per seed, each
(backbone, checkpoint, task, version, setting) measured under several seeds becomes one entry: every metric is
the mean over the seeds, and every interval whose runs carry bootstrap replicates over the same val samples is
drawn again over seeds and samples together (`intervals.pool_interval`), so the leaderboard's ≈ counts what the
seed moves. Per-layer rows are averaged where the runs probed the same layers with the same heads (the depth
figure then draws the mean curve), else left out; the selected head and every other field are the newest run's.
Failed runs are left out of the mean, with a note.
"""

from __future__ import annotations

import math
from dataclasses import replace
from statistics import fmean

from .collect import Entry
from .intervals import pool_interval


def pool_seeds(entries: list[Entry]) -> tuple[list[Entry], list[str]]:
    """One entry per key: the run itself, or the mean over its seeds; and one note per key pooled or cut short."""
    groups: dict[tuple, list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.key, []).append(e)
    out, notes = [], []
    pooled: dict[tuple, list[str]] = {}  # (backbone/checkpoint, seeds) -> tasks: one note for each
    for key, group in groups.items():
        ok = [e for e in group if e.result.ok]
        if len(group) > len(ok) and ok:
            failed = ", ".join(str(e.result.seed) for e in sorted(group, key=_seed) if not e.result.ok)
            notes.append(f"{'/'.join(k for k in key if k)}: seed(s) {failed} failed, left out of the mean")
        if len(ok) < 2:
            out.append(max(ok or group, key=lambda e: e.finished))
            continue
        out.append(pool(ok))
        pooled.setdefault((f"{key[0]}/{key[1]}", out[-1].seeds), []).append(key[2])
    for (who, seeds), tasks in pooled.items():
        listed = ", ".join(sorted(set(tasks)))
        shown = ", ".join(map(str, seeds))
        notes.append(f"{who}: the mean of seeds {shown} on {listed} (intervals over seeds and samples)")
    return out, notes


def _seed(e: Entry) -> int:
    return e.result.seed


def pool(runs: list[Entry]) -> Entry:
    """The mean of successful runs of one key, each under its own seed."""
    newest = max(runs, key=lambda e: e.finished)
    r = newest.result
    metrics = {k: _mean([e.result.metrics.get(k) for e in runs]) for k in r.metrics}
    intervals = {k: pool_interval([e.intervals.get(k) for e in runs]) for k in newest.intervals}
    result = replace(
        r,
        main_score=_mean([e.result.main_score for e in runs]),
        metrics={k: v for k, v in metrics.items() if v is not None},
        per_layer=_mean_rows([e.result.per_layer for e in runs]),
    )
    seeds = tuple(sorted(map(_seed, runs)))
    kept = {k: v for k, v in intervals.items() if v is not None}
    return replace(newest, result=result, intervals=kept, problems=(), seeds=seeds)


def _mean(values: list[object]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) != len(values) or not all(math.isfinite(v) for v in numbers):
        return None
    return fmean(numbers)


def _mean_rows(runs: list[list[dict]]) -> list[dict]:
    """Per-layer rows averaged field by field, when every run has the same rows (layer, lr, weight decay, probe)."""
    ids = ("layer", "lr", "weight_decay", "probe")
    shapes = {tuple(tuple(row.get(k) for k in ids) for row in rows) for rows in runs}
    if len(shapes) != 1 or not runs[0]:
        return []
    out = []
    for rows in zip(*runs, strict=True):
        merged = {k: rows[0][k] for k in ids if k in rows[0]}
        for key in rows[0]:
            value = _mean([row.get(key) for row in rows]) if key not in ids else None
            if value is not None:
                merged[key] = value
        out.append(merged)
    return out
