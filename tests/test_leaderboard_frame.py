"""`load_results`: one DataFrame row per result file, identity and provenance columns, `metric.<key>` columns.

Run: python -m pytest tests/test_leaderboard_frame.py -q
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from toto_eval.leaderboard import load_results
from toto_eval.leaderboard.frame import COLUMNS


def write(root: Path, backbone: str, task: str, score: float | None, metrics: dict, **fields) -> Path:
    doc = {
        "backbone": backbone, "checkpoint": fields.pop("checkpoint", "builtin"), "task": task, "task_version": "1",
        "status": "ok", "main_metric": fields.pop("main", "top1"), "main_score": score, "metrics": metrics,
        "num_params": 2_500_000, "num_layers": 4, "seed": 0, "wall_seconds": 1.5,
        "provenance": {"finished": fields.pop("finished", "2026-01-01T00:00:00+0000")},
    } | fields  # fmt: skip
    path = root / backbone / Path(doc["checkpoint"]).name / f"{task}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_one_row_per_file_with_metrics_as_columns(tmp_path):
    iv = {"top1": {"low": 0.7, "high": 0.8, "level": 0.95, "method": "bootstrap", "n": 500}}
    a = write(tmp_path / "a", "toto_tiny", "imagenet_probe", 0.75, {"top1": 0.75, "top5": 0.9}, intervals=iv,
              selected={"layer": 3}, flags={"mini": True, "limited": False}, checkpoint="/w/toto_tiny")  # fmt: skip
    cater = {"top1": 0.4, "l1": 1.2, "n_hidden": 24, "note": "text"}
    write(tmp_path / "b", "toto_tiny", "cater", 0.4, cater, config={"frames": 32}, mini_overrides={"epochs": 5},
          checkpoint="/w/toto_tiny")  # fmt: skip
    write(tmp_path / "b", "zeta", "davis", None, {}, main="J&F-Mean", status="failed", error="missing frame")
    (tmp_path / "b" / "zeta" / "builtin" / "broken.json").write_text("{")
    df = load_results([tmp_path / "a", str(tmp_path / "b")])
    assert isinstance(df, pd.DataFrame) and len(df) == 3  # the broken file is logged and left out
    assert list(df.columns) == [*COLUMNS, "metric.l1", "metric.n_hidden", "metric.top1", "metric.top5"]
    assert list(zip(df["backbone"], df["task"], strict=True)) == [
        ("toto_tiny", "cater"), ("toto_tiny", "imagenet_probe"), ("zeta", "davis")
    ]  # fmt: skip
    probe = df[df["task"] == "imagenet_probe"].iloc[0]
    assert (probe["score"], probe["low"], probe["high"], probe["layer"]) == (0.75, 0.7, 0.8, 3)
    assert probe["flags"] == "mini" and probe["checkpoint"] == "toto_tiny" and probe["path"] == str(a)
    assert probe["metric.top5"] == 0.9 and math.isnan(probe["metric.l1"]) and probe["variant"] == ""
    assert probe["finished"] == pd.Timestamp("2026-01-01", tz="UTC") and probe["wall_seconds"] == 1.5
    row = df[df["task"] == "cater"].iloc[0]
    assert row["variant"] == "32f" and row["metric.n_hidden"] == 24 and row["mini_overrides"] == {"epochs": 5}
    assert math.isnan(row["low"])  # no interval: NaN, not zero
    failed = df[df["status"] == "failed"].iloc[0]
    assert math.isnan(failed["score"]) and failed["error"] == "missing frame" and failed["main_metric"] == "J&F-Mean"
    assert df.dtypes["metric.top1"] == "float64" and df.dtypes["score"] == "float64"


def test_duplicates_are_all_kept_unless_newest_only(tmp_path):
    write(tmp_path / "a", "m", "imagenet_probe", 0.3, {"top1": 0.3}, finished="2026-01-01T00:00:00+0000")
    write(tmp_path / "b", "m", "imagenet_probe", 0.4, {"top1": 0.4}, finished="2026-02-01T00:00:00+0000")
    both = load_results([tmp_path / "a", tmp_path / "b"])
    assert list(both["score"]) == [0.3, 0.4]  # oldest first within a key
    assert list(load_results([tmp_path / "b", tmp_path / "a"], newest_only=True)["score"]) == [0.4]
    empty = load_results(tmp_path / "nothing-here")
    assert empty.empty and list(empty.columns) == COLUMNS
