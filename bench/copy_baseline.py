"""Has a Toto checkpoint learned to copy what did not move? Its next-token loss against copying the last frame.

In a video most tokens repeat the token at the same place one frame earlier: the background does not move. A
causal model that uses its temporal context predicts those tokens almost perfectly; one that does not is beaten
on them by the trivial predictor that copies the previous frame. Until a model copies what stays, its loss has
little reason to model what moves, which is what the motion tasks (mini Kinetics, CATER) read.

This script runs checkpoints on the mini Kinetics val clips, sampled as the k400_probe samples them (the
backbone's frames, stride and resolution; the first view of each clip), and reports over the frames after the
first, one JSON line per checkpoint:

- `unchanged`: the share of tokens equal to the token at the same place one frame earlier (the same uint8
  patch, or the same code);
- `model_unchanged`, `model_changed`: the model's mean next-token loss on those tokens and on the others (MSE of
  the normalised patch, or cross-entropy of the code), and `model_first_frame` on the first frame, where there
  is nothing to copy;
- `copy_unchanged`, `copy_changed`: the copy predictor's loss (patches: the MSE of the previous frame's patch
  as the checkpoint's target, `--patch-target`, 0 on unchanged tokens; codes: a copier's cross-entropy is 0 on
  unchanged tokens and not finite on changed ones, so only the model's top-1 accuracy on unchanged codes is
  given, `model_copies`).

    python bench/copy_baseline.py --backbones toto_tiny toto_tiny:random --clips 48
    python bench/copy_baseline.py --backbones toto_tiny --checkpoints /tmp/run/checkpoints/step_0001250
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from backbone_args import add_backbone_args, backbone_checkpoints  # a sibling script

from toto_eval.common.errors import TotoEvalError
from toto_eval.common.files import default_cache_dir
from toto_eval.common.log import setup_logging
from toto_eval.harness.backbone import Backbone
from toto_eval.harness.evaluate import RunOptions, create_backbone, load_builtins, run_context, task_config
from toto_eval.harness.registry import TASKS
from toto_eval.pretrain.checkpoint import read_config
from toto_eval.pretrain.tokenizers import patchify, regression_targets


def val_clips(backbone: Backbone, cache_dir: Path, count: int) -> torch.Tensor:
    """The first view of the first `count` mini Kinetics val clips, uint8 `(N, T, 3, S, S)`."""
    ctx = run_context(RunOptions(cache_dir=cache_dir))
    task_cls = TASKS.get("k400_probe")
    task = task_cls(task_config(task_cls, mini=True, overrides=None)[0])
    source = task.splits(backbone, ctx).sources["val"]
    return torch.stack([source.load(i)[0] for i in range(min(count, len(source)))])


@torch.no_grad()
def token_losses(backbone: Backbone, clips: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-token model loss, copy loss (patches only), top-1 hit (codes only) and the unchanged mask, `(N, T, h*w)`."""
    n, t = clips.shape[:2]
    seq, grid = backbone.embed(backbone.preprocess.normalize(clips))
    hidden = backbone.model(seq)[:, : t * grid[1] * grid[2]]  # position i predicts frame token i
    frames = clips.flatten(0, 1)  # (N*T, 3, S, S) uint8: the tokens are read from the pixels themselves
    if backbone.tokenizer is None:
        patches = patchify(frames, backbone.patch_size).reshape(n, t, grid[1] * grid[2], -1)
        target = regression_targets(patches, patch_target(backbone))
        model = (backbone.model.predict_patches(hidden).float().reshape(target.shape) - target).pow(2).mean(-1)
        copy = (target[:, 1:] - target[:, :-1]).pow(2).mean(-1)
        same = (patches[:, 1:] == patches[:, :-1]).all(-1)
        return {"model": model, "copy": copy, "unchanged": same}
    codes = backbone.tokenizer.codes(frames).reshape(n, t, -1)
    logits = backbone.model.logits(hidden).float()
    ids = (codes + backbone.code_offset).flatten(1)
    model = F.cross_entropy(logits.transpose(1, 2), ids, reduction="none").reshape(codes.shape)
    hit = (logits.argmax(-1) == ids).reshape(codes.shape)
    return {"model": model, "hit": hit, "unchanged": codes[:, 1:] == codes[:, :-1]}


def patch_target(backbone: Backbone) -> str:
    """What the checkpoint regressed (`--patch-target`; checkpoints from before the option: normalised)."""
    if backbone.checkpoint is None:  # an untrained twin: the loss has no meaning either way
        return "normalized"
    return read_config(backbone.checkpoint)[2].get("train_config", {}).get("patch_target", "normalized")


def summary(out: dict[str, torch.Tensor]) -> dict[str, float]:
    """The JSON row of one checkpoint (see the module docstring)."""
    later, same = out["model"][:, 1:], out["unchanged"]
    row = {
        "unchanged": same.float().mean().item(),
        "model_first_frame": out["model"][:, 0].mean().item(),
        "model_unchanged": later[same].mean().item(),
        "model_changed": later[~same].mean().item(),
    }
    if "copy" in out:
        row |= {"copy_unchanged": out["copy"][same].mean().item(), "copy_changed": out["copy"][~same].mean().item()}
    else:
        row["model_copies"] = out["hit"][:, 1:][same].float().mean().item()
    return {k: round(v, 4) for k, v in row.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_backbone_args(parser)
    parser.add_argument("--clips", type=int, default=48, help="val clips to read")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    args = parser.parse_args()
    setup_logging(-1, prog="copy_baseline")
    load_builtins()
    for name, checkpoint in backbone_checkpoints(parser, args):
        base, _, flag = name.partition(":")
        try:
            backbone = create_backbone(base, checkpoint=checkpoint, random_init=flag == "random").eval()
            clips = val_clips(backbone, args.cache_dir, args.clips)
        except TotoEvalError as err:  # an unknown name, unreadable data: one line, the rows printed so far kept
            raise SystemExit(f"copy_baseline: {name}: {err}") from None
        row = {"backbone": name, "checkpoint": checkpoint or "default", "clips": len(clips)}
        print(json.dumps(row | summary(token_losses(backbone, clips))), flush=True)


if __name__ == "__main__":
    main()
