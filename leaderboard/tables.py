"""The overall table and one table per task (the paper's Tables 7-12), then the reported ablations.

Every table starts with the same identity columns (model, checkpoint, source, flags, params) and then numbers in
the paper's units; a missing number is NaN, shown as missing by the renderers, never zero and never dropped.
Measured rows come from result files; "reported" rows come from `reference.py` and are never merged with them.
A column is one (task, task version, setting): two task versions, or CATER at 16 and 32 frames, are two columns.
A measured number with a 95% interval carries it (the renderers show ±); in each column of a main metric, measured
rows not shown to differ from the best measured row are marked ≈ (table.mark_within: paired where it can be).

Aggregate (overall table): for each column that has a reported Toto-large number N (same setting if the paper
reports it, else the task's default setting), the normalised score is 100 * score / N; the aggregate is the mean
of a row's available normalised scores, and `tasks` says how many columns it covers, so partial rows are visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..harness.display import Metric
from .ablations import ablation_tables
from .collect import FLAGS, Collection, Entry
from .intervals import Interval
from .reference import MARKS, NORMALISER, Reference, normaliser, reference_rows
from .specs import TaskSpec, known_specs, metric_keys, scaled, spec_for
from .table import ID_COLUMNS, WITHIN, Row, Table, make_table, mark_within

SOURCE_LINE = (
    "reported rows: arXiv 2501.05453 (leaderboard/reference_rows.json, leaderboard/reference_ablations.json); "
    "their checkpoint column holds the architecture; checks against the paper summary and the paper's "
    "self-disagreements: docs/paper_notes.md."
)


@dataclass(frozen=True)
class Column:
    task: str
    version: str | None  # None: a reported-only column (no measured result sets its version)
    variant: str
    label: str


def build_tables(coll: Collection, include_flagged: bool = False, reported: bool = True, fits=()) -> list[Table]:
    """The overall table, one table per task in the paper's order (unknown tasks last), then the ablations.

    `fits`: (name, a, b) power-law fits of pre-training runs, shown beside the paper's Figure 9 fit.
    """
    shown = [e for e in coll.entries if include_flagged or not e.flags]
    hidden = len(coll.entries) - len(shown)
    refs = reference_rows() if reported else ()
    tasks = _task_order({e.result.task for e in shown} | {r.task for r in refs})
    tables = [overall_table(shown, refs, tasks)]
    tables += [task_table(t, [e for e in shown if e.result.task == t], refs) for t in tasks]
    tables += ablation_tables(shown, reported, fits)
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
    labels = [c.label for c in columns]
    rows = []
    for _, group in _groups(entries, lambda e: (e.result.backbone, e.checkpoint)):
        row = Row(_measured_identity(group))
        for col in columns:
            hit = [e for e in group if (e.result.task, e.result.task_version, e.variant) == _col_key(col)]
            value, interval = _main_score(hit[0]) if hit else (np.nan, None)
            row.put(col.label, value, interval)
        rows.append(row)
    marked = []
    for (model, arch), group in _groups(refs, lambda r: (r.model, r.arch)):
        row = Row(_reported_identity(model, arch, group))
        for col in columns:
            spec = spec_for(col.task)
            hit = [r for r in group if r.task == col.task and r.metric == spec.main and r.variant == col.variant]
            row.put(col.label, hit[0].value if hit else np.nan, mark=hit[0].mark if hit else "")
            marked += [(hit[0], col.label)] if hit and hit[0].mark else []
        rows.append(row)
    table = make_table(
        "overall", "Overall: each task's main metric", rows, ID_COLUMNS + labels, [*labels, "params (M)"]
    )
    values = table.frame[labels]
    table.keep((table.frame["source"] == "measured") | values.notna().any(axis=1))
    normalised = {c.label: _norm(c) for c in columns}
    scores = table.frame[labels].apply(lambda col: col / normalised[col.name] * 100.0)
    table.add_column("aggregate", scores.mean(axis=1, skipna=True))
    table.add_column("tasks", [f"{n}/{len(columns)}" for n in table.frame[labels].notna().sum(axis=1)])
    table.footer = [
        f"aggregate: mean over a row's available columns of 100 x score / {NORMALISER}'s reported score for that "
        f"task (same setting where the paper reports it, else the task's default setting); 'tasks' counts the "
        f"columns a row has; missing cells are missing, not zero.",
    ]
    table.footer += [SOURCE_LINE] if refs else []
    unnormalised = [label for label, n in normalised.items() if np.isnan(n)]
    if unnormalised:
        table.footer.append(f"not in the aggregate (no reported {NORMALISER} number): {', '.join(unnormalised)}.")
    table.footer += _mark_footer(marked) + _interval_footer(table, entries, labels, "")
    table.column_decimals = {c.label: spec_for(c.task).decimals for c in columns}
    return table


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
        row = Row(_measured_identity(group) | _setting(spec, group[0].variant) | _layer(spec, group[0]))
        for e in group:
            for m in metrics:
                value = scaled(m, e.result.metrics.get(m.key)) if e.result.ok else None
                label = labels[(m.key, _pivot(spec, e.variant), str(e.result.task_version))]
                row.put(label, value, _scaled_interval(m, e.interval(m.key)))
        rows.append(row)
    marked = []
    for (model, arch, variant), group in _groups(refs, lambda r: (r.model, r.arch, _row_variant(spec, r.variant))):
        row = Row(_reported_identity(model, arch, group) | _setting(spec, variant))
        for r in group:
            for (key, pivot, _), label in labels.items():
                if key == r.metric and pivot == _pivot(spec, r.variant):
                    row.put(label, r.value, mark=r.mark)
                    marked += [(r, label)] if r.mark else []
        rows.append(row)
    extra = ([spec.variant_label] if spec.variant_key and not spec.pivot_variant else []) + ["layer"]
    value_columns = list(dict.fromkeys(labels.values()))
    table = make_table(task, spec.title, rows, ID_COLUMNS + extra + value_columns, [*value_columns, "params (M)"])
    main = [label for (key, _, _), label in labels.items() if key == spec.main]
    table.keep(columns=[c for c in table.frame.columns if c in ID_COLUMNS or c in main or table.frame[c].notna().any()])
    table.decimals = spec.decimals
    table.footer = _task_footer(spec, metrics, refs, marked)
    by = spec.variant_label if spec.variant_key and not spec.pivot_variant else ""
    table.footer += _interval_footer(table, entries, list(dict.fromkeys(main)), by)
    table.footer += _overrides_footer(entries)
    return table


def _task_footer(spec: TaskSpec, metrics: list[Metric], refs: list[Reference], marked: list) -> list[str]:
    other = [f"{m.label} ({m.unit})" for m in metrics if m.unit != "%" and m.unit]
    footer = [f"units: percent{' except ' + ', '.join(other) if other else ''}."] if spec.table else []
    footer += [f"reported rows: the paper's Table {spec.table}."] if refs else []
    secondary = _secondary(refs, {m.key: m.label for m in metrics})
    if secondary:
        footer.append(f"not stated in the paper summary (secondary transcription only): {secondary}.")
    return footer + _mark_footer(marked)


def _secondary(refs: list[Reference], labels: dict[str, str]) -> str:
    """Models whose numbers the summary does not state: the model alone when none of its numbers is stated."""
    out = []
    for model, group in _groups(refs, lambda r: (r.model,)):
        missing = [r for r in group if r.checked != "summary"]
        if missing and len(missing) == len(group):
            out.append(model[0])
        elif missing:
            which = dict.fromkeys(labels.get(r.metric, r.metric) for r in missing)
            out.append(f"{model[0]} ({', '.join(which)})")
    return ", ".join(out)


def _mark_footer(marked: list[tuple[Reference, str]]) -> list[str]:
    """One line per mark: what it means, and which cells carry it (with the cell's note where it differs)."""
    lines = []
    for mark, meaning in MARKS.items():
        cells = [(r, label) for r, label in marked if r.mark == mark]
        if not cells:
            continue
        where = [f"{r.model} {label}" + (f" ({r.note})" if r.note and r.note != meaning else "") for r, label in cells]
        lines.append(f"{mark} {meaning}: {'; '.join(dict.fromkeys(where))}.")
    return lines


def _interval_footer(table: Table, entries: list[Entry], main: list[str], by: str) -> list[str]:
    """Explain ± and ≈ where the table has intervals; mark rows within the best row's interval."""
    if not table.interval_columns():
        return []
    methods = sorted({f"{iv.method or 'unknown method'}" for e in entries for iv in e.intervals.values()})
    lines = [
        f"±: half-width of the 95% interval ({', '.join(methods)}); written [low, high] where the interval is not "
        f"symmetric about the value at the precision shown (CSV: low/high columns)."
    ]
    best = mark_within(table, [c for c in main if c in table.frame.columns], by)
    if best:
        lines.append(
            f"{WITHIN}: not shown to differ from the best measured row in that column: the 95% interval of the "
            f"paired difference (bootstrap replicates over the same test samples) contains 0, or, for results "
            f"without replicates, the two intervals overlap (neither shows the two are equal). " + "; ".join(best) + "."
        )
    return lines


def _overrides_footer(entries: list[Entry]) -> list[str]:
    out = []
    for e in entries:
        if e.mini_overrides:
            pairs = ", ".join(f"{k}={v}" for k, v in sorted(e.mini_overrides.items()))
            out.append(f"mini-suite overrides, {_who(e)}" + (f" [{e.variant}]" if e.variant else "") + f": {pairs}.")
    return out


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


def _main_metric(e: Entry) -> Metric:
    spec = spec_for(e.result.task, [e.result])
    return next((m for m in spec.metrics if m.key == e.result.main_metric), Metric(e.result.main_metric, "", False))


def _main_score(e: Entry) -> tuple[float, Interval | None]:
    """The main score in the table's unit and its interval (None without one); NaN for a failed run."""
    if not e.result.ok:
        return np.nan, None
    metric = _main_metric(e)
    value = scaled(metric, e.result.main_score)
    return (np.nan, None) if value is None else (value, _scaled_interval(metric, e.interval(e.result.main_metric)))


def _scaled_interval(metric: Metric, interval: Interval | None) -> Interval | None:
    return None if interval is None else interval.scaled(100.0 if metric.percent else 1.0)


def _measured_identity(group: list[Entry]) -> dict:
    params = [e.result.num_params for e in group if isinstance(e.result.num_params, int | float)]
    flags = [f for f in FLAGS if any(f in e.flags for e in group)]
    pooled = sorted({len(e.seeds) for e in group if e.seeds})
    if pooled:  # a row over seeds says so: its numbers are means, its intervals count the seeds
        flags.append(f"mean of {'-'.join(map(str, sorted({pooled[0], pooled[-1]})))} seeds")
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
