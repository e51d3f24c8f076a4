"""The paper's reported numbers (Tables 7-12, baselines included) as data, each row with its source table.

They live in `reference_rows.json` next to this module, in percent (params in millions), so a correction is a
data edit with no code change. The leaderboard shows them as "reported" rows, never merged with measured rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..common.errors import data_error

ROWS_FILE = Path(__file__).with_name("reference_rows.json")
NORMALISER = "Toto-large"  # the aggregate divides each task's score by this model's reported number


@dataclass(frozen=True)
class Reference:
    table: int
    task: str
    model: str
    arch: str
    params_m: float | None
    metric: str
    value: float
    variant: str = ""
    note: str = ""


@cache
def reference_rows(path: Path = ROWS_FILE) -> tuple[Reference, ...]:
    """All reported rows; a malformed file is a DataError naming it and the entry."""
    try:
        doc = json.loads(Path(path).read_text())
        rows = doc["rows"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise data_error(path, f"not a reference table ({err})") from None
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(Reference(**row))
        except TypeError as err:
            raise data_error(path, f"row {i}: {err}") from None
    return tuple(out)


def source() -> str:
    return json.loads(ROWS_FILE.read_text())["source"]


def normaliser(task: str, metric: str, variant: str, default_variant: str) -> Reference | None:
    """Toto-large's reported number for this task and metric: same setting if reported, else the default one."""
    rows = [r for r in reference_rows() if r.task == task and r.metric == metric and r.model == NORMALISER]
    for wanted in (variant, default_variant, ""):
        match = next((r for r in rows if r.variant == wanted), None)
        if match:
            return match
    return None
