"""A space-time ViT with tubelet tokens (the VideoMAE encoder), so a grid's time axis differs from the frame count.

Every other zoo model tokenises frames independently (`T' = T`). Video transformers do not: a Conv3d cuts the
clip into `tubelet x patch x patch` cubes, so 16 frames become 8 token slices and tasks must use the grid the
backbone reports (`token_grid`) rather than the frame count. This is VideoMAE's encoder in plain PyTorch
(pre-norm blocks, GELU MLP, q/v biases without a k bias, a fixed sinusoid position table over the flattened
`(T', H', W')` tokens), written here rather than imported so that it needs no optional dependency, runs at any
resolution and clip length (the position table is resampled trilinearly), stops after the deepest requested
block, and handles images (a single frame is repeated to fill one tubelet).

Parameter names follow the original VideoMAE code, so its checkpoints load directly (a pre-training checkpoint's
`encoder.` subtree, or a fine-tuned one without its head); Hugging Face `VideoMAEModel` files are converted by
`from_hf_videomae`. Neither has been tried on a real downloaded file here: the HF conversion is tested against
`transformers`' own implementation with random weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from toto_eval.harness.backbone import Backbone, Layers, Preprocess, resolve_layers
from toto_eval.harness.registry import BACKBONES

from ._weights import load_checked, require_weights, seeded


@dataclass(frozen=True)
class VideoViTConfig:
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    tubelet: int = 2
    img_size: int = 224  # the native grid of the position table
    num_frames: int = 16
    norm_eps: float = 1e-6


def sinusoid_table(n: int, dim: int) -> torch.Tensor:
    """`(n, dim)` transformer position code: sin on even channels, cos on odd, wavelength 10000^(2(j//2)/dim)."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None, :]
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.where(j.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])  # no key bias
        qkv = F.linear(x, self.qkv.weight, bias).view(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, d_head)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: VideoViTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.attn = Attention(cfg.embed_dim, cfg.num_heads)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.mlp = Mlp(cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: VideoViTConfig) -> None:
        super().__init__()
        kernel = (cfg.tubelet, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(3, cfg.embed_dim, kernel_size=kernel, stride=kernel)


class VideoViT(Backbone):
    """Space-time tokens: `(B, T, C, H, W)` -> `{layer: (B, ceil(T/tubelet), H/p, W/p, D)}`."""

    def __init__(self, name: str, cfg: VideoViTConfig, preprocess: Preprocess) -> None:
        super().__init__()
        self.name, self.cfg, self.preprocess = name, cfg, preprocess
        self.num_layers, self.embed_dim, self.num_heads = cfg.depth, cfg.embed_dim, cfg.num_heads
        self.patch_size = cfg.patch_size
        self.patch_embed = PatchEmbed(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        side = cfg.img_size // cfg.patch_size
        self.native_grid = (cfg.num_frames // cfg.tubelet, side, side)
        table = sinusoid_table(math.prod(self.native_grid), cfg.embed_dim)
        self.register_buffer("pos_table", table, persistent=False)  # a function of cfg, not a weight
        self.apply(_init_weights)

    def token_grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        return -(-frames // self.cfg.tubelet), height // self.patch_size, width // self.patch_size

    def forward_features(self, x: torch.Tensor, layers: Layers = None) -> dict[int, torch.Tensor]:
        take = resolve_layers(self.num_layers, layers)
        x = _fill_tubelets(x, self.cfg.tubelet)
        h = self.patch_embed.proj(x.transpose(1, 2))  # (B, D, T', H', W')
        grid = tuple(h.shape[2:])
        h = h.flatten(2).transpose(1, 2) + self._positions(grid).to(h.dtype)  # (B, T'*H'*W', D), t-major
        out = {}
        for i, block in enumerate(self.blocks[: take[-1] + 1]):
            h = block(h)
            if i in take:
                out[i] = h.unflatten(1, grid)
        return out

    def _positions(self, grid: tuple[int, ...]) -> torch.Tensor:
        if grid == self.native_grid:
            return self.pos_table
        table = self.pos_table.T.reshape(1, -1, *self.native_grid)  # (1, D, T0, H0, W0)
        table = F.interpolate(table, size=grid, mode="trilinear", align_corners=False)
        return table.flatten(2)[0].T

    def config(self) -> dict:
        return {**super().config(), "arch": asdict(self.cfg)}


def _fill_tubelets(x: torch.Tensor, tubelet: int) -> torch.Tensor:
    """Repeat the last frame until T is a multiple of the tubelet (an image becomes a still clip)."""
    short = -x.shape[1] % tubelet
    return torch.cat([x, x[:, -1:].expand(-1, short, -1, -1, -1)], dim=1) if short else x


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def from_videomae(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original VideoMAE files: a pre-training checkpoint keeps the encoder under `encoder.`."""
    if any(k.startswith("encoder.blocks.") for k in state):
        return {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    if any(k.startswith("videomae.") for k in state) or any(k.startswith("encoder.layer.") for k in state):
        return from_hf_videomae(state)
    return state


def from_hf_videomae(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face `VideoMAEModel` names -> ours (query/key/value are concatenated into one qkv)."""
    state = {k.removeprefix("videomae."): v for k, v in state.items()}
    out = {"patch_embed.proj." + k.rsplit(".", 1)[1]: v for k, v in state.items() if "patch_embeddings.projection" in k}
    depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
    for i in range(depth):
        p, a = f"encoder.layer.{i}.", f"encoder.layer.{i}.attention."
        qkv = [state[f"{a}attention.{n}.weight"] for n in ("query", "key", "value")]
        out |= {
            f"blocks.{i}.attn.qkv.weight": torch.cat(qkv),
            # transformers < 5 names the biases q_bias / v_bias; later versions put them on query / value
            f"blocks.{i}.attn.q_bias": state.get(f"{a}attention.q_bias", state.get(f"{a}attention.query.bias")),
            f"blocks.{i}.attn.v_bias": state.get(f"{a}attention.v_bias", state.get(f"{a}attention.value.bias")),
            f"blocks.{i}.attn.proj.weight": state[f"{a}output.dense.weight"],
            f"blocks.{i}.attn.proj.bias": state[f"{a}output.dense.bias"],
        }
        for ours, theirs in (
            ("norm1", "layernorm_before"),
            ("norm2", "layernorm_after"),
            ("mlp.fc1", "intermediate.dense"),
            ("mlp.fc2", "output.dense"),
        ):
            for w in ("weight", "bias"):
                out[f"blocks.{i}.{ours}.{w}"] = state[f"{p}{theirs}.{w}"]
    return out


# Everything a VideoMAE file may hold besides the encoder blocks we evaluate.
_IGNORED = ("norm.", "fc_norm.", "head.", "decoder", "encoder_to_decoder", "mask_token", "pos_embed", "layernorm.")

SIZES: dict[str, VideoViTConfig] = {
    "videomae_small": VideoViTConfig(embed_dim=384, depth=12, num_heads=6),
    "videomae_base": VideoViTConfig(),
    "videomae_large": VideoViTConfig(embed_dim=1024, depth=24, num_heads=16),
    "video_vit_test": VideoViTConfig(embed_dim=64, depth=4, num_heads=4, patch_size=8, img_size=32, num_frames=4),
}


def create_video_vit(name: str, checkpoint: str | None = None, random_init: bool = False) -> VideoViT:
    """Build a registered size; weights from a VideoMAE / HF VideoMAE file or a seeded random init."""
    require_weights(name, checkpoint, random_init)
    cfg = SIZES[name]
    pre = Preprocess(resolution=cfg.img_size, frames=cfg.num_frames, frame_stride=4 if cfg.num_frames == 16 else 2)
    with seeded():
        model = VideoViT(name, cfg, pre)
    if checkpoint is not None:
        load_checked(model, checkpoint, f"{name} (VideoMAE layout)", ignore=_IGNORED, convert=from_videomae)
    model.random_init, model.checkpoint = random_init, checkpoint
    return model.eval()


def _factory(name: str) -> Callable[..., VideoViT]:
    def build(checkpoint: str | None = None, random_init: bool = False) -> VideoViT:
        return create_video_vit(name, checkpoint, random_init)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"VideoMAE-layout space-time ViT {name}: {SIZES[name]}"
    return build


for _name in SIZES:
    BACKBONES.add(_name, _factory(_name))
