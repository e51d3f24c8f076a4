"""How the positive controls learn: a classifier on clips, or correspondence by label propagation (DAVIS).

`train_classifier`: attention-pooled last layer -> linear head, cross-entropy with label smoothing, one random view
per sample and step. `train_correspondence`: the DAVIS control is trained to do exactly what the task asks of
its features: the labels of a frame's tokens are propagated from another frame of the same train sequence by a
softmax over cosine similarities (temperature 0.1, the DINO preset's), and the cross-entropy against the true
token labels is minimised. Both use AdamW with warm-up and cosine decay and a seeded data order.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..common.schedule import warmup_cosine

log = logging.getLogger(__name__)


def _optimizer(net: nn.Module, steps: int, warmup: int) -> tuple[torch.optim.Optimizer, object]:
    spec = net.spec
    opt = torch.optim.AdamW(net.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, warmup))


def _step(net: nn.Module, opt: torch.optim.Optimizer, sched: object, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    sched.step()


def train_classifier(net: nn.Module, clips: torch.Tensor, labels: np.ndarray) -> list[float]:
    """Supervised training on `(N, V, T, C, H, W)` uint8 clips, normalised per batch as the cache does (one random
    view per sample and step); `labels` are `(N,)`, or `(N, T)` for a label per frame. Per-epoch losses."""
    spec = net.spec
    n = len(labels)
    y = torch.as_tensor(labels, dtype=torch.long)
    per_epoch = math.ceil(n / spec.batch_size)
    opt, sched = _optimizer(net, spec.epochs * per_epoch, spec.warmup_epochs * per_epoch)
    rng = np.random.default_rng(spec.seed)
    losses = []
    net.train()
    for epoch in range(spec.epochs):
        t0, total = time.perf_counter(), 0.0
        order = rng.permutation(n)
        for start in range(0, n, spec.batch_size):
            idx = order[start : start + spec.batch_size]
            views = rng.integers(0, clips.shape[1], len(idx))
            x = net.preprocess.normalize(clips[torch.as_tensor(idx), torch.as_tensor(views)])  # (B, T, C, H, W)
            x = translate(x, spec.translate, rng)
            x, target = mirror(x, y[idx], spec.mirror_grid, rng)
            logits = net.logits(x)  # (B, C), or (B, T, C) with a label per frame
            loss = F.cross_entropy(logits.flatten(0, -2), target.flatten(), label_smoothing=spec.label_smoothing)
            _step(net, opt, sched, loss)
            total += loss.item() * len(idx)
        losses.append(total / n)
        log.info(
            "%s: epoch %d/%d, loss %.3f, %.1f s", net.name, epoch + 1, spec.epochs, losses[-1], time.perf_counter() - t0
        )
    net.eval()
    return losses


def translate(x: torch.Tensor, pixels: int, rng: np.random.Generator) -> torch.Tensor:
    """Each clip of `(B, T, C, H, W)` moved by its own random whole-pixel offset in [-pixels, pixels] (the same for
    all its frames), edges replicated: the augmentation that lets a few thousand samples teach position-free
    shape. `pixels=0` returns `x`."""
    if pixels == 0:
        return x
    b, t, c, h, w = x.shape
    padded = F.pad(x.flatten(1, 2), (pixels,) * 4, mode="replicate").unflatten(1, (t, c))
    dy, dx = rng.integers(0, 2 * pixels + 1, (2, b))
    return torch.stack([padded[i, ..., dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])


def mirror(
    x: torch.Tensor, labels: torch.Tensor, grid: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Half the clips of `(B, T, C, H, W)` mirrored left-right, with their grid-cell labels (`row * grid + col`)
    mirrored too: a camera on the scene's axis of symmetry sees the mirrored scene. `grid=0` changes nothing."""
    if grid == 0:
        return x, labels
    flip = torch.as_tensor(rng.random(len(x)) < 0.5)
    x = torch.where(flip.view(-1, 1, 1, 1, 1), x.flip(-1), x)
    mirrored = labels // grid * grid + (grid - 1 - labels % grid)
    return x, torch.where(flip.view(-1, *[1] * (labels.dim() - 1)), mirrored, labels)


def train_correspondence(net: nn.Module, frames: list[torch.Tensor], labels: list[torch.Tensor]) -> list[float]:
    """Per sequence: `(F, 3, S, S)` frames and `(F, h, w, C)` token label vectors. Pairs (source, target) of one
    sequence, at most `MAX_GAP` frames apart, `batch_size` pairs per step, `epochs` x 100 steps; losses per epoch."""
    spec = net.spec
    rng = np.random.default_rng(spec.seed)
    opt, sched = _optimizer(net, spec.epochs * STEPS_PER_EPOCH, spec.warmup_epochs * STEPS_PER_EPOCH)
    losses = []
    net.train()
    for epoch in range(spec.epochs):
        t0, total = time.perf_counter(), 0.0
        for _ in range(STEPS_PER_EPOCH):
            seqs = rng.integers(0, len(frames), spec.batch_size)
            pairs = [_pair(len(frames[s]), rng) for s in seqs]
            pixels = torch.stack([frames[s][i] for s, p in zip(seqs, pairs, strict=True) for i in p])
            x = net.preprocess.normalize(pixels)
            feats = net.forward_features(x[:, None], [net.num_layers - 1])[net.num_layers - 1]  # (2B, 1, h, w, D)
            feats = F.normalize(feats.flatten(1, 3), dim=-1).unflatten(0, (spec.batch_size, 2))  # (B, 2, hw, D)
            y = torch.stack([labels[s][list(p)].flatten(1, 2) for s, p in zip(seqs, pairs, strict=True)])
            attn = torch.softmax(feats[:, 1] @ feats[:, 0].transpose(1, 2) / TEMPERATURE, dim=-1)  # (B, hw, hw)
            pred = attn @ y[:, 0]  # (B, hw, C): the source's labels, carried to the target's tokens
            loss = -(y[:, 1] * torch.log(pred.clamp_min(1e-6))).sum(-1).mean()
            _step(net, opt, sched, loss)
            total += loss.item()
        losses.append(total / STEPS_PER_EPOCH)
        log.info(
            "%s: epoch %d/%d, loss %.3f, %.1f s", net.name, epoch + 1, spec.epochs, losses[-1], time.perf_counter() - t0
        )
    net.eval()
    return losses


def _pair(n: int, rng: np.random.Generator) -> tuple[int, int]:
    source = int(rng.integers(0, n - 1))
    return source, int(rng.integers(source + 1, min(source + MAX_GAP, n - 1) + 1))


STEPS_PER_EPOCH, MAX_GAP, TEMPERATURE = 100, 8, 0.1
OBJECTIVES = {"davis": train_correspondence}
