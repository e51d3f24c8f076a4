"""Leaderboard: collecting result files, the tables' numbers, the renderers, the figures and the CLI.

Run: python -m pytest tests/test_leaderboard.py -q
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pandas as pd
import pytest

from toto_eval.harness import cli
from toto_eval.harness.results import TaskResult, write_result
from toto_eval.leaderboard import figures, render
from toto_eval.leaderboard.collect import collect
from toto_eval.leaderboard.reference import normaliser, reference_rows
from toto_eval.leaderboard.tables import build_tables


def put(root: Path, backbone: str, task: str, score: float | None, metrics: dict, **kw) -> Path:
    """Write one result file; `finished` sets the provenance time that decides which duplicate is newest."""
    finished = kw.pop("finished", "2026-01-01T00:00:00+0000")
    result = TaskResult(
        backbone=backbone,
        checkpoint=kw.pop("checkpoint", "builtin"),
        task=task,
        task_version=kw.pop("version", "1"),
        status=kw.pop("status", "ok"),
        main_metric=kw.pop("main", "top1"),
        main_score=score,
        metrics=metrics,
        num_params=kw.pop("num_params", 2_500_000),
        num_layers=kw.pop("num_layers", 4),
        provenance={"finished": finished},
        **kw,
    )
    return write_result(result, root)


def tables_by_name(tables) -> dict:
    return {t.name: t for t in tables}


def row(frame: pd.DataFrame, model: str, source: str = "measured") -> pd.Series:
    hits = frame[(frame["model"] == model) & (frame["source"].str.startswith(source))]
    assert len(hits) == 1, hits
    return hits.iloc[0]


def test_malformed_and_partial_files_are_named_and_skipped(tmp_path):
    good = put(tmp_path, "toto_test", "imagenet_probe", 0.5, {"top1": 0.5})
    (tmp_path / "x" / "y").mkdir(parents=True)
    (tmp_path / "x" / "y" / "broken.json").write_text("{not json")
    (tmp_path / "x" / "y" / "other.json").write_text(json.dumps({"hello": 1}))
    (tmp_path / "predictions" / "davis" / "seq").mkdir(parents=True)
    (tmp_path / "predictions" / "davis" / "seq" / "a.json").write_text("[]")  # not in the layout: not a result
    partial = put(tmp_path, "toto_half", "imagenet_probe", None, {})  # "ok" but no score: an interrupted writer
    coll = collect([tmp_path])
    assert [e.path for e in coll.entries] == [good]
    skipped = "\n".join(coll.skipped)
    assert len(coll.skipped) == 3
    for path in (tmp_path / "x" / "y" / "broken.json", tmp_path / "x" / "y" / "other.json", partial):
        assert str(path) in skipped
    assert "partial result" in skipped
    overall = tables_by_name(build_tables(coll, reported=False))["overall"]
    assert list(overall.frame["model"]) == ["toto_test"]
    assert any("broken.json" in line for line in tables_by_name(build_tables(coll))["overall"].footer)


def test_duplicates_resolve_to_the_newest_with_a_note(tmp_path):
    old = put(tmp_path / "a", "toto_test", "imagenet_probe", 0.30, {"top1": 0.30}, finished="2026-01-01T00:00:00+0000")
    new = put(tmp_path / "b", "toto_test", "imagenet_probe", 0.40, {"top1": 0.40}, finished="2026-02-01T00:00:00+0000")
    for dirs in ([tmp_path / "a", tmp_path / "b"], [tmp_path / "b", tmp_path / "a"]):
        coll = collect(dirs)
        assert [e.path for e in coll.entries] == [new]
        assert len(coll.notes) == 1 and str(new) in coll.notes[0] and str(old) in coll.notes[0]


def test_task_versions_are_never_merged_into_one_column(tmp_path):
    put(tmp_path / "a", "toto_test", "imagenet_probe", 0.30, {"top1": 0.30}, version="1")
    put(tmp_path / "b", "toto_test", "imagenet_probe", 0.40, {"top1": 0.40}, version="2")
    tables = tables_by_name(build_tables(collect([tmp_path / "a", tmp_path / "b"]), reported=False))
    measured = row(tables["overall"].frame, "toto_test")
    assert measured["imagenet_probe v1"] == pytest.approx(30.0) and measured["imagenet_probe v2"] == pytest.approx(40.0)
    task = row(tables["imagenet_probe"].frame, "toto_test")
    assert task["top-1 v1"] == pytest.approx(30.0) and task["top-1 v2"] == pytest.approx(40.0)


def test_flagged_runs_are_hidden_unless_asked_for(tmp_path):
    put(tmp_path, "toto_test", "imagenet_probe", 0.5, {"top1": 0.5})
    put(tmp_path, "toto_base", "imagenet_probe", 0.1, {"top1": 0.1}, flags={"random_init": True, "mini": True})
    coll = collect([tmp_path])
    hidden = tables_by_name(build_tables(coll, reported=False))["overall"]
    assert list(hidden.frame["model"]) == ["toto_test"]
    assert any("1 flagged result" in line for line in hidden.footer)
    shown = tables_by_name(build_tables(coll, include_flagged=True, reported=False))["overall"]
    assert row(shown.frame, "toto_base")["flags"] == "random_init, mini"


def test_overall_aggregate_is_the_mean_of_toto_large_normalised_scores(tmp_path):
    put(tmp_path, "mine", "imagenet_probe", 0.711, {"top1": 0.711})  # = Toto-large's 71.1 -> 100
    davis = {"J&F-Mean": 0.224, "J-Mean": 0.2, "F-Mean": 0.248}  # half of Toto-large's 44.8 at 256/8 -> 50
    put(tmp_path, "mine", "davis", 0.224, davis, main="J&F-Mean", config={"resolution": "toto256"})
    put(tmp_path, "mine", "robot", 0.5, {"success": 0.5}, main="success")  # no Toto-large number: not aggregated
    overall = tables_by_name(build_tables(collect([tmp_path])))["overall"]
    mine = row(overall.frame, "mine")
    assert mine["imagenet_probe"] == pytest.approx(71.1)
    assert mine["davis [toto256]"] == pytest.approx(22.4)
    assert math.isnan(mine["k400_probe"])  # missing is missing, and the column is still there
    assert mine["aggregate"] == pytest.approx(75.0)
    assert mine["tasks"] == f"3/{len(overall.frame.columns) - 7}"
    assert mine["params (M)"] == pytest.approx(2.5)
    large = row(overall.frame, "Toto-large", "reported")
    assert large["aggregate"] == pytest.approx(100.0) and large["ego4d_sta"] == pytest.approx(2.70)
    assert any("robot" in line and "not in the aggregate" in line for line in overall.footer)


def test_reported_rows_are_labelled_and_can_be_turned_off(tmp_path):
    put(tmp_path, "mine", "imagenet_probe", 0.5, {"top1": 0.5})
    refs = reference_rows()
    assert {r.table for r in refs} == {7, 8, 9, 10, 11, 12}
    assert normaliser("cater", "top1", "32f", "16f").value == 72.9
    assert normaliser("davis", "J&F-Mean", "backbone", "toto256").value == 44.8
    with_refs = tables_by_name(build_tables(collect([tmp_path])))
    assert set(with_refs["overall"].frame["source"]) > {"measured"}
    assert row(with_refs["k400_probe"].frame, "Toto-1b", "reported")["top-1"] == pytest.approx(74.4)
    without = tables_by_name(build_tables(collect([tmp_path]), reported=False))
    assert set(without["overall"].frame["source"]) == {"measured"}
    assert "k400_probe" not in without


def test_task_tables_degrade_gracefully(tmp_path):
    put(tmp_path / "a", "mine", "cater", 0.40, {"top1": 0.40, "l1": 1.25, "renamed_top5": 0.9}, config={"frames": 16})
    put(tmp_path / "b", "mine", "cater", 0.55, {"top1": 0.55}, config={"frames": 32})
    put(tmp_path / "a", "mine", "ego4d_sta", 2.5, {}, main="overall")  # no per-metric numbers at all
    put(tmp_path / "a", "mine", "toy_probe", 0.7, {"acc": 0.7, "note": "text"}, main="acc")  # unknown task
    put(tmp_path / "a", "mine", "davis", None, {}, main="J&F-Mean", status="failed", error="missing frame 00003.jpg")
    tables = tables_by_name(build_tables(collect([tmp_path / "a", tmp_path / "b"])))
    cater = row(tables["cater"].frame, "mine")
    assert cater["top-1 (16f)"] == pytest.approx(40.0) and cater["top-1 (32f)"] == pytest.approx(55.0)
    assert cater["L1 (16f)"] == pytest.approx(1.25)  # a distance: not scaled
    assert row(tables["cater"].frame, "Toto-large", "reported")["top-1 (32f)"] == pytest.approx(72.9)
    assert "top-5 (16f)" not in tables["cater"].frame.columns  # no row has it: dropped, not a column of dashes
    ego = row(tables["ego4d_sta"].frame, "mine")
    assert math.isnan(ego["N+V"]) and ego["overall"] != ego["overall"]  # main column kept, value missing
    assert row(tables["overall"].frame, "mine")["ego4d_sta"] == pytest.approx(2.5)
    assert row(tables["toy_probe"].frame, "mine")["acc"] == pytest.approx(0.7)
    assert any("failed: mine/builtin davis: missing frame" in line for line in tables["overall"].footer)


def test_renderers(tmp_path):
    put(tmp_path, "mine", "davis", 0.3, {"J&F-Mean": 0.3, "J-Mean": 0.25, "F-Mean": 0.35}, main="J&F-Mean")
    tables = build_tables(collect([tmp_path]))
    md = render.markdown(tables)
    assert "| mine | builtin | measured |  | 2.50 |" in md and "—" in md
    tex = render.latex(tables)
    assert tex.count("\\begin{tabular}") == len(tables) and "\\toprule" in tex and "\\bottomrule" in tex
    assert "J\\&F" in tex and "J&F" not in tex.replace("J\\&F", "")
    page = render.html_page(tables)
    assert "http" not in page.replace("http-equiv", "") and "<script src" not in page
    assert page.count('<table id="') == len(tables)
    render.write_csv(tables[0], tmp_path / "overall.csv")
    back = pd.read_csv(tmp_path / "overall.csv")
    assert list(back.columns) == [*tables[0].frame.columns, "marks"]  # no intervals here; the paper's marks
    assert back.loc[back["model"] == "mine", "davis"].item() == pytest.approx(30.0)
    assert back.loc[back["model"] == "Toto-base", "marks"].item() == "davis [toto256]: ‡"


def test_layer_curve_selects_each_layer_on_holdout(tmp_path):
    heads = [
        {"layer": 0, "lr": 1e-3, "holdout_top1": 0.2, "test_top1": 0.10},
        {"layer": 0, "lr": 1e-2, "holdout_top1": 0.3, "test_top1": 0.05},  # best on holdout, worse on test
        {"layer": 1, "lr": 1e-3, "holdout_top1": 0.4, "test_top1": 0.30},
    ]
    put(tmp_path, "mine", "imagenet_probe", 0.3, {"top1": 0.3}, per_layer=heads, num_layers=2)
    (entry,) = collect([tmp_path]).entries
    curve = figures.layer_curve(entry)
    assert [(p.depth, p.score) for p in curve] == [(0.5, pytest.approx(5.0)), (1.0, pytest.approx(30.0))]
    assert all(math.isnan(p.low) and math.isnan(p.high) for p in curve)  # an older file: no intervals
    paths = figures.probe_depth([entry], tmp_path / "a") + figures.probe_depth([entry], tmp_path / "b")
    assert [p.name for p in paths] == ["probe_depth.png", "probe_depth.svg"] * 2
    assert paths[1].read_bytes() == paths[3].read_bytes()  # deterministic SVG


def test_robot_curve_averages_bc_seeds(tmp_path):
    curve = [{"demos": 5, "bc_seed": 0, "success": 0.2}, {"demos": 5, "bc_seed": 1, "success": 0.4},
             {"demos": 10, "bc_seed": 0, "success": 0.8}]  # fmt: skip
    references = {"state": {"success": 0.75}, "proprio": {"success": 0.25}}
    extra = {"tasks": {"franka_pick": {"curve": curve, **references}, "kuka_pick": {"proprio": None}, "broken": "x"}}
    put(tmp_path, "mine", "robot", 0.5, {"success": 0.5}, main="success", extra=extra)
    (entry,) = collect([tmp_path]).entries
    assert figures.robot_curves(entry) == {"franka_pick": [(5, pytest.approx(30.0)), (10, pytest.approx(80.0))]}
    assert figures.robot_references(entry) == {"franka_pick": {"state": 75.0, "proprio": 25.0}}
    assert [p.name for p in figures.robot_demos([entry], tmp_path)] == ["robot_demos.png", "robot_demos.svg"]


def test_cli_writes_every_format_and_names_skipped_files(tmp_path, capsys):
    put(tmp_path / "r", "mine", "imagenet_probe", 0.5, {"top1": 0.5}, flags={"mini": True})
    (tmp_path / "r" / "mine" / "builtin" / "bad.json").write_text("[]")
    out = tmp_path / "out"
    argv = ["leaderboard", "--results-dir", str(tmp_path / "r"), "--out", str(out), "--include-flagged", "--figures"]
    records = _Records()
    logging.getLogger("toto_eval.leaderboard.cli").addHandler(records)
    try:
        assert cli.main(argv) == 0
    finally:
        logging.getLogger("toto_eval.leaderboard.cli").removeHandler(records)
    listed = capsys.readouterr().out.split()
    for name in ("leaderboard.md", "leaderboard.tex", "leaderboard.html", "csv/overall.csv", "csv/cater.csv"):
        assert (out / name).is_file() and str(out / name) in listed, name
    assert str(out / "csv" / "table5.csv") in listed  # the reported ablations
    assert any(r.levelno == logging.WARNING and "bad.json" in r.getMessage() for r in records.records)
    assert "bad.json" in (out / "leaderboard.md").read_text()  # also in the overall table's footer
    assert cli.main([*argv[:5], "--formats", "md,pdf"]) == 2


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_cli_help_shows_every_flag_with_its_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["leaderboard", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--results-dir", "--out", "--formats", "--include-flagged", "--no-reported", "--figures"):
        assert flag in text
    assert "(default: md,csv,tex,html)" in text and "(default: toto-eval leaderboard)" in text
    assert "(default: results)" in text and "default: None" not in text and "default: False" not in text


def test_scaling_figure_from_pretrain_runs(tmp_path):
    for name, offset in (("small", 0.0), ("big", 0.5)):
        lines = ["flops,loss"] + [
            f"{10 ** (e + offset):.6g},{7.3 * (10 ** (e + offset)) ** -0.04:.6g}" for e in range(8, 12)
        ]
        (tmp_path / f"{name}.csv").write_text("\n".join(lines) + "\n")
    paths = figures.scaling([tmp_path / "small.csv", tmp_path / "big.csv"], tmp_path / "fig")
    assert [p.name for p in paths] == ["scaling.png", "scaling.svg"] and paths[0].stat().st_size > 1000
