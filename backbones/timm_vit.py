"""timm Vision Transformers (MAE, DINO, DINOv2, DeiT, ... or any plain timm ViT by name) behind the contract.

timm already has the per-layer API the harness is modelled on: `forward_intermediates` takes the same layer
rule, stops early, removes prefix (CLS/register) tokens and returns `(N, D, H', W')` maps. So this wrapper only
folds time into the batch (a video is run frame by frame and every frame's tokens are kept, `(B, T, H', W', D)`),
and owns weight loading: models are always created with `pretrained=False` and filled from a local file in
timm's own layout (timm's `checkpoint_filter_fn` converts the foreign layouts timm itself accepts and resamples
the position table to our resolution). Every model is built with `dynamic_img_size=True`, so any input whose
sides are a multiple of the patch size works, and the paper's common 224 px resolution is used for all.

timm is an optional dependency: it is imported when a timm backbone is built, never when this module is.
Names: `vit_base_mae` etc. are fixed aliases of timm names with their pretrained tag (the tag picks the
normalisation statistics); `create_timm_backbone("timm:<name>")` is the generic route for any other timm ViT.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from toto_eval.common.errors import ConfigError
from toto_eval.harness.backbone import Backbone, Layers, Preprocess, resolve_layers
from toto_eval.harness.registry import BACKBONES

from ._weights import check_fits, load_checked, require_weights, seeded

# alias -> timm "architecture.tag"; the families the Toto paper compares against (Tables 2-3).
ALIASES: dict[str, str] = {
    "vit_base_mae": "vit_base_patch16_224.mae",
    "vit_large_mae": "vit_large_patch16_224.mae",
    "vit_huge_mae": "vit_huge_patch14_224.mae",
    "vit_small_dino": "vit_small_patch16_224.dino",
    "vit_base_dino": "vit_base_patch16_224.dino",
    "dinov2_vits14": "vit_small_patch14_dinov2.lvd142m",
    "dinov2_vitb14": "vit_base_patch14_dinov2.lvd142m",
    "dinov2_vitl14": "vit_large_patch14_dinov2.lvd142m",
    "dinov2_vitg14": "vit_giant_patch14_dinov2.lvd142m",
    "deit_tiny": "deit_tiny_patch16_224.fb_in1k",
    "deit_small": "deit_small_patch16_224.fb_in1k",
    "deit_base": "deit_base_patch16_224.fb_in1k",
}
# Keys a timm checkpoint may carry that a headless feature extractor does not hold.
_IGNORED = ("head.", "head_dist.", "fc_norm.", "decoder", "mask_token")


class TimmViT(Backbone):
    """A timm ViT: per-block token grids of every frame, `(B, T, H', W', D)`."""

    def __init__(
        self,
        name: str,
        model: nn.Module,
        timm_name: str,
        resolution: int,
        frames: int,
        frame_stride: int,
        overrides: dict[str, Any],
    ) -> None:
        super().__init__()
        self.name = name
        self.model = model.eval()
        self.timm_name = timm_name
        self.overrides = overrides
        self.num_layers = len(model.blocks)
        self.embed_dim = int(model.embed_dim)
        self.num_heads = int(model.blocks[0].attn.num_heads)
        self.patch_size = int(model.patch_embed.patch_size[0])
        cfg = model.pretrained_cfg
        self.preprocess = Preprocess(
            resolution=resolution,
            frames=frames,
            frame_stride=frame_stride,
            mean=tuple(cfg.get("mean", Preprocess.mean)),
            std=tuple(cfg.get("std", Preprocess.std)),
        )

    def forward_features(self, x: torch.Tensor, layers: Layers = None) -> dict[int, torch.Tensor]:
        take = resolve_layers(self.num_layers, layers)
        b, t = x.shape[:2]
        # (B*T, D, H', W') per requested block, prefix tokens already removed by timm
        maps = self.model.forward_intermediates(
            x.flatten(0, 1), indices=take, stop_early=True, intermediates_only=True, output_fmt="NCHW"
        )
        return {layer: m.permute(0, 2, 3, 1).unflatten(0, (b, t)) for layer, m in zip(take, maps, strict=True)}

    def config(self) -> dict:
        return {**super().config(), "timm_name": self.timm_name, "overrides": self.overrides}


def create_timm_backbone(
    timm_name: str,
    checkpoint: str | None = None,
    random_init: bool = False,
    *,
    name: str | None = None,
    resolution: int = 224,
    frames: int = 16,
    frame_stride: int = 4,
    **overrides: Any,
) -> TimmViT:
    """Build timm `timm_name` (with `pretrained=False`) and fill it from `checkpoint` or a seeded random init."""
    name = name or f"timm:{timm_name}"
    require_weights(name, checkpoint, random_init)
    timm = _import_timm(name)
    _check_name(timm, timm_name)
    try:
        with seeded():
            model = timm.create_model(
                timm_name, pretrained=False, num_classes=0, img_size=resolution, dynamic_img_size=True, **overrides
            )
    except TypeError as err:
        raise ConfigError(f"timm model {timm_name!r} is not a plain ViT this wrapper supports ({err})") from err
    _check_flat(model, timm_name)
    if checkpoint is not None:
        _load_timm(model, checkpoint, timm_name)
    backbone = TimmViT(name, model, timm_name, resolution, frames, frame_stride, overrides)
    backbone.random_init, backbone.checkpoint = random_init, checkpoint
    return backbone


def _import_timm(name: str) -> Any:
    try:
        import timm
    except ImportError as err:
        raise ConfigError(f"backbone {name!r} needs timm: pip install timm") from err
    return timm


def _check_name(timm: Any, timm_name: str) -> None:
    arch, _, tag = timm_name.partition(".")
    if timm.is_model(arch) and (not tag or timm_name in timm.models.get_arch_pretrained_cfgs(arch)):
        return
    known = timm.list_models(pretrained=True) if tag else timm.list_models()
    close = difflib.get_close_matches(timm_name, known, n=3, cutoff=0.6)
    if not close:  # difflib finds nothing for a badly mangled name; fall back to names sharing its first word
        close = [m for m in known if arch.split("_")[0] in m][:3]
    hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models('vit_*')"
    raise ConfigError(f"unknown timm model {timm_name!r}; {hint}")


def _check_flat(model: nn.Module, timm_name: str) -> None:
    # Hierarchical models (Swin, ConvNeXt) have a different grid per stage; the contract needs one grid.
    needed = ("blocks", "patch_embed", "embed_dim", "forward_intermediates")
    if not all(hasattr(model, a) for a in needed):
        raise ConfigError(
            f"timm model {timm_name!r} is not a plain ViT (needs {', '.join(needed)}); "
            "wrap it as its own Backbone (see 'Add your backbone' in the README)"
        )


def _load_timm(model: nn.Module, checkpoint: str, timm_name: str) -> None:
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    expected = model.state_dict()

    def convert(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # Shapes are checked before timm's filter, which would otherwise resample a /14 patch embedding into a
        # /16 model without complaint; only the position table may differ (it is resampled to our resolution).
        shared = {k: v for k, v in state.items() if k in expected}
        check_fits(expected, shared, checkpoint, timm_name, skip_shape={"pos_embed"}, missing_ok=True)
        return filter_fn(state, model) if filter_fn is not None else state

    load_checked(model, checkpoint, timm_name, ignore=_IGNORED, convert=convert)


def _factory(alias: str, timm_name: str) -> Callable[..., TimmViT]:
    def build(checkpoint: str | None = None, random_init: bool = False) -> TimmViT:
        return create_timm_backbone(timm_name, checkpoint, random_init, name=alias)

    build.__name__ = build.__qualname__ = alias
    build.__doc__ = f"timm {timm_name} at 224 px, 16 frames every 4th for video tasks."
    return build


for _alias, _timm_name in ALIASES.items():
    BACKBONES.add(_alias, _factory(_alias, _timm_name))


BACKBONES.add_family("timm", create_timm_backbone)  # any plain timm ViT by its timm name: timm:<name>


@BACKBONES.register("vit_test")
def vit_test(checkpoint: str | None = None, random_init: bool = False) -> TimmViT:
    """timm's `test_vit` (6 blocks, dim 64, patch 16) at 64 px and 4 frames: the CPU-fast timm twin for tests."""
    return create_timm_backbone(
        "test_vit", checkpoint, random_init, name="vit_test", resolution=64, frames=4, frame_stride=2
    )
