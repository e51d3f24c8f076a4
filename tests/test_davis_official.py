"""Our DAVIS scoring against golden numbers produced by the official davis2017-evaluation code.

tests/assets/davis/tree is a small DAVIS root plus predictions (void pixels, non-contiguous ids, a vanishing object,
an empty prediction, a missing object, border-touching masks, a perfect sequence, several boundary radii);
tests/assets/davis/official.json is the official `DAVISEvaluation(..., 'semi-supervised', 'val').evaluate()` on it
(regenerate both with `python tests/assets/davis/make_fixture.py --official <clone>`).

Run: python -m pytest tests/test_davis_official.py -q
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from toto_eval.tasks.davis.data import load_sequence, read_annotations, read_labels
from toto_eval.tasks.davis.scoring import score_folder

ASSETS = Path(__file__).parent / "assets" / "davis"


@pytest.fixture(scope="module")
def golden():
    return json.loads((ASSETS / "official.json").read_text())


@pytest.fixture(scope="module")
def ours():
    return score_folder(ASSETS / "tree" / "DAVIS", ASSETS / "tree" / "predictions")


def test_per_object_statistics_equal_the_official_code(golden, ours):
    assert [o.name for o in ours.objects] == golden["objects"]
    largest = 0.0
    for i, obj in enumerate(ours.objects):
        stats = obj.stats()
        for metric in ("J", "F"):
            for key, label in (("M", "Mean"), ("R", "Recall"), ("D", "Decay")):
                largest = max(largest, abs(stats[f"{metric}-{label}"] - golden["stats"][key][metric][i]))
    print(f"largest |ours - official| over per-object J/F mean, recall, decay: {largest:.3g}")
    assert largest <= 1e-12


def test_global_row_equals_the_official_code(golden, ours):
    row = ours.global_row()
    for key, value in golden["global"].items():
        assert row[key] == pytest.approx(value, abs=1e-12), key


def test_stored_tree_matches_its_generator(tmp_path):
    spec = importlib.util.spec_from_file_location("davis_fixture", ASSETS / "make_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    davis, preds = module.build(tmp_path)
    for name in (davis / "ImageSets" / "2017" / "val.txt").read_text().split():
        stored = ASSETS / "tree" / "DAVIS"
        np.testing.assert_array_equal(
            read_annotations(load_sequence(davis, name)), read_annotations(load_sequence(stored, name))
        )
        for png in sorted((preds / name).iterdir()):
            np.testing.assert_array_equal(
                read_labels(png), read_labels(ASSETS / "tree" / "predictions" / name / png.name)
            )
