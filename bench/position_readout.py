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
    python bench/position_readout.py --backbones toto_tiny toto_tiny --checkpoints runs/stage1   # two checkpoints
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from backbone_args import add_backbone_args, backbone_checkpoints  # a sibling script
from motion_readout import features  # a sibling script: the task's cached tokens, every layer
from sklearn.linear_model import Ridge

from toto_eval.common.errors import TotoEvalError
from toto_eval.common.files import default_cache_dir
from toto_eval.common.log import setup_logging
from toto_eval.harness.evaluate import load_builtins

COORDS = ("frame", "row", "col")
PROBE_TASKS = ("k400_probe", "cater", "imagenet_probe")  # the tasks that train a probe on cached tokens


def positions(grid: tuple[int, int, int]) -> np.ndarray:
    """(T*H*W, 3) frame, row and column of each token, in the raster order the backbones emit them."""
    t, h, w = grid
    return np.stack(np.unravel_index(np.arange(t * h * w), (t, h, w)), 1).astype(np.float32)


def sample(tokens: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` (clip, token) pairs drawn with replacement from (N, L, D): their features and token indices."""
    clip = rng.integers(0, tokens.shape[0], count)
    index = rng.integers(0, tokens.shape[1], count)
    return tokens[clip, index].astype(np.float32), index


def r2(
    train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], where: np.ndarray
) -> list[float | None]:
    """Val R^2 of each coordinate, for a standardised ridge regression fitted on train; None for a coordinate
    with one value (an image's frame), where R^2 is not defined."""
    x, i = train
    mean, std = x.mean(0), x.std(0) + 1e-6
    model = Ridge(alpha=1.0).fit((x - mean) / std, where[i])
    xv, iv = val
    truth = where[iv]
    residual = ((model.predict((xv - mean) / std) - truth) ** 2).sum(0)
    spread = ((truth - truth.mean(0)) ** 2).sum(0)
    return [float(1 - r / s) if s > 0 else None for r, s in zip(residual, spread, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_backbone_args(parser)
    parser.add_argument("--task", default="k400_probe", choices=PROBE_TASKS, help="a probe task of the mini suite")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--tokens", type=int, default=20_000, help="train tokens sampled (val: a quarter)")
    args = parser.parse_args()
    setup_logging(-1, prog="position_readout")
    load_builtins()
    for name, checkpoint in backbone_checkpoints(parser, args):
        try:
            feats, _ = features(name, args.cache_dir, args.task, checkpoint)
        except TotoEvalError as err:  # an unknown name, unreadable data: one line, the rows printed so far kept
            raise SystemExit(f"position_readout: {name}: {err}") from None
        train, val = feats["train"], feats["val"]
        where = positions(train.grid)
        for layer in sorted(train.tokens):
            tokens = train.tokens[layer]
            if tokens.shape[2] != len(where):  # e.g. a class token beside the grid: positions would misalign
                raise SystemExit(
                    f"position_readout: {name}: {tokens.shape[2]} tokens per view, not the "
                    f"{math.prod(train.grid)} of its {train.grid} grid"
                )
            rng = np.random.default_rng(0)  # every layer and backbone reads the same tokens
            fit = sample(tokens[train.rows()][:, 0], args.tokens, rng)
            held = sample(val.tokens[layer][val.rows()][:, 0], args.tokens // 4, rng)
            scores = r2(fit, held, where)
            row = {"task": args.task, "backbone": name, "checkpoint": checkpoint or "default", "layer": layer}
            row |= {c: s if s is None else round(s, 3) for c, s in zip(COORDS, scores, strict=True)}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
