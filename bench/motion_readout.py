"""Is the motion in a backbone's features where the attentive probe cannot read it? (mini Kinetics)

Mini Kinetics' twelve classes differ only in how things move (`tasks/k400/mini.py`). The attentive probe pools a
layer's tokens with softmax weights, i.e. it averages them, and then reads the average linearly: it cannot form a
difference between frames. This script reads the k400_probe's cached train and val features (extracting them
on first use, exactly as the task does) and fits, per layer, a logistic regression on three fixed summaries of
the token grid of one clip:

- `mean`: the mean over all tokens (what mean pooling gives);
- `frames`: the mean of each frame's tokens, the frames concatenated;
- `motion`: `mean` and the mean absolute change of the per-frame means between consecutive frames, a fixed
  motion-energy readout that an average of tokens cannot express.

Val clips average the class probabilities over their views, as the task does. One JSON line per backbone and
layer; the regression is standardised, L2 with C = 0.1, fitted on the whole train split (no selection).

    python bench/motion_readout.py --backbones toto_tiny toto_tiny:random pixels --cache-dir /tmp/minisuite-cache
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from toto_eval.common.errors import TotoEvalError
from toto_eval.common.log import setup_logging
from toto_eval.harness.cache_entry import Features
from toto_eval.harness.evaluate import RunOptions, create_backbone, load_builtins, run_context, task_config
from toto_eval.harness.registry import TASKS

SUMMARIES = ("mean", "frames", "motion")


def summarise(tokens: np.ndarray, frames: int, kind: str) -> np.ndarray:
    """(N, V, L, D) tokens -> (N, V, F) features of one summary kind."""
    n, v, length, d = tokens.shape
    per_frame = tokens.astype(np.float32).reshape(n, v, frames, length // frames, d).mean(3)  # (N, V, T, D)
    if kind == "mean":
        return per_frame.mean(2)
    if kind == "frames":
        return per_frame.reshape(n, v, frames * d)
    return np.concatenate([per_frame.mean(2), np.abs(np.diff(per_frame, axis=2)).mean(2)], -1)


def readout(train: np.ndarray, y_train: np.ndarray, val: np.ndarray, y_val: np.ndarray) -> float:
    """Top-1 on val of a logistic regression fitted on train's first view; val views average probabilities."""
    scale = StandardScaler().fit(train[:, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on a few hundred samples
        model = LogisticRegression(C=0.1, max_iter=2000).fit(scale.transform(train[:, 0]), y_train)
    probs = np.mean([model.predict_proba(scale.transform(val[:, k])) for k in range(val.shape[1])], axis=0)
    return float(np.mean(model.classes_[probs.argmax(1)] == y_val))


def features(
    name: str, cache_dir: Path, task_name: str = "k400_probe", checkpoint: str | None = None
) -> tuple[dict[str, Features], int]:
    """A mini probe task's train and val token features of backbone `name` (`NAME:random`: its untrained twin),
    every layer, through the feature cache (also used by `position_readout.py`); and the frames per view."""
    base, _, flag = name.partition(":")
    backbone = create_backbone(base, checkpoint=checkpoint, random_init=flag == "random")
    ctx = run_context(RunOptions(cache_dir=cache_dir))
    task_cls = TASKS.get(task_name)
    task = task_cls(task_config(task_cls, mini=True, overrides=None)[0])
    splits = task.splits(backbone, ctx)
    layers = list(range(backbone.num_layers))
    out = {s: ctx.features(backbone, splits.sources[s], layers=layers, tokens=True) for s in ("train", "val")}
    return out, out["train"].grid[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", required=True, help="registered names; NAME:random = untrained")
    parser.add_argument("--cache-dir", type=Path, required=True)
    args = parser.parse_args()
    setup_logging(-1, prog="motion_readout")
    load_builtins()
    for name in args.backbones:
        try:
            feats, frames = features(name, args.cache_dir)
        except TotoEvalError as err:  # an unknown name, unreadable data: one line, the rows printed so far kept
            raise SystemExit(f"motion_readout: {name}: {err}") from None
        train, val = feats["train"], feats["val"]
        for layer in sorted(train.tokens):
            row = {"backbone": name, "layer": layer}
            for kind in SUMMARIES:
                x_train = summarise(train.tokens[layer][train.rows()], frames, kind)
                x_val = summarise(val.tokens[layer][val.rows()], frames, kind)
                row[kind] = round(100 * readout(x_train, train.labels, x_val, val.labels), 1)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
