"""The behaviour-cloning policy: MVP's head on frozen image features and proprioception, trained with MSE.

Shape, as in MVP (Xiao et al. 2022; Radosavovic et al. 2022): the frozen backbone's pooled features go through a
LayerNorm and a Linear to 128-d; proprioception (standardised with the demo statistics) goes through a Linear
to 128-d; the concatenation feeds an MLP [256, 128, 64] with SELU to the action. Training follows MVP's BC
config (AdamW, lr 1e-3, wd 0.01, linear warm-up then cosine, batch 128, MSE on actions). With `feat_dim=None`
the image branch is absent: the proprioception-only baseline, the floor every backbone must beat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from toto_eval.common.log import progress
from toto_eval.common.schedule import warmup_cosine


@dataclass(frozen=True)
class BCConfig:
    epochs: int = 400
    warmup_epochs: int = 40
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    embed_dim: int = 128  # width of each projected input (MVP: 128)
    hidden: tuple[int, ...] = (256, 128, 64)


class MVPHead(nn.Module):
    """(features (B, D) or None, proprio (B, P)) -> actions (B, A)."""

    def __init__(self, feat_dim: int | None, proprio: np.ndarray, action_dim: int, cfg: BCConfig) -> None:
        super().__init__()
        self.register_buffer("p_mean", torch.as_tensor(proprio.mean(0), dtype=torch.float32))
        self.register_buffer("p_std", torch.as_tensor(proprio.std(0) + 1e-3, dtype=torch.float32))
        self.proprio = nn.Linear(proprio.shape[1], cfg.embed_dim)
        self.image = None
        if feat_dim is not None:
            self.image = nn.Sequential(nn.LayerNorm(feat_dim), nn.Linear(feat_dim, cfg.embed_dim))
        width = cfg.embed_dim * (2 if self.image is not None else 1)
        layers: list[nn.Module] = []
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.SELU()]
            width = h
        layers.append(nn.Linear(width, action_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, feats: torch.Tensor | None, proprio: torch.Tensor) -> torch.Tensor:
        z = [self.proprio((proprio - self.p_mean) / self.p_std)]
        if self.image is not None:
            z.insert(0, self.image(feats))
        return self.mlp(torch.cat(z, dim=-1))

    @torch.no_grad()
    def act(self, feats: np.ndarray | None, proprio: np.ndarray) -> np.ndarray:
        """Numpy in, numpy out: (B, D) or None, (B, P) -> (B, A) float32."""
        self.eval()
        f = None if feats is None else torch.as_tensor(feats, dtype=torch.float32)
        return self(f, torch.as_tensor(proprio, dtype=torch.float32)).numpy()


def train_bc(
    feats: np.ndarray | None, proprio: np.ndarray, actions: np.ndarray, cfg: BCConfig, seed: int
) -> tuple[MVPHead, list[float]]:
    """Fit a head on (N, D) features (or None), (N, P) proprio, (N, A) actions; returns it and per-epoch losses."""
    n = len(actions)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = MVPHead(None if feats is None else feats.shape[1], proprio, actions.shape[1], cfg)
    f = None if feats is None else torch.as_tensor(np.asarray(feats, dtype=np.float32))
    p = torch.as_tensor(proprio, dtype=torch.float32)
    a = torch.as_tensor(actions, dtype=torch.float32)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    warmup, steps = cfg.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: warmup_cosine(step, steps, warmup))
    gen = torch.Generator().manual_seed(seed)
    losses = []
    head.train()
    for _ in progress(range(cfg.epochs), desc="behaviour cloning", unit="epoch", leave=False):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss = nn.functional.mse_loss(head(None if f is None else f[idx], p[idx]), a[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        losses.append(total / n)
    return head.eval(), losses
