"""The paper's reported rows: Tables 7-12 checked against the paper summary, the ablation studies (Tables 3-6, 13,
14, 16, Figure 9) as their own tables, measured rows matched to a study's setting, and marked self-disagreements.

Run: python -m pytest tests/test_leaderboard_ablations.py -q
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from toto_eval.common.errors import DataError
from toto_eval.harness import cli
from toto_eval.leaderboard import render
from toto_eval.leaderboard.collect import collect
from toto_eval.leaderboard.reference import ablation_rows, reference_rows, studies
from toto_eval.leaderboard.tables import build_tables

# Numbers the paper summary states (shared/seeds/000_673293ca44dd3c1a.txt), by table: the rows marked "summary".
SUMMARY = {
    "Table 3": [61.3, 61.2, 60.6, 53.2],
    "Table 4": [61.2, 63.2, 64.4],
    "Table 5": [53.2, 61.1],
    "Table 6": [53.2, 48.5, 40.7],
    "Table 8": [59.3, 65.3, 74.4],
    "Table 13": [82.6],
    "Table 14": [65.2, 66.2],
    "Table 16": [61.2, 65.8, 74.8],
}


def write(root: Path, backbone: str, task: str, score: float, **fields) -> Path:
    doc = {
        "backbone": backbone, "checkpoint": "builtin", "task": task, "task_version": "1", "status": "ok",
        "main_metric": "top1", "main_score": score, "metrics": {"top1": score}, "num_params": 2_500_000,
    } | fields  # fmt: skip
    path = root / backbone / "builtin" / f"{task}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_reported_rows_cite_their_table_and_match_the_summary():
    rows = ablation_rows()
    assert Counter(r.table for r in rows) == {
        "Table 3": 6, "Table 4": 4, "Table 5": 2, "Table 6": 3, "Table 13": 5, "Table 14": 2, "Table 8": 3,
        "Table 16": 3, "Figure 9": 1, "Section 4.9": 1,
    }  # fmt: skip
    for table, numbers in SUMMARY.items():
        stated = sorted(v for r in rows if r.table == table and r.checked == "summary" for v in r.values.values())
        assert stated == sorted(numbers), table
    fits = {r.model: r.values for r in rows if r.study == "figure9"}
    assert fits == {"Toto": {"a": 7.32, "b": -0.0378}, "GPT-3": {"a": 2.57, "b": -0.048}}
    for study in studies():
        mine = [r for r in rows if r.study == study.name]
        assert mine and all(set(r.setting) == set(study.columns) for r in mine), study.name
        if study.match:  # a measured result joins by key: keys must say which setting a row is
            assert len({r.key for r in mine}) == len({tuple(r.setting[c] for c in study.varied) for r in mine})
    table12 = [r for r in reference_rows() if r.table == 12 and r.model == "Toto-large"]
    assert {(r.variant, r.value, r.mark) for r in table12} == {("16f", 62.8, ""), ("32f", 72.9, "‡")}
    checked = Counter(r.checked for r in reference_rows())
    assert checked == {"summary": 24, "secondary": 56}


def test_each_study_is_its_own_table_with_measured_rows_beside_the_paper(tmp_path):
    iv = {"top1": {"low": 0.5, "high": 0.7, "level": 0.95, "method": "bootstrap", "n": 300}}
    write(tmp_path, "mine", "imagenet_probe", 0.6, config={"probe": "linear"}, intervals=iv)
    write(tmp_path, "other", "imagenet_probe", 0.7, config={"probe": "attentive"})
    write(tmp_path, "vid", "k400_probe", 0.3, config={"probe": "attentive"})
    write(tmp_path, "odd", "k400_probe", 0.2, config={"probe": "some_new_head"})  # no such setting in the paper
    tables = {t.name: t for t in build_tables(collect([tmp_path]), fits=[("my runs", 9.5, -0.05)])}
    names = [n for n in tables if n.startswith(("table", "figure"))]
    assert names == ["table3", "table4", "table5", "table6", "table13", "table14", "table16", "figure9"]
    five = tables["table5"].frame.set_index("model")
    assert five.loc["mine", "pooling"] == "average" and five.loc["mine", "config.probe"] == "linear"
    assert five.loc["other", "pooling"] == "attention" and five.loc["other", "top-1"] == pytest.approx(70.0)
    assert list(tables["table14"].frame["model"]) == ["mine", "iGPT-L", "Toto-1b"]  # only the linear probe joins
    sixteen = tables["table16"].frame
    assert list(sixteen.loc[sixteen["source"] == "measured", "model"]) == ["vid"]
    assert set(sixteen["source"]) == {"measured", "reported (Table 8)", "reported (Table 16)"}
    fit = tables["figure9"].frame.set_index("model")
    assert fit.loc["my runs", "b"] == -0.05 and fit.loc["Toto", "a"] == 7.32 and fit.loc["GPT-3", "b"] == -0.048
    md = render.markdown(list(tables.values()))
    assert "## Reported ablations\n\n### Table 3: tokenisers" in md
    assert "| mine | builtin | measured |  | 2.50 | — | average | linear | 60.0 ± 10.0 |" in md
    assert "| Toto |  | reported (Table 4) |  | — | dVAE/16→32 | 2.13e17 | 50,000 | 64.4 |" in md
    assert "| Toto |  | reported (Figure 9) |  | — | MACs | 7.32 | -0.0378 |" in md
    assert "$\\to$" in render.latex([tables["table4"]])
    assert "not stated in the paper summary (secondary transcription only): DINO [Table 13]" in md
    assert not any(n.startswith("table") for n in (t.name for t in build_tables(collect([tmp_path]), reported=False)))


def test_a_malformed_reference_file_names_itself(tmp_path):
    bad = tmp_path / "ablations.json"
    bad.write_text(json.dumps({"studies": [], "rows": [{"study": "table3", "table": "Table 3", "model": "x"}]}))
    with pytest.raises(DataError, match="ablations.json"):
        ablation_rows(bad)
    bad.write_text(json.dumps({"rows": [{"table": 7, "value": 1.0}]}))
    with pytest.raises(DataError, match=r"ablations.json: rows\[0\]"):
        reference_rows(bad)


def test_pretrain_runs_put_their_fit_beside_figure_9(tmp_path, capsys):
    for name, offset in (("small", 0.0), ("big", 0.5)):
        points = [10 ** (e + offset) for e in range(8, 12)]
        lines = ["flops,loss"] + [f"{c:.6g},{7.3 * c**-0.04:.6g}" for c in points]
        (tmp_path / f"{name}.csv").write_text("\n".join(lines) + "\n")
    argv = ["leaderboard", "--results-dir", str(tmp_path / "none"), "--out", str(tmp_path / "out"), "--formats", "csv"]
    assert cli.main([*argv, "--pretrain-runs", str(tmp_path / "small.csv"), str(tmp_path / "big.csv")]) == 0
    fits = pd.read_csv(tmp_path / "out" / "csv" / "figure9.csv").set_index("model")
    mine = fits.loc["toto-pretrain fit (2 runs)"]
    assert mine["source"] == "measured" and mine["compute unit"] == "FLOPs (training)"
    assert mine["b"] == pytest.approx(-0.04, abs=1e-3) and mine["a"] == pytest.approx(7.3, rel=0.02)
    assert str(tmp_path / "out" / "csv" / "figure9.csv") in capsys.readouterr().out.split()


def test_latex_escapes_every_symbol_the_tables_use():
    tables = build_tables(collect([]))
    tex = render.latex(tables)
    body = tex.split("\n", 1)[1]  # the first line is a comment
    for raw in ("±", "≈", "†", "‡", "→", "—", "<", ">", "->"):
        assert raw not in body, raw
    assert "\\textdaggerdbl{}" in tex and "$\\to$" in tex
