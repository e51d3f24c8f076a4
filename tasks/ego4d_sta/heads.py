"""Per-box verb and time-to-contact heads on frozen video features: the second stage of the STA baselines.

Box features. A box drawn on the last observed frame is mapped onto the backbone's token grid and pooled with
ROIAlign (bilinear, `aligned=True`, averaged over a `roi_size` x `roi_size` bin grid): over the last frame's
tokens, the only ones aligned with the box when the camera moves (a causal backbone such as Toto has carried the
clip's history into them); over the time-averaged tokens, as the SlowFast baseline pools; and over the last frame
in a box `context_scale` times larger, where the hand that is about to act is. The clip's global mean is appended
as context, as StillFast's "concat" fusion does. Result per box: `4 * D` features. So the heads read two maps of
a clip, its last frame and its time mean, and that is all the feature cache keeps (`cache.last_and_mean`).

Heads. As in the FRCNN+SlowFast baseline: dropout, a verb classifier and a softplus TTC regressor, trained with
cross-entropy + smooth-L1 weighted 1 : 10; `hidden > 0` inserts one GELU layer (StillFast's small MLP). Inputs
are standardised with statistics of the fit set. One head per learning rate is trained; the one with the lowest
loss on a held-out part of train (whole videos, so near-duplicate frames never straddle the split) is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from toto_eval.common.schedule import warmup_cosine


def box_features(
    maps: np.ndarray,
    grid: tuple[int, int],
    boxes: np.ndarray,
    frame_size: tuple[int, int],
    roi_size: int = 2,
    context_scale: float = 3.0,
) -> torch.Tensor:
    """A clip's last-frame and time-mean maps `(2*H'*W', D)` and boxes `(B, 4)` in pixels of a `(width, height)`
    frame -> `(B, 4D)`.

    Per box: [last-frame ROI | time-mean ROI | last-frame ROI of the box enlarged `context_scale` times | clip mean].
    """
    h, w = grid
    x = torch.from_numpy(np.asarray(maps, dtype=np.float32)).view(2, h, w, -1)  # (last | mean, H', W', D)
    mean_map = x[1]
    maps = x.permute(0, 3, 1, 2).contiguous()  # (2, D, H', W')
    width, height = frame_size
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).view(-1, 4)
    b = b * torch.tensor([w / width, h / height, w / width, h / height])  # pixels -> token-grid units
    centre, half = (b[:, :2] + b[:, 2:]) / 2, (b[:, 2:] - b[:, :2]) / 2 * context_scale
    around = torch.cat([centre - half, centre + half], 1)  # the surroundings: an approaching hand, a tool
    around = torch.minimum(around.clamp_min(0), torch.tensor([w, h, w, h], dtype=torch.float32))  # inside the frame
    n = len(b)
    which = torch.tensor([0.0] * n + [1.0] * n + [0.0] * n).view(-1, 1)  # feature map of each ROI
    rois = torch.cat([which, torch.cat([b, b, around])], 1)  # (3B, 5)
    from torchvision.ops import roi_align  # imported here: torchvision.ops pulls in torch._dynamo (~2 s)

    pooled = roi_align(maps, rois, output_size=roi_size, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    pooled = pooled.mean(dim=(2, 3))  # (3B, D)
    context = mean_map.mean(dim=(0, 1)).expand(n, -1)  # the clip mean: the time mean averaged over space
    return torch.cat([pooled[:n], pooled[n : 2 * n], pooled[2 * n :], context], 1)


@dataclass(frozen=True)
class HeadConfig:
    hidden: int = 256  # 0 = linear heads (the FRCNN+SlowFast head)
    dropout: float = 0.5
    lrs: tuple[float, ...] = (1e-3, 3e-3)
    epochs: int = 30
    min_steps: int = 500  # at least this many optimiser steps, however small the train set
    batch_size: int = 256
    weight_decay: float = 1e-4
    ttc_loss_weight: float = 10.0  # verb : TTC = 1 : 10, as the baseline
    holdout: float = 0.1
    seed: int = 0


@dataclass
class BoxSet:
    """Training boxes: features, verb and TTC targets, and the video each came from."""

    x: torch.Tensor  # (N, F)
    verbs: torch.Tensor  # (N,) int64
    ttcs: torch.Tensor  # (N,) float32 seconds
    groups: np.ndarray  # (N,) video uid


class BoxHeads(nn.Module):
    """Standardise -> [Linear + GELU] -> dropout -> (verb logits, softplus TTC)."""

    def __init__(self, in_dim: int, num_verbs: int, hidden: int, dropout: float, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.trunk = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU()) if hidden > 0 else nn.Identity()
        width = hidden if hidden > 0 else in_dim
        self.dropout = nn.Dropout(dropout)
        self.verb = nn.Linear(width, num_verbs)
        self.ttc = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.dropout(self.trunk((x - self.mean) / self.std))
        return self.verb(z), F.softplus(self.ttc(z)).squeeze(-1)


def split_by_group(groups: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, holdout) row indices; whole groups (videos) go to the holdout until it holds `fraction` of the rows."""
    names = np.unique(groups)
    if len(names) < 2:
        perm = np.random.default_rng(seed).permutation(len(groups))
        k = max(1, round(fraction * len(groups)))
        return np.sort(perm[k:]), np.sort(perm[:k])
    held: list[str] = []
    for name in np.random.default_rng(seed).permutation(names):
        if np.isin(groups, held).sum() >= fraction * len(groups) or len(held) == len(names) - 1:
            break
        held.append(name)
    mask = np.isin(groups, held)
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def fit_heads(data: BoxSet, num_verbs: int, cfg: HeadConfig, device: torch.device) -> tuple[BoxHeads, list[dict]]:
    """Train one head per learning rate; return the holdout-best head and every head's holdout row."""
    fit, hold = split_by_group(data.groups, cfg.holdout, cfg.seed)
    mean = data.x[fit].mean(0)
    std = data.x[fit].std(0).clamp_min(1e-4) if len(fit) > 1 else torch.ones_like(mean)
    rows, best = [], None
    for lr in cfg.lrs:
        torch.manual_seed(cfg.seed)
        head = BoxHeads(data.x.shape[1], num_verbs, cfg.hidden, cfg.dropout, mean, std).to(device)
        _train(head, data, fit, lr, cfg, device)
        row = {"lr": lr, **evaluate_heads(head, data, hold, cfg.ttc_loss_weight, device)}
        rows.append(row)
        if best is None or row["holdout_loss"] < best[0]:
            best = (row["holdout_loss"], head)
    return best[1], rows


