"""Probe-side checks on a mini probe task: per-class accuracy, and what a position table in the probe changes.

A probe task that reads near chance may be limited by the tokens or by the probe. This script reads the task's
cached train and val tokens (extracting them on first use, exactly as the task does: `motion_readout.features`)
and trains, per backbone, layer and seed, one attentive probe (`harness.probes.AttentiveProbe`, 4 heads: the
task's probe without its grid of learning rates and its holdout) on ALL train samples, AdamW with cosine decay,
the val views' probabilities averaged. With
`--position-table` each run is repeated with a learned table of one vector per token added after the batch norm:
the probe is then told where each token is, which the task's probe (like Toto's and V-JEPA's) is not.

One JSON line per run (val top-1 and top-1 per class), then one summary line per backbone and variant: the mean
over its runs, overall and per class.

    python bench/probe_variants.py --task k400_probe --backbones toto_tiny toto_tiny:random --layers 3 4 5
    python bench/probe_variants.py --task cater --backbones toto_tiny toto_tiny:random --layers 3 5 --position-table
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from backbone_args import add_backbone_args, backbone_checkpoints  # a sibling script
from motion_readout import features  # a sibling script: the task's cached tokens, every layer
from torch import nn

from toto_eval.common.errors import TotoEvalError
from toto_eval.common.files import default_cache_dir
from toto_eval.common.log import setup_logging
from toto_eval.harness.evaluate import load_builtins
from toto_eval.harness.probes import AttentiveProbe

HEADS = 4
TASKS = ("k400_probe", "cater", "imagenet_probe")


class Probe(AttentiveProbe):
    """The harness's attentive probe (4 heads), with an optional learned table of one vector per token added to
    the normalised tokens: the probe is then told where each token is."""

    def __init__(self, tokens: int, dim: int, classes: int, position_table: bool) -> None:
        super().__init__(dim, HEADS, classes)
        # Drawn last, so a probe with the table starts from the same query and weights as one without.
        self.position = nn.Parameter(torch.randn(tokens, dim)) if position_table else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        return self.classifier(self.attend(x if self.position is None else x + self.position))


def train_and_test(
    train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor], args, table: bool, seed: int
) -> torch.Tensor:
    """Per val sample, 1.0 where the probe is right. train: (N, T, D) tokens of one view; val: (M, V, T, D)."""
    (x, y), (xv, yv) = train, val
    torch.manual_seed(seed)
    probe = Probe(x.shape[1], x.shape[2], int(y.max()) + 1, table)
    opt = torch.optim.AdamW(probe.parameters(), lr=args.lr, weight_decay=1e-2)
    steps = args.epochs * math.ceil(len(x) / args.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    order = torch.Generator().manual_seed(seed)
    for _ in range(args.epochs):
        perm = torch.randperm(len(x), generator=order)
        for i in range(0, len(x), args.batch_size):
            idx = perm[i : i + args.batch_size]
            loss = F.cross_entropy(probe(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
    probe.eval()
    with torch.no_grad():
        probs = torch.stack([probe(xv[:, k]).softmax(-1) for k in range(xv.shape[1])]).mean(0)
    return (probs.argmax(-1) == yv).float()


def class_names(task: str, classes: int) -> list[str]:
    """The mini task's class names in label order (the k400 loader sorts them), else the label ids."""
    if task == "k400_probe":
        from toto_eval.tasks.k400.mini import CLASSES

        return sorted(CLASSES)
    return [str(k) for k in range(classes)]


def per_class(hits: torch.Tensor, labels: torch.Tensor, names: list[str]) -> dict[str, float]:
    return {name: round(100 * float(hits[labels == k].mean()), 1) for k, name in enumerate(names)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=TASKS, default="k400_probe")
    add_backbone_args(parser)
    parser.add_argument("--layers", type=int, nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--position-table", action="store_true", help="also run each probe with a position table")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    backbones = backbone_checkpoints(parser, args)
    torch.set_num_threads(args.threads)
    setup_logging(-1, prog="probe_variants")
    load_builtins()
    for name, checkpoint in backbones:
        try:
            feats, _ = features(name, args.cache_dir, args.task, checkpoint)
        except TotoEvalError as err:  # an unknown name, unreadable data: one line, the rows printed so far kept
            raise SystemExit(f"probe_variants: {name}: {err}") from None
        train, val = feats["train"], feats["val"]
        missing = sorted(set(args.layers) - set(train.tokens))
        if missing:
            raise SystemExit(f"probe_variants: {name} has no layer {missing[0]} (layers 0-{max(train.tokens)})")
        y, yv = torch.as_tensor(train.labels).long(), torch.as_tensor(val.labels).long()
        names = class_names(args.task, int(y.max()) + 1)
        label = name if checkpoint is None else f"{name}@{checkpoint}"
        for table in (False, True) if args.position_table else (False,):
            hits = []
            for layer in args.layers:
                x = torch.from_numpy(train.tokens[layer][train.rows()][:, 0].astype(np.float32))  # first view
                xv = torch.from_numpy(val.tokens[layer][val.rows()].astype(np.float32))
                for seed in args.seeds:
                    hit = train_and_test((x, y), (xv, yv), args, table, seed)
                    hits.append(hit)
                    row = {"task": args.task, "backbone": label, "position_table": table, "layer": layer}
                    row |= {
                        "seed": seed,
                        "top1": round(100 * float(hit.mean()), 1),
                        "per_class": per_class(hit, yv, names),
                    }
                    print(json.dumps(row), flush=True)
            mean = torch.stack(hits).mean(0)
            summary = {"task": args.task, "backbone": label, "position_table": table, "runs": len(hits)}
            summary |= {"top1": round(100 * float(mean.mean()), 1), "per_class": per_class(mean, yv, names)}
            print(json.dumps({"summary": summary}), flush=True)


if __name__ == "__main__":
    main()
