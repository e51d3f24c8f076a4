"""Compute scaling fits: L(C) = a * C^b on the compute-optimal frontier of several runs (the paper's Fig. 9).

Each run contributes its logged (C, loss) points, C being the training FLOPs so far (`flops` in metrics.csv,
which the trainer writes as 3 x forward FLOPs per token x tokens seen; any CSV with `flops` or `compute` and
`loss` columns works). The frontier is the lower envelope over all runs: at log-spaced compute values each run
is interpolated and the lowest loss is kept, and a point survives only if its loss is below every point of
smaller compute (the best loss reachable with at most that compute). A line through the frontier in log-log space gives
log L = log a + b log C. The paper's fit is L(C) = 7.32 * C^-0.0378.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.errors import DataError, data_error


@dataclass(frozen=True)
class ScalingFit:
    a: float
    b: float
    frontier: np.ndarray  # (K, 2): compute, loss of the frontier points the line was fitted to

    def predict(self, compute: np.ndarray | float) -> np.ndarray:
        return self.a * np.asarray(compute, dtype=np.float64) ** self.b


def read_run(path: str | Path) -> np.ndarray:
    """(N, 2) array of (compute, loss) from a run directory (its metrics.csv) or a CSV file."""
    path = Path(path)
    file = path / "metrics.csv" if path.is_dir() else path
    try:
        with open(file, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise data_error(file, "run metrics not found") from None
    if not rows:
        raise data_error(file, "no rows")
    key = "flops" if "flops" in rows[0] else "compute"
    if key not in rows[0] or "loss" not in rows[0]:
        raise data_error(file, "needs a 'flops' (or 'compute') column and a 'loss' column")
    try:
        points = np.array([(float(r[key]), float(r["loss"])) for r in rows], dtype=np.float64)
    except ValueError as err:
        raise data_error(file, f"non-numeric value ({err})") from None
    return points[(points[:, 0] > 0) & (points[:, 1] > 0)]


def frontier(runs: list[np.ndarray], bins_per_decade: int = 10) -> np.ndarray:
    """The compute-optimal lower envelope of several runs' (compute, loss) curves, as (K, 2) points.

    Compute is sampled on a log grid (bin centres); at each grid value every run that spans it is interpolated
    (linearly in log-log), the lowest loss is kept, and a point survives only if it is below every point of
    smaller compute.
    """
    curves = [r[np.argsort(r[:, 0])] for r in runs if len(r)]
    logs = [np.log10(c) for c in curves]
    lo, hi = min(c[0, 0] for c in logs), max(c[-1, 0] for c in logs)
    centres = (np.arange(np.floor(lo * bins_per_decade), np.ceil(hi * bins_per_decade)) + 0.5) / bins_per_decade
    kept, lowest = [], np.inf
    for x in centres:
        values = [np.interp(x, c[:, 0], c[:, 1]) for c in logs if c[0, 0] <= x <= c[-1, 0]]
        if values and min(values) < lowest:
            lowest = min(values)
            kept.append((10**x, 10**lowest))
    return np.array(kept, dtype=np.float64).reshape(-1, 2)


def fit_power_law(runs: list[np.ndarray], bins_per_decade: int = 10) -> ScalingFit:
    """Least-squares line through the frontier in log-log space -> L(C) = a * C^b."""
    front = frontier(runs, bins_per_decade)
    if len(front) < 2:
        raise DataError(f"scaling fit: only {len(front)} frontier point(s); need runs that span more compute")
    b, log_a = np.polyfit(np.log(front[:, 0]), np.log(front[:, 1]), 1)
    return ScalingFit(float(np.exp(log_a)), float(b), front)


def plot(runs: dict[str, np.ndarray], fit: ScalingFit, out: str | Path) -> None:
    """Every run's curve, the frontier points and the fitted line, log-log (Fig. 9 style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    draw(ax, runs, fit)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def draw(ax, runs: dict[str, np.ndarray], fit: ScalingFit) -> None:
    """Onto a matplotlib axis: every run's loss against compute, the frontier points and the fitted line."""
    for name, pts in runs.items():
        ax.plot(pts[:, 0], pts[:, 1], alpha=0.6, label=name)
    ax.scatter(fit.frontier[:, 0], fit.frontier[:, 1], color="k", s=10, zorder=3, label="frontier")
    grid = np.logspace(np.log10(fit.frontier[0, 0]), np.log10(fit.frontier[-1, 0]), 50)
    ax.plot(grid, fit.predict(grid), "k--", label=f"L = {fit.a:.3g} C^{fit.b:.4f}")
    ax.set(xscale="log", yscale="log", xlabel="training compute (FLOPs)", ylabel="loss")
    ax.legend(fontsize=7)
