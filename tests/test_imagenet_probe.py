"""End to end through the CLI on the image task: the mini layout, results, cache hits, determinism, and one-line
errors for bad input that leave earlier results alone.

Run: python -m pytest tests/test_imagenet_probe.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toto_eval.harness.cli import main
from toto_eval.tasks.imagenet_probe.mini import MARGIN, SIZE, make_mini, render, wheel_photos

FAST = ["--set", "imagenet_probe.probe.epochs=2", "--layers", "0,-1", "--no-progress", "--batch-size", "64"]


def _run(tmp_path: Path, cache: Path, *extra: str) -> int:
    return main(
        [
            "run",
            "--backbone",
            "toto_test",
            "--tasks",
            "imagenet_probe",
            "--cache-dir",
            str(cache),
            "--results-dir",
            str(tmp_path / "results"),
            *FAST,
            *extra,
        ]
    )


def _result(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "results/toto_test/random-init/imagenet_probe.json").read_text())


def _tiny_imagenet(root: Path, classes: int = 3, per_class: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / "imagenet" / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = (rng.random((20, 24, 3)) * 80 + c * 80).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"n{c:08d}_{i}.JPEG")
    return root


def test_mini_layout_is_imagenet_shaped(tmp_path):
    make_mini(tmp_path)
    train = sorted(p.name for p in (tmp_path / "train").iterdir())
    assert len(train) == 10 and train == sorted(p.name for p in (tmp_path / "val").iterdir())
    files = list(tmp_path.glob("*/*/*.JPEG"))
    assert len(files) == 1797  # every scikit-learn digit, once
    assert Image.open(files[0]).size == (64, 64)


def test_mini_digit_is_inside_the_centre_crop_and_stands_out():
    flat = (np.full((100, 100, 3), 128, dtype=np.uint8),)  # one mid-grey "photo": the ink is all that differs
    scan = np.zeros((8, 8))
    scan[1:7, 3:5] = 16  # a "1"
    for seed in range(20):
        image = np.asarray(render(scan, flat, np.random.default_rng(seed)), dtype=np.float32) / 255
        ink = np.abs(image - 128 / 255).max(-1) > 0.2
        ys, xs = np.nonzero(ink)
        assert ink.sum() > 20 and ys.min() >= MARGIN - 1 and xs.min() >= MARGIN - 1
        assert ys.max() <= SIZE - MARGIN and xs.max() <= SIZE - MARGIN
        assert np.percentile(np.abs(image[ink].mean(-1) - 128 / 255), 90) > 0.3  # full ink: >= 0.35 off the grey


def test_mini_pixels_cannot_read_the_digits():
    """Version 1 drew large digits on flat colours: pixels alone read them. Now a linear probe on raw pixels
    (16x16, where a digit is 5-8 px and anywhere) stays near chance, while the task is still well posed."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    rng = np.random.default_rng(0)
    photos = wheel_photos()
    small = [render(im, photos, rng).resize((16, 16), Image.BILINEAR) for im in digits.images[:900]]
    x = np.stack([np.asarray(im, np.float32).ravel() / 255 for im in small])
    y = digits.target[:900]
    probe = LogisticRegression(C=0.1, max_iter=2000).fit(x[:700], y[:700])
    assert (probe.predict(x[700:]) == y[700:]).mean() < 0.3  # chance is 0.1; version 1 scored about 0.9 here


