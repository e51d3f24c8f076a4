"""Does a backbone's token know where it is? A linear readout of each token's frame, row and column.

An attentive probe pools tokens with softmax weights and reads the pool linearly; it has no position table of
its own (Toto/AIM, V-JEPA). So a probe can only say where something is (CATER's snitch cell) or which way it
moves (mini Kinetics' left/right, up/down) if the tokens carry their own position. A ViT adds an absolute
position table to its input and keeps it in the residual stream; a RoPE decoder (Toto, LLaMA) rotates queries
and keys instead, so its tokens hold an absolute position only as far as training taught them to.

This script reads a probe task's cached train and val tokens (extracting them on first use, exactly as the task
does), and fits, per layer, a ridge regression from one token's features to its (frame, row, column) in the
token grid, on a seeded sample of train tokens (first view); it prints the R^2 of each coordinate on a sample
of val tokens, one JSON line per backbone and layer. R^2 near 0: the coordinate is not linearly in the token.

    python bench/position_readout.py --task cater --backbones toto_tiny toto_tiny:random pixels
    python bench/position_readout.py --backbones toto_tiny@runs/stage1 toto_tiny   # two checkpoints
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import Ridge

from toto_eval.common.errors import TotoEvalError
from toto_eval.common.log import setup_logging
from toto_eval.harness.cache_entry import Features
from toto_eval.harness.evaluate import RunOptions, create_backbone, load_builtins, run_context, task_config
from toto_eval.harness.registry import TASKS

COORDS = ("frame", "row", "col")


def positions(grid: tuple[int, int, int]) -> np.ndarray:
    """(T*H*W, 3) frame, row and column of each token, in the raster order the backbones emit them."""
    t, h, w = grid
    return np.stack(np.unravel_index(np.arange(t * h * w), (t, h, w)), 1).astype(np.float32)


def sample(tokens: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` (clip, token) pairs drawn with replacement from (N, L, D): their features and token indices."""
    clip = rng.integers(0, tokens.shape[0], count)
    index = rng.integers(0, tokens.shape[1], count)
    return tokens[clip, index].astype(np.float32), index


def r2(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], where: np.ndarray) -> list[float]:
    """Val R^2 of each coordinate, for a standardised ridge regression fitted on train."""
    x, i = train
    mean, std = x.mean(0), x.std(0) + 1e-6
    model = Ridge(alpha=1.0).fit((x - mean) / std, where[i])
    xv, iv = val
    truth = where[iv]
    residual = ((model.predict((xv - mean) / std) - truth) ** 2).sum(0)
    return [float(v) for v in 1 - residual / ((truth - truth.mean(0)) ** 2).sum(0)]


def features(name: str, task_name: str, cache_dir: Path) -> dict[str, Features]:
    """The task's train and val token features of `name`: NAME, NAME:random (untrained), NAME@CHECKPOINT."""
    base, _, flag = name.partition(":")
    base, _, checkpoint = base.partition("@")
    backbone = create_backbone(base, checkpoint=checkpoint or None, random_init=flag == "random")
    ctx = run_context(RunOptions(cache_dir=cache_dir))
    task_cls = TASKS.get(task_name)
    task = task_cls(task_config(task_cls, mini=True, overrides=None)[0])
    splits = task.splits(backbone, ctx)
    layers = list(range(backbone.num_layers))
    return {s: ctx.features(backbone, splits.sources[s], layers=layers, tokens=True) for s in ("train", "val")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbones", nargs="+", required=True, help="registered names; NAME:random untrained, NAME@DIR weights"
    )
    parser.add_argument("--task", default="k400_probe", help="a token probe task: k400_probe, cater, imagenet_probe")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "toto-eval")
    parser.add_argument("--tokens", type=int, default=20_000, help="train tokens sampled (val: a quarter)")
    args = parser.parse_args()
    setup_logging(-1, prog="position_readout")
    load_builtins()
    for name in args.backbones:
        try:
            feats = features(name, args.task, args.cache_dir)
        except TotoEvalError as err:  # an unknown name, unreadable data: one line, the rows printed so far kept
            raise SystemExit(f"position_readout: {name}: {err}") from None
        train, val = feats["train"], feats["val"]
        where = positions(train.grid)
        for layer in sorted(train.tokens):
            rng = np.random.default_rng(0)  # every layer and backbone reads the same tokens
            fit = sample(train.tokens[layer][train.rows()][:, 0], args.tokens, rng)
            held = sample(val.tokens[layer][val.rows()][:, 0], args.tokens // 4, rng)
            scores = r2(fit, held, where)
            row = {"task": args.task, "backbone": name, "layer": layer}
            print(json.dumps(row | {c: round(s, 3) for c, s in zip(COORDS, scores, strict=True)}), flush=True)


if __name__ == "__main__":
    main()
