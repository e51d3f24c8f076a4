"""Build the DAVIS scoring fixture in tests/assets/davis/tree and, given a clone of the official evaluator, its
golden numbers in tests/assets/davis/official.json.

    python tests/assets/davis/make_fixture.py                                # the tree only (deterministic)
    python tests/assets/davis/make_fixture.py --official /path/davis2017-evaluation   # + official.json

The tree is a DAVIS root (JPEGImages, palette-PNG Annotations, ImageSets/2017/val.txt) plus a predictions folder,
covering void pixels, non-contiguous ids, an object that vanishes, an empty prediction, an object missing from a
prediction, masks touching the right and bottom borders, a perfect prediction and sizes with different boundary
radii. official.json holds davis2017-evaluation's `DAVISEvaluation(..., 'semi-supervised', 'val').evaluate()`
per-object J and F (mean, recall, decay) at full precision; tests/test_davis_official.py compares ours to it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

HERE = Path(__file__).resolve().parent


def _palette_png(path: Path, labels: np.ndarray) -> None:
    from toto_eval.tasks.davis.data import write_labels

    write_labels(path, labels)


def _blob(rng: np.random.Generator, shape: tuple[int, int], sigma: float, quantile: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.random(shape), sigma)
    return field > np.quantile(field, quantile)


def _moving(rng, n, shape, ids, step=(0, 1)):
    gt = np.zeros((n, *shape), np.uint8)
    for k in ids:
        base = _blob(rng, shape, 3, 0.88)
        for t in range(n):
            gt[t][np.roll(base, (t * step[0], t * step[1]), axis=(0, 1)) & (gt[t] == 0)] = k
    return gt


def _noisy(rng, gt):
    pred = gt.copy()
    for t in range(len(gt)):
        pred[t] = np.roll(pred[t], (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
        pred[t][rng.random(gt.shape[1:]) < 0.01] = 0
    return np.where(pred == 255, 0, pred)


def sequences(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (GT (N, H, W), prediction (N, H, W)) uint8."""
    rng = np.random.default_rng(seed)
    out = {}
    gt = _moving(rng, 8, (40, 64), (1, 3))  # non-contiguous ids: object 2 is always empty
    gt[:, :3, :] = 255  # a void band
    pred = _noisy(rng, gt)
    pred[1:4, :3, :20] = 1  # predicted on void: a false positive
    pred[4:6][pred[4:6] == 3] = 0  # object 3 missing from two predicted frames
    out["void-ids"] = gt, pred
    full = _moving(rng, 9, (48, 64), (1, 2))
    gt = full.copy()
    gt[4:][gt[4:] == 2] = 0  # object 2 vanishes from frame 4 on ...
    pred = _noisy(rng, full)
    pred[6:][pred[6:] == 2] = 0  # ... but is still predicted in frames 4 and 5
    out["vanish"] = gt, pred
    gt = _moving(rng, 6, (36, 50), (1,))
    out["empty-pred"] = gt, np.zeros_like(gt)
    gt = _moving(rng, 7, (64, 96), (1, 2), step=(1, 1))
    gt[:, -8:, -20:] = 1  # touches the right and bottom borders
    pred = _noisy(rng, gt)
    pred[:, -6:, -24:] = 2
    out["border"] = gt, pred
    gt = _moving(rng, 5, (30, 40), (1,))
    out["perfect"] = gt, gt.copy()
    gt = _moving(rng, 12, (240, 320), (1, 2, 3), step=(0, 3))  # radius 4 instead of 1-2
    out["wide"] = gt, _noisy(rng, gt)
    return out


def build(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write the DAVIS root and the predictions folder under `root`; returns their paths."""
    davis, pred_root = root / "DAVIS", root / "predictions"
    seqs = sequences(seed)
    for name, (gt, pred) in seqs.items():
        for t in range(len(gt)):
            frame = davis / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
            frame.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((*gt.shape[1:], 3), 128, np.uint8)).save(frame)
            _palette_png(davis / "Annotations" / "480p" / name / f"{t:05d}.png", gt[t])
            _palette_png(pred_root / name / f"{t:05d}.png", pred[t])
    (davis / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (davis / "ImageSets" / "2017" / "val.txt").write_text("".join(f"{n}\n" for n in seqs))
    return davis, pred_root


def official(clone: Path, davis: Path, pred_root: Path) -> dict:
    """Per-object J/F statistics and the global row from the official evaluator (run from its clone)."""
    sys.path.insert(0, str(clone))
    from davis2017.evaluation import DAVISEvaluation

    res = DAVISEvaluation(str(davis), task="semi-supervised", gt_set="val").evaluate(str(pred_root))
    j, f = res["J"], res["F"]
    objects = list(j["M_per_object"])
    per_object = {
        name: {
            "J-Mean": j["M_per_object"][name],
            "F-Mean": f["M_per_object"][name],
        }
        for name in objects
    }
    stats = {key: {"J": [float(x) for x in j[key]], "F": [float(x) for x in f[key]]} for key in ("M", "R", "D")}
    jm, fm = float(np.mean(j["M"])), float(np.mean(f["M"]))
    glob = {
        "J&F-Mean": (jm + fm) / 2.0,
        "J-Mean": jm,
        "J-Recall": float(np.mean(j["R"])),
        "J-Decay": float(np.mean(j["D"])),
        "F-Mean": fm,
        "F-Recall": float(np.mean(f["R"])),
        "F-Decay": float(np.mean(f["D"])),
    }
    return {"objects": objects, "per_object": per_object, "stats": stats, "global": glob}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, help="a clone of davisvideochallenge/davis2017-evaluation")
    args = parser.parse_args()
    tree = HERE / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    davis, pred_root = build(tree)
    if args.official:
        golden = official(args.official, davis, pred_root)
        (HERE / "official.json").write_text(json.dumps(golden, indent=1) + "\n")
        print(json.dumps(golden["global"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
