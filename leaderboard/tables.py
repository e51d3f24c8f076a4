"""The overall table and one table per task (the paper's Tables 7-12), as pandas frames.

Every table starts with the same identity columns (model, checkpoint, source, flags, params) and then numbers in
the paper's units; a missing number is NaN, shown as missing by the renderers, never zero and never dropped.
Measured rows come from result files; "reported" rows come from `reference.py` and are never merged with them.
A column is one (task, task version, setting): two task versions, or CATER at 16 and 32 frames, are two columns.

Aggregate (overall table): for each column that has a reported Toto-large number N (same setting if the paper
reports it, else the task's default setting), the normalised score is 100 * score / N; the aggregate is the mean
of a row's available normalised scores, and `tasks` says how many columns it covers, so partial rows are visible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..harness.display import Metric
from .collect import FLAGS, Collection, Entry
from .reference import NORMALISER, Reference, normaliser, reference_rows, source
from .specs import TaskSpec, known_specs, metric_keys, scaled, spec_for

ID_COLUMNS = ["model", "checkpoint", "source", "flags", "params (M)"]


@dataclass
class Table:
    name: str  # "overall" or the task name: file names and HTML ids
    title: str
    frame: pd.DataFrame  # identity columns, then numbers (NaN = missing)
    decimals: int = 1
    footer: list[str] = field(default_factory=list)
    column_decimals: dict[str, int] = field(default_factory=dict)  # where a column differs (Ego4D mAPs: 2)


@dataclass(frozen=True)
class Column:
    task: str
    version: str | None  # None: a reported-only column (no measured result sets its version)
    variant: str
    label: str


def build_tables(coll: Collection, include_flagged: bool = False, reported: bool = True) -> list[Table]:
    """The overall table, then one table per task in the paper's order (unknown tasks last, by name)."""
    shown = [e for e in coll.entries if include_flagged or not e.flags]
    hidden = len(coll.entries) - len(shown)
    refs = reference_rows() if reported else ()
    tasks = _task_order({e.result.task for e in shown} | {r.task for r in refs})
    tables = [overall_table(shown, refs, tasks)]
    tables += [task_table(t, [e for e in shown if e.result.task == t], refs) for t in tasks]
    common = []
    if hidden:
        common.append(
            f"{hidden} flagged result(s) (limited, random_init or mini) hidden; --include-flagged shows them."
        )
    common += [f"failed: {_who(e)} {e.result.task}: {e.result.error}" for e in shown if not e.result.ok]
    common += coll.notes + [f"skipped {s}" for s in coll.skipped]
    tables[0].footer += common
    return tables


def overall_table(entries: list[Entry], refs: tuple[Reference, ...], tasks: list[str]) -> Table:
    columns = _overall_columns(entries, refs, tasks)
    rows = []
    for _, group in _groups(entries, lambda e: (e.result.backbone, e.checkpoint)):
        row = _measured_identity(group)
        for col in columns:
            hit = [e for e in group if (e.result.task, e.result.task_version, e.variant) == _col_key(col)]
            row[col.label] = _main_score(hit[0]) if hit else np.nan
        rows.append(row)
    for (model, arch), group in _groups(refs, lambda r: (r.model, r.arch)):
        row = _reported_identity(model, arch, group)
        for col in columns:
            spec = spec_for(col.task)
            hit = [r for r in group if r.task == col.task and r.metric == spec.main and r.variant == col.variant]
            row[col.label] = hit[0].value if hit else np.nan
        rows.append(row)
    frame = pd.DataFrame(rows, columns=ID_COLUMNS + [c.label for c in columns])
    values = frame[[c.label for c in columns]]
    frame = frame[(frame["source"] == "measured") | values.notna().any(axis=1)].reset_index(drop=True)
    normalised = {c.label: _norm(c) for c in columns}
    scores = frame[[c.label for c in columns]].apply(lambda col: col / normalised[col.name] * 100.0)
    frame["aggregate"] = scores.mean(axis=1, skipna=True)
    frame["tasks"] = [f"{n}/{len(columns)}" for n in frame[[c.label for c in columns]].notna().sum(axis=1)]
    footer = [
        f"aggregate: mean over a row's available columns of 100 x score / {NORMALISER}'s reported score for that "
        f"task (same setting where the paper reports it, else the task's default setting); 'tasks' counts the "
        f"columns a row has; missing cells are missing, not zero.",
    ]
    if refs:
        footer.append(f"reported rows ({source()}): their checkpoint column holds the architecture.")
    unnormalised = [label for label, n in normalised.items() if np.isnan(n)]
    if unnormalised:
        footer.append(f"not in the aggregate (no reported {NORMALISER} number): {', '.join(unnormalised)}.")
    decimals = {c.label: spec_for(c.task).decimals for c in columns}
    return Table("overall", "Overall: each task's main metric", frame, 1, footer, decimals)


