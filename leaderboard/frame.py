"""`load_results`: every result file under one or several directories as one pandas DataFrame.

For analysis in a notebook, where the leaderboard's tables are too shaped: one row per result file, identity and
provenance columns first, then one `metric.<key>` column per metric any file has. Numbers stay in their stored
units (top-1 as a fraction, Ego4D mAP in percent), exactly as in the JSON; `low`/`high` are the main metric's 95%
interval in the same units (NaN without one). Files that cannot be read are logged and left out, as in the
leaderboard; superseded duplicates are kept unless `newest_only=True`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..common.errors import DataError
from .collect import Collection, Entry, collect, load_entry, result_files

log = logging.getLogger(__name__)

COLUMNS = [
    "backbone", "checkpoint", "task", "task_version", "variant", "status", "main_metric", "score", "low", "high",
    "flags", "num_params", "num_layers", "layer", "seed", "wall_seconds", "finished", "mini_overrides", "error", "path",
]  # fmt: skip


def load_results(paths: str | Path | list[str | Path], newest_only: bool = False) -> pd.DataFrame:
    """One row per result file under `paths` (a directory or a list of them), sorted by backbone, checkpoint, task.

    `variant` is the task's setting that splits its columns in the leaderboard (CATER "16f", DAVIS "toto256",
    '' when the task has none); `flags` is a comma-separated subset of limited, random_init, mini; `layer` is
    the selected head's layer; `finished` is a UTC timestamp.
    """
    dirs = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    entries = collect(dirs).entries if newest_only else _all_entries(dirs)
    rows = [_row(e) for e in entries]
    metrics = sorted({k for r in rows for k in r if k.startswith("metric.")})
    frame = pd.DataFrame(rows, columns=COLUMNS + metrics)
    frame = frame.astype({c: float for c in ["score", "low", "high", "wall_seconds", *metrics]})
    frame["finished"] = pd.to_datetime(frame["finished"], unit="s", utc=True)
    return frame.sort_values(["backbone", "checkpoint", "task", "variant", "finished"], kind="stable").reset_index(
        drop=True
    )


def _all_entries(dirs: list[Path]) -> list[Entry]:
    coll, out = Collection(), []
    for path in result_files(dirs, coll):
        try:
            out.append(load_entry(path))
        except DataError as err:
            coll.skipped.append(str(err))
    for line in coll.skipped:
        log.warning("skipped %s", line)
    return out


def _row(e: Entry) -> dict:
    r = e.result
    interval = e.interval(r.main_metric)
    selected = r.selected if isinstance(r.selected, dict) else {}
    row = {
        "backbone": r.backbone,
        "checkpoint": e.checkpoint,
        "task": r.task,
        "task_version": str(r.task_version),
        "variant": e.variant,
        "status": r.status,
        "main_metric": r.main_metric,
        "score": _float(r.main_score) if r.ok else np.nan,
        "low": interval.low if interval else np.nan,
        "high": interval.high if interval else np.nan,
        "flags": ", ".join(e.flags),
        "num_params": r.num_params,
        "num_layers": r.num_layers,
        "layer": selected.get("layer") if isinstance(selected.get("layer"), int) else None,
        "seed": r.seed,
        "wall_seconds": _float(r.wall_seconds),
        "finished": e.finished,
        "mini_overrides": e.mini_overrides,
        "error": r.error,
        "path": str(e.path),
    }
    row |= {f"metric.{k}": _float(v) for k, v in r.metrics.items() if _is_number(v)}
    return row


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _float(value: object) -> float:
    return float(value) if _is_number(value) else np.nan
