"""The paper's reported numbers as data: Tables 7-12 (one row per number) and the ablation studies.

Two files next to this module, so a correction is a data edit with no code change:

- `reference_rows.json`: Tables 7-12, baselines included, one row per (model, metric, setting), in percent (params
  in millions). They become "reported" rows of the overall and task tables, never merged with measured rows.
- `reference_ablations.json`: the studies of Tables 3-6, 13, 14, 16 and the Figure 9 fit. A `Study` says what the
  paper varied (its setting columns), what it held fixed (`protocol`) and, in `match`, which field of a result file
  holds the same setting (a dotted path such as `config.probe`); an `AblationRow` carries that setting's `key`, so
  a measured result whose field equals the key sits beside the paper's row.

Every row says whether its number is stated in the paper summary (`checked: "summary"`) or comes only from the
secondary transcription (`"secondary"`), and carries a `mark` with a `note` where the paper marks it (†: linear
probe) or disagrees with itself (‡); docs/paper_notes.md lists the disagreements.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from ..common.errors import data_error

ROWS_FILE = Path(__file__).with_name("reference_rows.json")
ABLATIONS_FILE = Path(__file__).with_name("reference_ablations.json")
NORMALISER = "Toto-large"  # the aggregate divides each task's score by this model's reported number
MARKS = {
    "†": "linear probe (the paper's † in Table 7)",
    "‡": "the paper disagrees with itself on this number (docs/paper_notes.md)",
}


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
    checked: str = "summary"  # "summary": the number is in the paper summary; "secondary": transcription only
    mark: str = ""  # a key of MARKS, shown next to the number
    note: str = ""


@dataclass(frozen=True)
class StudyMetric:
    key: str  # key in the rows' `values` and in a measured result's metrics
    label: str
    decimals: int = 1


@dataclass(frozen=True)
class Study:
    name: str  # table file name and HTML id
    title: str
    task: str  # the toto-eval task that measures it ('' when none does)
    metrics: tuple[StudyMetric, ...]
    columns: tuple[str, ...]  # the setting's columns, as the paper prints them
    varied: tuple[str, ...]  # the columns a measured row copies from the reported row with its key
    match: str  # dotted path of the setting in a result file ('' = no measured counterpart yet)
    protocol: str  # what the paper held fixed, with the section or table it says so in


@dataclass(frozen=True)
class AblationRow:
    study: str
    table: str  # "Table 3", "Figure 9": where the number is printed
    model: str
    params_m: float | None
    key: str  # the setting key a measured result's `match` field must equal
    setting: dict[str, str] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    checked: str = "summary"
    mark: str = ""
    note: str = ""


@cache
def reference_rows(path: Path = ROWS_FILE) -> tuple[Reference, ...]:
    """All reported rows of Tables 7-12; a malformed file is a DataError naming it and the entry."""
    return tuple(_parse(path, "rows", Reference))


@cache
def studies(path: Path = ABLATIONS_FILE) -> tuple[Study, ...]:
    """The ablation studies in the paper's order."""
    out = []
    for study in _parse(path, "studies", dict):
        try:
            metrics = tuple(StudyMetric(**m) for m in study.pop("metrics"))
            cols = {k: tuple(study.pop(k)) for k in ("columns", "varied")}
            out.append(Study(metrics=metrics, **cols, **study))
        except (KeyError, TypeError) as err:
            raise data_error(path, f"study {study.get('name', '?')}: {err}") from None
    return tuple(out)


@cache
def ablation_rows(path: Path = ABLATIONS_FILE) -> tuple[AblationRow, ...]:
    rows = tuple(_parse(path, "rows", AblationRow))
    known = {s.name for s in studies(path)}
    for row in rows:
        if row.study not in known:
            raise data_error(path, f"row {row.model} ({row.table}): unknown study {row.study!r}")
    return rows


def _parse(path: Path, section: str, kind: type) -> list:
    try:
        items = json.loads(Path(path).read_text())[section]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise data_error(path, f"not a reference table ({err})") from None
    out = []
    for i, item in enumerate(items):
        try:
            out.append(kind(**item))
        except TypeError as err:
            raise data_error(path, f"{section}[{i}]: {err}") from None
    return out


def source(path: Path = ROWS_FILE) -> str:
    return json.loads(Path(path).read_text())["source"]


def normaliser(task: str, metric: str, variant: str, default_variant: str) -> Reference | None:
    """Toto-large's reported number for this task and metric: same setting if reported, else the default one."""
    rows = [r for r in reference_rows() if r.task == task and r.metric == metric and r.model == NORMALISER]
    for wanted in (variant, default_variant, ""):
        match = next((r for r in rows if r.variant == wanted), None)
        if match:
            return match
    return None