def _train(head: BoxHeads, data: BoxSet, rows: np.ndarray, lr: float, cfg: HeadConfig, device: torch.device) -> None:
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = max(1, -(-len(rows) // cfg.batch_size))
    total = max(cfg.epochs * steps_per_epoch, cfg.min_steps)  # small sets: epochs alone would be a few steps
    step = 0
    head.train()
    while step < total:
        order = torch.from_numpy(rows)[torch.randperm(len(rows), generator=gen)]
        for idx in order.split(cfg.batch_size):
            if step == total:
                break
            for group in opt.param_groups:
                group["lr"] = lr * warmup_cosine(step, total, steps_per_epoch)
            loss = _loss(head, data, idx, cfg.ttc_loss_weight, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    head.eval()


def _loss(head: BoxHeads, data: BoxSet, idx: torch.Tensor, ttc_weight: float, device: torch.device) -> torch.Tensor:
    verb_logits, ttc = head(data.x[idx].to(device))
    verb_loss = F.cross_entropy(verb_logits, data.verbs[idx].to(device))
    return verb_loss + ttc_weight * F.smooth_l1_loss(ttc, data.ttcs[idx].to(device))


@torch.no_grad()
def evaluate_heads(head: BoxHeads, data: BoxSet, rows: np.ndarray, ttc_weight: float, device: torch.device) -> dict:
    """Holdout loss, verb accuracy, TTC mean absolute error and the share of boxes right on verb and TTC."""
    idx = torch.from_numpy(rows)
    head.eval()
    loss = float(_loss(head, data, idx, ttc_weight, device))
    probs, ttc = predict_heads(head, data.x[idx], device)
    verb_ok = probs.argmax(1) == data.verbs[idx].numpy()
    ttc_ok = np.abs(ttc - data.ttcs[idx].numpy()) <= 0.25
    return {
        "holdout_loss": loss,
        "holdout_verb_acc": float(verb_ok.mean()),
        "holdout_ttc_mae": float(np.abs(ttc - data.ttcs[idx].numpy()).mean()),
        "holdout_verb_ttc_hit": float((verb_ok & ttc_ok).mean()),
    }


@torch.no_grad()
def predict_heads(head: BoxHeads, x: torch.Tensor, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """`(B, F)` box features -> verb probabilities `(B, num_verbs)` and TTC seconds `(B,)`."""
    head.eval()
    if len(x) == 0:
        return np.zeros((0, head.verb.out_features), np.float32), np.zeros(0, np.float32)
    logits, ttc = head(x.to(device))
    return logits.softmax(-1).cpu().numpy(), ttc.cpu().numpy()
