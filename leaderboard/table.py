"""One leaderboard table: a pandas frame of numbers plus, cell for cell, interval bounds and marks.

The renderers need more than a number per cell (an interval, a † or ‡ from the paper, a ≈ for "within the intervals
of the best row"), but the CSV and the DataFrame a user gets must stay numeric. So a `Table` holds four aligned
frames: `frame` (numbers and text, NaN = missing), `low` and `high` (interval bounds in the table's units, NaN =
none) and `marks` ("" = none). Builders fill `Row`s and call `make_table`; `keep` filters all four together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .intervals import Interval, overlaps

ID_COLUMNS = ["model", "checkpoint", "source", "flags", "params (M)"]
WITHIN = "≈"  # the mark of a row whose interval overlaps the best measured row's


@dataclass
class Row:
    values: dict[str, object] = field(default_factory=dict)
    low: dict[str, float] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)
    marks: dict[str, str] = field(default_factory=dict)

    def put(self, column: str, value: object, interval: Interval | None = None, mark: str = "") -> None:
        self.values[column] = value
        if interval is not None and value is not None and value == value:
            self.low[column], self.high[column] = interval.low, interval.high
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

    def __post_init__(self) -> None:
        empty = pd.DataFrame(np.nan, index=self.frame.index, columns=self.frame.columns)
        self.low = empty.copy() if self.low is None else self.low
        self.high = empty.copy() if self.high is None else self.high
        self.marks = empty.fillna("").astype(object) if self.marks is None else self.marks

    def places(self, column: str) -> int:
        return self.column_decimals.get(column, self.decimals)

    def keep(self, rows: pd.Series | None = None, columns: list[str] | None = None) -> None:
        """Filter rows (a boolean mask on frame) and columns in all four frames alike."""
        for name in ("frame", "low", "high", "marks"):
            part = getattr(self, name)
            part = part[rows.to_numpy()] if rows is not None else part
            part = part[columns] if columns is not None else part
            setattr(self, name, part.reset_index(drop=True))

    def add_column(self, name: str, values: object) -> None:
        """A computed column (no intervals, no marks)."""
        self.frame[name] = values
        self.low[name], self.high[name], self.marks[name] = np.nan, np.nan, ""

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
    return Table(name, title, frame, low=low, high=high, marks=marks, **kw)


def mark_within(table: Table, columns: list[str], by: str = "") -> list[str]:
    """Mark ≈ each measured row whose interval in a column overlaps the best measured row's there.

    Best = highest value among measured rows (within each value of `by`, the row's setting, where given). A column
    whose best row has no interval gets no marks. Returns footer lines naming each column's best row.
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
            ref = (table.low.at[best, column], table.high.at[best, column])
            if np.isnan(ref[0]):
                continue
            hits = [i for i in rows if i != best and _overlap(table, i, column, ref)]
            for i in hits:
                table.marks.at[i, column] = (table.marks.at[i, column] + " " + WITHIN).strip()
            where = f"{column}" + (f", {by} {group}" if by else "")
            who = f"{frame.at[best, 'model']}/{frame.at[best, 'checkpoint']}"
            lines.append(f"{where}: best measured {who}, {len(hits)} row(s) within its interval")
    return lines


def _overlap(table: Table, i: int, column: str, ref: tuple[float, float]) -> bool:
    low, high = table.low.at[i, column], table.high.at[i, column]
    return not np.isnan(low) and overlaps((low, high), ref)