def task_table(task: str, entries: list[Entry], refs: tuple[Reference, ...]) -> Table:
    """One task in the paper's shape: its metrics as columns, the setting as a column or pivoted into columns."""
    spec = spec_for(task, [e.result for e in entries])
    metrics = metric_keys(spec, [e.result for e in entries])
    refs = [r for r in refs if r.task == task]
    versions = sorted({str(e.result.task_version) for e in entries})
    pivots = sorted({e.variant for e in entries} | {r.variant for r in refs}) if spec.pivot_variant else [""]
    labels = {(m.key, v, ver): _metric_label(m, v, ver, len(versions) > 1) for m in metrics for v in pivots
              for ver in versions or [""]}  # fmt: skip
    rows = []
    for _, group in _groups(entries, lambda e: (e.result.backbone, e.checkpoint, _row_variant(spec, e.variant))):
        row = _measured_identity(group) | _setting(spec, group[0].variant) | _layer(spec, group[0])
        for e in group:
            for m in metrics:
                value = scaled(m, e.result.metrics.get(m.key)) if e.result.ok else None
                row[labels[(m.key, _pivot(spec, e.variant), str(e.result.task_version))]] = value
        rows.append(row)
    for (model, arch, variant), group in _groups(refs, lambda r: (r.model, r.arch, _row_variant(spec, r.variant))):
        row = _reported_identity(model, arch, group) | _setting(spec, variant)
        for r in group:
            for (key, pivot, _), label in labels.items():
                if key == r.metric and pivot == _pivot(spec, r.variant):
                    row[label] = r.value
        rows.append(row)
    extra = ([spec.variant_label] if spec.variant_key and not spec.pivot_variant else []) + ["layer"]
    frame = pd.DataFrame(rows, columns=ID_COLUMNS + extra + list(dict.fromkeys(labels.values())))
    frame = frame.astype({c: float for c in labels.values()})
    main = {label for (key, _, _), label in labels.items() if key == spec.main}
    keep = [c for c in frame.columns if c in ID_COLUMNS or c in main or frame[c].notna().any()]
    other = [f"{m.label} ({m.unit})" for m in metrics if m.unit != "%" and m.unit]
    footer = [f"units: percent{' except ' + ', '.join(other) if other else ''}."] if spec.table else []
    footer += [f"reported rows: the paper's Table {spec.table}."] if refs else []
    return Table(task, spec.title, frame[keep], spec.decimals, footer)


def _overall_columns(entries: list[Entry], refs: tuple[Reference, ...], tasks: list[str]) -> list[Column]:
    keys = sorted({(e.result.task, str(e.result.task_version), e.variant) for e in entries})
    for task in tasks:
        spec = spec_for(task)
        has_ref = any(r.task == task and r.metric == spec.main for r in refs)
        if has_ref and not any(k[0] == task and k[2] == spec.default_variant for k in keys):
            keys.append((task, None, spec.default_variant))
    out = []
    for task in tasks:
        mine = [k for k in keys if k[0] == task]
        versions = {k[1] for k in mine if k[1] is not None}
        for t, version, variant in mine:
            label = t + (f" [{variant}]" if variant else "") + (f" v{version}" if len(versions) > 1 and version else "")
            out.append(Column(t, version, variant, label))
    return out


def _col_key(col: Column) -> tuple[str, str | None, str]:
    return (col.task, col.version, col.variant)


def _norm(col: Column) -> float:
    spec = spec_for(col.task)
    ref = normaliser(col.task, spec.main, col.variant, spec.default_variant)
    return ref.value if ref else np.nan


def _main_score(e: Entry) -> float:
    if not e.result.ok:
        return np.nan
    spec = spec_for(e.result.task, [e.result])
    metric = next((m for m in spec.metrics if m.key == e.result.main_metric), Metric(e.result.main_metric, "", False))
    value = scaled(metric, e.result.main_score)
    return np.nan if value is None else value


def _measured_identity(group: list[Entry]) -> dict:
    params = [e.result.num_params for e in group if isinstance(e.result.num_params, int | float)]
    flags = [f for f in FLAGS if any(f in e.flags for e in group)]
    return {
        "model": group[0].result.backbone,
        "checkpoint": group[0].checkpoint,
        "source": "measured",
        "flags": ", ".join(flags),
        "params (M)": max(params) / 1e6 if params else np.nan,
    }


def _reported_identity(model: str, arch: str, group: list[Reference]) -> dict:
    tables = sorted({r.table for r in group})
    params = [r.params_m for r in group if r.params_m is not None]
    return {
        "model": model,
        "checkpoint": arch,
        "source": f"reported (Table {', '.join(map(str, tables))})",
        "flags": "",
        "params (M)": params[0] if params else np.nan,
    }


def _setting(spec: TaskSpec, variant: str) -> dict:
    return {spec.variant_label: variant} if spec.variant_key and not spec.pivot_variant else {}


def _layer(spec: TaskSpec, e: Entry) -> dict:
    selected = e.result.selected if isinstance(e.result.selected, dict) else {}
    layer = selected.get("layer")
    return {"layer": layer if isinstance(layer, int) and not spec.pivot_variant else None}


def _row_variant(spec: TaskSpec, variant: str) -> str:
    return "" if spec.pivot_variant else variant


def _pivot(spec: TaskSpec, variant: str) -> str:
    return variant if spec.pivot_variant else ""


def _metric_label(m: Metric, pivot: str, version: str, multi_version: bool) -> str:
    return m.label + (f" ({pivot})" if pivot else "") + (f" v{version}" if multi_version else "")


def _groups(items, key) -> list[tuple[tuple, list]]:
    """Items grouped by key, in first-seen order."""
    out: dict[tuple, list] = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return list(out.items())


def _task_order(tasks: set[str]) -> list[str]:
    known = [t for t in known_specs() if t in tasks]
    return known + sorted(tasks - set(known))


def _who(e: Entry) -> str:
    return f"{e.result.backbone}/{e.checkpoint}"
