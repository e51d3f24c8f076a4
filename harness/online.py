"""Online probing: the frozen backbone feeds the probe grid at every step instead of a token cache.

At ImageNet/Kinetics size the token cache of every probed layer is terabytes; V-JEPA, V-JEPA 2 and DINOv2 all
train their heads online instead. `OnlineFeed` is a `probe_grid.Feed` whose batches come from the backbone
itself: a DataLoader (workers, pinned memory) reads ahead the clips of the epoch's batches, the backbone runs
under inference mode (bf16 autocast on CUDA) with the views in chunks of at most `batch_size` clips, and every
probed layer's tokens (or pooled vectors) go to their heads rounded through fp16, exactly as the cache stores
them, so an online grid equals a cached one. The rows it serves are those of the split's pooled features, which
an online run extracts first (one pass, small on disk): they say which samples are readable, and they stay in
the cache for linear probes and depth curves.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .backbone import Backbone
from .cache import FP16_MAX, ClipSource
from .probe_grid import Batch


class OnlineFeed:
    """The readable samples `rows` of a source as probe inputs computed on the fly by the frozen backbone."""

    def __init__(
        self,
        backbone: Backbone,
        source: ClipSource,
        rows: np.ndarray,
        layers: list[int],
        tokens: bool,
        batch_size: int,
        num_workers: int = 0,
    ) -> None:
        self.backbone, self.source, self.rows = backbone, source, np.asarray(rows)
        self.layers, self.tokens = sorted(layers), tokens
        self.batch_size, self.num_workers = batch_size, num_workers
        self.labels = np.asarray(source.labels)[self.rows]
        self.views = max(1, int(getattr(source, "views", 1)))
        self._dims: dict[int, tuple[int, ...]] = {}

    def dim(self, layer: int) -> tuple[int, ...]:
        if not self._dims:  # one clip through the backbone tells every layer's shape
            device = next(self.backbone.parameters()).device
            out = self._forward(self.source.load(int(self.rows[0]))[:1], device)
            self._dims = {k: tuple(v.shape[1:]) for k, v in out.items()}
        return self._dims[layer]

    def batches(self, plan: list[Batch], device: torch.device) -> Iterator[dict[int, torch.Tensor]]:
        loader = torch.utils.data.DataLoader(
            _Clips(self.source),
            batch_sampler=[self.rows[rows].tolist() for rows, _ in plan if len(rows)],
            num_workers=self.num_workers,
            collate_fn=list,
            pin_memory=device.type == "cuda",
        )
        clips = iter(loader)
        for rows, views in plan:
            if not len(rows):  # an empty slice of a batch smaller than the world
                yield {layer: torch.zeros(0, *self.dim(layer), device=device) for layer in self.layers}
                continue
            loaded = next(clips)  # [(V, T, C, H, W)] of the batch's samples
            x = torch.cat(loaded if views is None else [c[v : v + 1] for c, v in zip(loaded, views, strict=True)])
            yield {k: v.float() for k, v in self._forward(x, device).items()}

    @torch.inference_mode()
    def _forward(self, x: torch.Tensor, device: torch.device) -> dict[int, torch.Tensor]:
        """(n, T, C, H, W) frames -> layer -> fp16 `(n, L, D)` tokens or `(n, D)` pooled, views in chunks."""
        parts: dict[int, list[torch.Tensor]] = {}
        for chunk in x.split(self.batch_size):
            frames = self.backbone.preprocess.normalize(chunk.to(device, non_blocking=True))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = self.backbone.forward_features(frames, self.layers)
            for layer, feats in out.items():
                feats = feats.float()  # (n, T', H', W', D)
                value = feats.flatten(1, 3) if self.tokens else feats.mean(dim=(1, 2, 3))
                parts.setdefault(layer, []).append(value.clamp(-FP16_MAX, FP16_MAX).to(torch.float16))
        return {layer: torch.cat(p).clone() for layer, p in parts.items()}  # clone: usable outside inference mode


class _Clips(torch.utils.data.Dataset):
    """Samples by source index; an unreadable one (readable when its pooled features were made) is an error."""

    def __init__(self, source: ClipSource) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.source.load(index)
