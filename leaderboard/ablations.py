"""The paper's ablation studies (Tables 3-6, 13, 14, 16, Figure 9) as tables, with measured rows where they match.

One table per study: the paper's varied setting as columns (tokeniser, pooling, head, ...), the number it reports,
and the table it is printed in. A study with a `match` path (e.g. `config.probe` of `imagenet_probe`) also takes
every measured result of its task whose value at that path equals one of the study's setting keys: that row shows
the same setting and the measured number (± its interval), so a user who runs the study reads it beside the paper.
Pre-training runs given to the CLI (`--pretrain-runs`) add their own power-law fit beside Figure 9's.
"""

from __future__ import annotations

import numpy as np

from ..harness.display import Metric
from .collect import FLAGS, Entry
from .reference import MARKS, AblationRow, Study, ablation_rows, studies
from .specs import scaled, spec_for
from .table import ID_COLUMNS, Row, Table, make_table

GROUP = "Reported ablations"


def ablation_tables(entries: list[Entry], reported: bool = True, fits=()) -> list[Table]:
    """One table per study, in the paper's order; none without the reported rows (they define the studies)."""
    if not reported:
        return []
    rows = ablation_rows()
    return [study_table(s, [r for r in rows if r.study == s.name], entries, fits) for s in studies()]


def study_table(study: Study, refs: list[AblationRow], entries: list[Entry], fits=()) -> Table:
    labels = [m.label for m in study.metrics]
    key_col = [study.match] if study.match else []
    rows = [_measured_row(study, e, refs) for e in _matching(study, refs, entries)]
    if study.name == "figure9":
        rows += [_fit_row(name, a, b) for name, a, b in fits]
    for ref in refs:
        row = Row(_identity(ref.model, "", f"reported ({ref.table})", "", ref.params_m) | dict(ref.setting))
        row.values.update({study.match: ref.key} if study.match else {})
        for m in study.metrics:
            row.put(m.label, ref.values.get(m.key, np.nan), mark=ref.mark)
        rows.append(row)
    columns = ID_COLUMNS + list(study.columns) + key_col + labels
    table = make_table(study.name, study.title, rows, columns, [*labels, "params (M)"], group=GROUP)
    table.column_decimals = {m.label: m.decimals for m in study.metrics}
    table.footer = _footer(study, refs, table)
    return table


def _matching(study: Study, refs: list[AblationRow], entries: list[Entry]) -> list[Entry]:
    if not study.match or not study.task:
        return []
    keys = {r.key for r in refs}
    return [e for e in entries if e.result.task == study.task and e.result.ok and setting_key(e, study) in keys]


def setting_key(entry: Entry, study: Study) -> str | None:
    """The value at the study's dotted path in the result (`config.probe` -> result.config["probe"]), as text."""
    head, *rest = study.match.split(".")
    value = getattr(entry.result, head, None)
    for part in rest:
        value = value.get(part) if isinstance(value, dict) else None
    return None if value is None or isinstance(value, dict | list) else str(value)


def _measured_row(study: Study, e: Entry, refs: list[AblationRow]) -> Row:
    key = setting_key(e, study)
    ref = next(r for r in refs if r.key == key)
    flags = ", ".join(f for f in FLAGS if f in e.flags)
    params = e.result.num_params / 1e6 if isinstance(e.result.num_params, int | float) else np.nan
    row = Row(_identity(e.result.backbone, e.checkpoint, "measured", flags, params))
    row.values.update({c: ref.setting.get(c, "") for c in study.varied} | {study.match: key})
    display = {m.key: m for m in spec_for(study.task).metrics}
    for m in study.metrics:
        metric = display.get(m.key, Metric(m.key, m.label, False, ""))
        interval = e.interval(m.key)
        factor = 100.0 if metric.percent else 1.0
        row.put(m.label, scaled(metric, e.result.metrics.get(m.key)), interval.scaled(factor) if interval else None)
    return row


def _fit_row(name: str, a: float, b: float) -> Row:
    row = Row(_identity(name, "", "measured", "", np.nan) | {"compute unit": "FLOPs (training)"})
    row.put("a", a)
    row.put("b", b)
    return row


def _identity(model: str, checkpoint: str, source: str, flags: str, params: float | None) -> dict:
    params = np.nan if params is None else params
    return {"model": model, "checkpoint": checkpoint, "source": source, "flags": flags, "params (M)": params}


def _footer(study: Study, refs: list[AblationRow], table: Table) -> list[str]:
    lines = [f"protocol: {study.protocol}"]
    secondary = [_name(r) for r in refs if r.checked != "summary"]
    if secondary:
        lines.append("not stated in the paper summary (secondary transcription only): " + "; ".join(secondary) + ".")
    lines += [f"{_name(r)}: {r.note}." for r in refs if r.note and r.mark not in MARKS]
    for mark, meaning in MARKS.items():
        cells = [_name(r) + (f" ({r.note})" if r.note else "") for r in refs if r.mark == mark]
        lines += [f"{mark} {meaning}: {'; '.join(cells)}."] if cells else []
    if table.interval_columns():
        lines.append(
            "measured: ± half-width of the 95% interval, [low, high] where it is not symmetric about the value."
        )
    return lines


def _name(r: AblationRow) -> str:
    setting = ", ".join(v for v in r.setting.values() if v and v not in ("-", "not stated"))
    return f"{r.model}" + (f" ({setting})" if setting else "") + (f" [{r.table}]" if r.table else "")
