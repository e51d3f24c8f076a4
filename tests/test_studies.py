"""`toto-pretrain study NAME`: the paper's studies run end to end at `--size test`, and their outputs.

Run: python -m pytest tests/test_studies.py -q            (the report's rules and the full-size plan)
     python -m pytest tests/test_studies.py -q -m slow    (all six studies at test size, a few minutes)

The test size trains for a handful of steps, so its numbers mean nothing; what is checked is the shape of what a
study writes: the paper's numbers beside ours in table.md / table.csv, the figure, the README's findings.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from toto_eval.pretrain.cli import main
from toto_eval.pretrain.studies import STUDIES, run_study
from toto_eval.pretrain.studies.report import Finding, Outcome, TableRow, markdown_table

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study_cache(tmp_path_factory):
    """One corpus, shard set and run cache for the module: studies share them as they do at mini size."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOTO_EVAL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        mp.setenv("OMP_NUM_THREADS", "1")
        yield


def read_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "table.csv", newline="") as f:
        return list(csv.DictReader(f))


def check_outputs(folder: Path, name: str) -> list[dict[str, str]]:
    for file in ("table.md", "table.csv", "figure.png", "README.md"):
        assert (folder / file).is_file(), file
    assert (folder / "figure.png").read_bytes()[:8] == PNG
    readme = (folder / "README.md").read_text()
    assert f"toto-pretrain study {name} --size test" in readme
    assert "reproduced in direction" in readme and "Wall time" in readme and "one thread" in readme
    rows = read_rows(folder)
    assert rows and {"setting", "paper", "paper_source", "ours"} <= set(rows[0])
    return rows


@pytest.mark.slow  # a corpus, shards, a short pre-training and probes: about a minute idle, more under load
def test_probe_and_frames_at_test_size(tmp_path, study_cache):
    probe = check_outputs(run_study("probe", "test", tmp_path / "probe"), "probe")
    assert [r["paper"] for r in probe] == ["61.1", "53.2", ""]  # Table 5; the untrained twin is ours alone
    assert all(0.0 <= float(r["ours"]) <= 100.0 for r in probe)
    assert [r["paper_source"] for r in probe] == ["Table 5 (summary)"] * 2 + ["not reported"]

    frames = check_outputs(run_study("frames", "test", tmp_path / "frames"), "frames")
    assert [r["setting"] for r in frames] == [f"frame {i}" for i in range(8)]
    assert all(r["paper"] == "" and r["ours"] for r in frames)  # the paper plots curves, gives no numbers
    assert "Fig. 10 (curves only)" in (tmp_path / "frames" / "table.md").read_text()


def test_markdown_says_where_the_paper_is_silent_and_what_was_not_run():
    outcome = Outcome(
        title="t",
        paper_label="p",
        ours_label="o",
        rows=(TableRow("a", paper=None, ours=1.25), TableRow("b", paper=2.0, ours=None, interval=None)),
        findings=(Finding("c", "d", None),),
        measured="m",
        draw=lambda fig: None,
    )
    lines = markdown_table(outcome).splitlines()
    assert lines[2].startswith("| a | not reported |") and "| 1.2 |" in lines[2]
    assert lines[3].startswith("| b | 2.0 |") and "not run" in lines[3]


def test_full_size_prints_the_paper_scale_commands(capsys):
    assert main(["study", "scaling", "--size", "full"]) == 0
    out = capsys.readouterr().out
    assert "torchrun" in out and "--model 1b" in out and "scaling-fit" in out and "not run" in out


def test_unknown_study_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["study", "nope", "--size", "test"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", [s for s in STUDIES if s not in ("probe", "frames")])
def test_every_study_at_test_size(tmp_path, study_cache, name):
    rows = check_outputs(run_study(name, "test", tmp_path / name), name)
    assert any(r["paper"] for r in rows) and any(r["ours"] for r in rows)
