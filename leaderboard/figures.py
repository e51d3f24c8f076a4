"""The paper's figures from result files, as PNG and SVG (matplotlib, Agg, no display).

- `probe_depth`: accuracy against relative depth (layer + 1) / num_layers, one panel per task, one line per
  backbone (Figures 4 and 8). A layer's point is its best head on the held-out part of train (the task's
  `layer_select` key), scored on the reported split, so the curve never selects on test. Where that head's row
  carries `<layer_score>_ci` (its 95% interval), the curve is drawn inside a shaded band of those intervals.
- `robot_demos`: success against the number of demonstrations, one panel per environment (Figure 6), from the
  robot task's `extra["tasks"][env]["curve"]`, averaged over behaviour-cloning seeds; the state control (the head
  on the object's true position) and the proprioception-only head, at the reported number of demonstrations, are
  drawn as the range a backbone's line lies in.
- `scaling`: the compute-optimal frontier and power-law fit of pre-training runs (Figure 9), via
  `pretrain.scaling`; drawn only when runs are given.
SVGs carry no date and a fixed hash salt, so the same results give the same files.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from .collect import Entry
from .intervals import layer_interval
from .specs import known_specs, spec_for

plt.rcParams["svg.hashsalt"] = "toto-eval"


class LayerPoint(NamedTuple):
    depth: float  # (layer + 1) / num_layers
    score: float  # in the table's unit
    low: float = float("nan")  # the head's 95% interval, same unit; NaN when the result has none
    high: float = float("nan")


def layer_curve(entry: Entry) -> list[LayerPoint]:
    """One point per layer, the best held-out head of the layer; [] when not plottable."""
    r, spec = entry.result, spec_for(entry.result.task)
    if not spec.layer_score or not r.ok or not isinstance(r.num_layers, int) or r.num_layers < 1:
        return []
    best: dict[int, dict] = {}
    for row in r.per_layer:
        if not isinstance(row, dict) or not isinstance(row.get("layer"), int) or not _num(row.get(spec.layer_score)):
            continue
        key = spec.layer_select if _num(row.get(spec.layer_select)) else spec.layer_score
        old = best.get(row["layer"])
        if old is None or row[key] > old[key]:
            best[row["layer"]] = row
    scale = 100.0 if spec.metrics[0].percent else 1.0
    out = []
    for layer in sorted(best):
        ci = layer_interval(best[layer], spec.layer_score) or (np.nan, np.nan)
        score = best[layer][spec.layer_score]
        out.append(LayerPoint((layer + 1) / r.num_layers, score * scale, ci[0] * scale, ci[1] * scale))
    return out


def probe_depth(entries: list[Entry], out_dir: Path) -> list[Path]:
    """Figures 4/8: one panel per task that has a multi-layer curve; nothing when none has."""
    panels: dict[str, list[tuple[str, list]]] = defaultdict(list)
    for e in entries:
        curve = layer_curve(e)
        if len(curve) > 1:
            panels[e.result.task].append((_label(e), curve))
    if not panels:
        return []
    tasks = [t for t in known_specs() if t in panels] + sorted(set(panels) - set(known_specs()))
    colour = _colours(panels)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        banded = False
        for label, curve in panels[task]:
            x, y, low, high = (np.array(v, dtype=float) for v in zip(*curve, strict=True))
            ax.plot(x, y, marker="o", label=label, color=colour[label])
            if np.isfinite(low).any():  # NaN where a layer has no interval: the band has a gap there
                ax.fill_between(x, low, high, color=colour[label], alpha=0.18, linewidth=0)
                banded = True
        spec = known_specs().get(task)
        ax.set(title=task, xlabel="relative depth (layer / num layers)", xlim=(0, 1.05))
        ax.set_ylabel(f"{spec.main if spec else task} (%)" if spec and spec.metrics[0].percent else "score")
        ax.grid(alpha=0.3)
        handles, _ = ax.get_legend_handles_labels()
        band = [Patch(color="grey", alpha=0.3, label="95% interval")] if banded else []
        ax.legend(handles=handles + band, fontsize=7)
    return _save(fig, out_dir / "probe_depth")


def robot_curves(entry: Entry) -> dict[str, list[tuple[int, float]]]:
    """{environment: [(demos, success %)]} averaged over BC seeds; {} when the result has no curve."""
    tasks = entry.result.extra.get("tasks") if entry.result.ok else None
    out = {}
    for env, info in (tasks or {}).items():
        by_n = defaultdict(list)
        for point in info.get("curve", []) if isinstance(info, dict) else []:
            if isinstance(point, dict) and _num(point.get("demos")) and _num(point.get("success")):
                by_n[int(point["demos"])].append(float(point["success"]) * 100.0)
        if by_n:
            out[env] = [(n, float(np.mean(v))) for n, v in sorted(by_n.items())]
    return out


REFERENCES = {"state": ("state control (object position)", "--"), "proprio": ("proprioception only", ":")}


def robot_references(entry: Entry) -> dict[str, dict[str, float]]:
    """{environment: {"state" | "proprio": success %}}: the backbone-free policies a robot result carries."""
    tasks = entry.result.extra.get("tasks") if entry.result.ok else None
    out: dict[str, dict[str, float]] = {}
    for env, info in (tasks or {}).items():
        for kind in REFERENCES:
            policy = info.get(kind) if isinstance(info, dict) else None
            if isinstance(policy, dict) and _num(policy.get("success")):
                out.setdefault(env, {})[kind] = float(policy["success"]) * 100.0
    return out


def robot_demos(entries: list[Entry], out_dir: Path) -> list[Path]:
    """Figure 6: success against demonstrations, one panel per environment, between its references."""
    panels: dict[str, list[tuple[str, list]]] = defaultdict(list)
    references: dict[str, dict[str, float]] = {}
    for e in entries:
        if e.result.task == "robot":
            for env, curve in robot_curves(e).items():
                panels[env].append((_label(e), curve))
            for env, refs in robot_references(e).items():
                references.setdefault(env, refs)  # the same for every backbone run with the same settings
    if not panels:
        return []
    envs = sorted(panels)
    colour = _colours(panels)
    fig, axes = plt.subplots(1, len(envs), figsize=(4.2 * len(envs), 3.4), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for label, curve in panels[env]:
            x, y = zip(*curve, strict=True)
            ax.plot(x, y, marker="o", label=label, color=colour[label])
        for kind, value in references.get(env, {}).items():
            label, style = REFERENCES[kind]
            ax.axhline(value, color="0.45", linestyle=style, linewidth=1.2, label=label)
        ax.set(title=env, xlabel="demonstrations", ylabel="success (%)", ylim=(-3, 103))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, out_dir / "robot_demos")


def scaling(run_paths: list[Path], out_dir: Path) -> list[Path]:
    """Figure 9 from pre-training runs (directories with metrics.csv, or CSV files); DataError on bad input."""
    from ..pretrain.scaling import draw, fit_power_law, read_run

    runs = {Path(p).name or str(p): read_run(p) for p in run_paths}
    fit = fit_power_law(list(runs.values()))
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    draw(ax, runs, fit)
    return _save(fig, out_dir / "scaling")


def _save(fig, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    fig.savefig(png, dpi=120, metadata={"Software": None})
    fig.savefig(svg, metadata={"Date": None})
    plt.close(fig)
    return [png, svg]


def _colours(panels: dict[str, list[tuple[str, list]]]) -> dict[str, str]:
    """One colour per backbone across all panels of a figure."""
    labels = sorted({label for lines in panels.values() for label, _ in lines})
    return {label: f"C{i % 10}" for i, label in enumerate(labels)}


def _label(e: Entry) -> str:
    return f"{e.result.backbone}/{e.checkpoint}" + (f" ({', '.join(e.flags)})" if e.flags else "")


def _num(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
