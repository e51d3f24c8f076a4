"""One leaderboard table: a pandas frame of numbers plus, cell for cell, interval bounds and marks.

The renderers need more than a number per cell (an interval, a † or ‡ from the paper, a ≈ for "not different from
the best row"), but the CSV and the DataFrame a user gets must stay numeric. So a `Table` holds aligned frames:
`frame` (numbers and text, NaN = missing), `low` and `high` (interval bounds in the table's units, NaN = none),
`marks` ("" = none) and `intervals` (the cell's Interval, whose bootstrap replicates allow a paired comparison, or
None). Builders fill `Row`s and call `make_table`; `keep` filters them all together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .intervals import Interval, overlaps, paired_difference

ID_COLUMNS = ["model", "checkpoint", "source", "flags", "params (M)"]
WITHIN = "≈"  # the mark of a row not shown to differ from the best measured row (see mark_within)
FRAMES = ("frame", "low", "high", "marks", "intervals")


@dataclass
class Row:
    values: dict[str, object] = field(default_factory=dict)
    low: dict[str, float] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)
    marks: dict[str, str] = field(default_factory=dict)
    intervals: dict[str, Interval] = field(default_factory=dict)

    def put(self, column: str, value: object, interval: Interval | None = None, mark: str = "") -> None:
        self.values[column] = value
        if interval is not None and value is not None and value == value:
            self.low[column], self.high[column] = interval.low, interval.high
            self.intervals[column] = interval
        if mark:
            self.marks[column] = (self.marks.get(column, "") + mark).strip()


@dataclass
class Table:
    name: str  # "overall", a task name or an ablation study: file names and HTML ids
    title: str
    frame: pd.DataFrame  # identity columns, then numbers (NaN = missing)
    decimals: int = 1
    footer: list[str] = field(default_factory=list)
    column_decimals: dict[str, int] = field(default_factory=dict)  # where a column differs (Ego4D mAPs: 2)
    low: pd.DataFrame | None = None  # interval bounds, aligned with frame; NaN where a cell has none
    high: pd.DataFrame | None = None
    marks: pd.DataFrame | None = None  # "" or the marks after a cell's number
    group: str = ""  # a heading shared by consecutive tables ("Reported ablations")
    intervals: pd.DataFrame | None = None  # the cell's Interval or None

    def __post_init__(self) -> None:
        empty = pd.DataFrame(np.nan, index=self.frame.index, columns=self.frame.columns)
        self.low = empty.copy() if self.low is None else self.low
        self.high = empty.copy() if self.high is None else self.high
        self.marks = empty.fillna("").astype(object) if self.marks is None else self.marks
        self.intervals = _nones(self.frame) if self.intervals is None else self.intervals

    def places(self, column: str) -> int:
        return self.column_decimals.get(column, self.decimals)

    def keep(self, rows: pd.Series | None = None, columns: list[str] | None = None) -> None:
        """Filter rows (a boolean mask on frame) and columns in all frames alike."""
        for name in FRAMES:
            part = getattr(self, name)
            part = part[rows.to_numpy()] if rows is not None else part
            part = part[columns] if columns is not None else part
            setattr(self, name, part.reset_index(drop=True))

    def add_column(self, name: str, values: object) -> None:
        """A computed column (no intervals, no marks)."""
        self.frame[name] = values
        self.low[name], self.high[name], self.marks[name], self.intervals[name] = np.nan, np.nan, "", None

    def interval_columns(self) -> list[str]:
        return [c for c in self.frame.columns if self.low[c].notna().any()]

    def is_numeric(self, column: str) -> bool:
        return column == "layer" or pd.api.types.is_numeric_dtype(self.frame[column])


def make_table(name: str, title: str, rows: list[Row], columns: list[str], numeric: list[str], **kw) -> Table:
    """A Table from rows; `numeric` columns are float (None -> NaN), the others keep their values."""
    frame = pd.DataFrame([r.values for r in rows], columns=columns).astype({c: float for c in numeric})
    low = pd.DataFrame([r.low for r in rows], columns=columns, dtype=float)
    high = pd.DataFrame([r.high for r in rows], columns=columns, dtype=float)
    marks = pd.DataFrame([r.marks for r in rows], columns=columns, dtype=object).fillna("")
    intervals = _nones(frame)
    for i, row in enumerate(rows):
        for column, interval in row.intervals.items():
            if column in intervals.columns:
                intervals.at[i, column] = interval
    return Table(name, title, frame, low=low, high=high, marks=marks, intervals=intervals, **kw)


def _nones(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(None, index=frame.index, columns=frame.columns, dtype=object)


def mark_within(table: Table, columns: list[str], by: str = "") -> list[str]:
    """Mark ≈ each measured row not shown to differ from the best measured row in a column.

    Best = highest value among measured rows (within each value of `by`, the row's setting, where given). Where
    both cells carry replicates over the same test samples, "not shown to differ" is the paired difference's 95%
    interval containing 0; else it is the two intervals overlapping. A column whose best row has no interval gets
    no marks. Returns footer lines naming each column's best row.
    """
    frame, lines = table.frame, []
    measured = frame["source"] == "measured"
    groups = frame[by].fillna("") if by else pd.Series("", index=frame.index)
    for column in columns:
        for group in sorted(set(groups[measured])):
            rows = frame.index[measured & (groups == group) & frame[column].notna()]
            if len(rows) < 2:
                continue
            best = frame.loc[rows, column].astype(float).idxmax()
            if np.isnan(table.low.at[best, column]):
                continue
            verdicts = {i: _same(table, best, i, column) for i in rows if i != best}
            hits = [i for i, (same, _) in verdicts.items() if same]
            for i in hits:
                table.marks.at[i, column] = (table.marks.at[i, column] + " " + WITHIN).strip()
            paired = sum(how == "paired" for _, how in verdicts.values())
            where = f"{column}" + (f", {by} {group}" if by else "")
            who = f"{frame.at[best, 'model']}/{frame.at[best, 'checkpoint']}"
            lines.append(f"{where}: best measured {who}, {len(hits)} row(s) not shown to differ ({paired} paired)")
    return lines


def _same(table: Table, best: int, i: int, column: str) -> tuple[bool, str]:
    """(does row i not differ from the best row, "paired" or "overlap": how that was decided)."""
    a, b = table.intervals.at[best, column], table.intervals.at[i, column]
    diff = paired_difference(a, b) if isinstance(a, Interval) and isinstance(b, Interval) else None
    if diff is not None:
        return diff[0] <= 0.0 <= diff[1], "paired"
    low, high = table.low.at[i, column], table.high.at[i, column]
    ref = (table.low.at[best, column], table.high.at[best, column])
    return (not np.isnan(low) and overlaps((low, high), ref)), "overlap"