def test_mini_run_then_cached_rerun(tmp_path, mini_cache):
    assert _run(tmp_path, mini_cache) == 0
    first = _result(tmp_path)
    assert first["status"] == "ok" and first["flags"] == {"limited": False, "random_init": True, "mini": True}
    assert {r["layer"] for r in first["per_layer"]} == {0, 3} and len(first["per_layer"]) == 8
    assert first["main_score"] == first["metrics"]["top1"] > 0.1  # above chance (10 classes)
    ci = first["intervals"]["top1"]
    assert ci["low"] <= first["main_score"] <= ci["high"] and ci["method"] == "bootstrap" and ci["n"] == 363
    assert all(row["test_top1_ci"][0] <= row["test_top1"] <= row["test_top1_ci"][1]
               for row in first["per_layer"] if "test_top1_ci" in row)  # fmt: skip
    for key in ("task_version", "fingerprint", "provenance", "config", "data", "seed", "wall_seconds"):
        assert first[key] not in (None, "", {})
    assert _run(tmp_path, mini_cache) == 0
    second = _result(tmp_path)
    assert all(s["computed"] == 0 for s in second["extra"]["cache"].values())  # no backbone forward at all
    assert second["metrics"] == first["metrics"] and second["per_layer"] == first["per_layer"]


def test_limit_is_a_flagged_seeded_subset(tmp_path, mini_cache):
    assert _run(tmp_path, mini_cache, "--limit", "200") == 0
    result = _result(tmp_path)
    assert result["flags"]["limited"] and result["data"]["train"]["evaluated"] == 200


def test_corrupt_image_is_skipped_and_named(tmp_path, capsys):
    root = _tiny_imagenet(tmp_path / "data", per_class=30)
    bad = root / "imagenet/train/n00000001/n00000001_0.JPEG"
    bad.write_bytes(b"not a jpeg")
    assert _run(tmp_path, tmp_path / "cache", "--data-root", str(root)) == 0
    result = _result(tmp_path)
    assert list(result["data"]["train"]["unreadable"].values()) == [
        f"{bad}: cannot decode image (cannot identify image file '{bad}')"
    ]
    assert f"skipped: {bad}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("breakage", "message"),
    [("empty_class", "empty class folder"), ("no_val", "missing split folder 'val'")],
)
def test_bad_layout_fails_the_task_with_one_line(tmp_path, capsys, breakage, message):
    root = _tiny_imagenet(tmp_path / "data")
    if breakage == "empty_class":
        for f in (root / "imagenet/val/n00000002").iterdir():
            f.unlink()
    else:
        for f in (root / "imagenet/val").glob("*/*"):
            f.unlink()
        for d in (root / "imagenet/val").iterdir():
            d.rmdir()
        (root / "imagenet/val").rmdir()
    assert _run(tmp_path, tmp_path / "cache", "--data-root", str(root)) == 1
    result = _result(tmp_path)
    assert result["status"] == "failed" and message in result["error"] and "\n" not in result["error"]
    assert "Traceback" not in capsys.readouterr().err


def test_cli_errors_are_one_line_and_keep_results(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    keep = results / "keep.json"
    keep.write_text("{}")
    cases = [
        (["--backbone", "toto_tst", "--tasks", "imagenet_probe"], "did you mean toto_test"),
        (["--backbone", "toto_test", "--tasks", "imagenet_prob"], "did you mean imagenet_probe"),
        (
            ["--backbone", "toto_test", "--tasks", "imagenet_probe", "--data-root", str(tmp_path / "nope")],
            "dataset folder not found",
        ),
        (["--backbone", "toto_large", "--tasks", "imagenet_probe"], "pass --checkpoint PATH"),
        (["--backbone", "toto_test", "--tasks", "imagenet_probe", "--set", "imagenet_probe.epoch=1"], "unknown key"),
        (["--backbone", "toto_test", "--checkpoint", str(tmp_path / "missing")], "checkpoint not found"),
    ]
    for args, message in cases:
        code = main(["run", *args, "--results-dir", str(results), "--cache-dir", str(tmp_path / "c"), "--no-progress"])
        err = capsys.readouterr().err
        if "dataset folder" in message:  # a per-task failure: recorded, the run exits 1
            assert code == 1
            assert message in _fail_reason(results)
        else:
            errors = [line for line in err.splitlines() if line.startswith("toto-eval: error:")]
            assert code == 2 and len(errors) == 1 and message in errors[0] and "Traceback" not in err
    assert keep.read_text() == "{}"


def _fail_reason(results: Path) -> str:
    return json.loads(next(results.glob("toto_test/*/imagenet_probe.json")).read_text())["error"]
