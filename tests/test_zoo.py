"""Zoo backbones against independent references, their checkpoint loading, and their errors.

Run: python -m pytest tests/test_zoo.py -q

The contract file checks what every backbone shares; this one checks each family computes what its reference
computes: timm's own `forward_features`, torchvision's own pooled output, Hugging Face's VideoMAE, and the
pixels of a hand-made frame. Checkpoints are written in every format we claim to read and must reproduce the
model exactly; a checkpoint for another architecture must fail naming the file and the first tensor.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from toto_eval.backbones._weights import read_state_dict, require_weights
from toto_eval.backbones.baselines import pixels
from toto_eval.backbones.timm_vit import create_timm_backbone, vit_test
from toto_eval.backbones.torchvision_cnn import TorchvisionResNet
from toto_eval.backbones.video_vit import SIZES, VideoViT, create_video_vit, from_videomae, sinusoid_table
from toto_eval.common.errors import CheckpointError, ConfigError
from toto_eval.harness.backbone import Preprocess
from toto_eval.harness.registry import BACKBONES


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- weights


def test_weights_rule_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="pass --checkpoint PATH or --random-init"):
        require_weights("x", None, False)
    with pytest.raises(CheckpointError, match="not both"):
        require_weights("x", "a.pth", True)
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "missing.pth")
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"garbage.pth: cannot read checkpoint"):
        read_state_dict(bad)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(CheckpointError, match="no tensors found"):
        read_state_dict(empty)


def test_random_init_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a, b = vit_test(random_init=True), vit_test(random_init=True)
    assert torch.rand(1) == expected  # building did not consume the caller's random stream
    assert a.fingerprint() == b.fingerprint()
    assert a.random_init and a.checkpoint is None


@pytest.mark.parametrize(
    "fmt", ["model.safetensors", "plain.pth", "pytorch_model.bin", "wrapped.pth", "ddp.ckpt", "ema.pth"]
)
def test_timm_checkpoint_formats_round_trip(tmp_path: Path, fmt: str) -> None:
    src = vit_test(random_init=True)
    with torch.no_grad():  # distinct from the seeded init, so a silent re-init would be caught
        for p in src.parameters():
            p.add_(0.01 * _randn(*p.shape, seed=p.numel()))
    state = {k: v.clone() for k, v in src.model.state_dict().items()}
    path = tmp_path / fmt
    if fmt.endswith(".safetensors"):
        save_file(state, str(path))
    elif fmt == "wrapped.pth":
        torch.save({"model": state, "epoch": 5, "args": {"lr": 0.1}}, path)
    elif fmt == "ddp.ckpt":
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    elif fmt == "ema.pth":
        torch.save({"state_dict": {k: torch.zeros_like(v) for k, v in state.items()}, "state_dict_ema": state}, path)
    else:
        torch.save(state, path)
    loaded = vit_test(checkpoint=str(path))
    assert loaded.fingerprint() == src.fingerprint()
    assert loaded.checkpoint == str(path) and not loaded.random_init


def test_timm_wrong_architecture_names_file_and_tensor(tmp_path: Path) -> None:
    other = create_timm_backbone("test_vit", random_init=True, embed_dim=32, num_heads=2)
    path = tmp_path / "other.pth"
    torch.save(other.model.state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        vit_test(checkpoint=str(path))
    msg = str(err.value)
    assert msg.startswith(f"{path}: does not fit test_vit: tensor 'cls_token' has shape (1, 1, 32)")
    assert "(1, 1, 64) in the model" in msg and "--random-init" in msg and "\n" not in msg


def test_timm_patch_size_mismatch_is_not_resampled(tmp_path: Path) -> None:
    other = create_timm_backbone("test_vit", random_init=True, patch_size=8)
    path = tmp_path / "patch8.pth"
    torch.save(other.model.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"patch_embed\.proj\.weight' has shape"):
        vit_test(checkpoint=str(path))


def test_timm_position_table_is_resampled_from_another_resolution(tmp_path: Path) -> None:
    big = create_timm_backbone("test_vit", random_init=True, resolution=128)  # 8x8 position grid
    path = tmp_path / "r128.safetensors"
    save_file(big.model.state_dict(), str(path))
    small = vit_test(checkpoint=str(path))  # 64 px: 4x4 grid
    assert small.model.pos_embed.shape == (1, 1 + 16, 64)
    assert torch.equal(small.model.blocks[0].attn.qkv.weight, big.model.blocks[0].attn.qkv.weight)


def test_unexpected_tensor_is_an_error(tmp_path: Path) -> None:
    state = vit_test(random_init=True).model.state_dict()
    state["blocks.6.norm1.weight"] = torch.ones(64)  # a seventh block the model does not have
    path = tmp_path / "deeper.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'blocks\.6\.norm1\.weight'"):
        vit_test(checkpoint=str(path))


# ---------------------------------------------------------------- timm


def test_timm_names_errors_suggest() -> None:
    with pytest.raises(ConfigError, match=r"unknown timm model 'vit_bsae_patch16_224'; did you mean vit_base_patch16"):
        create_timm_backbone("vit_bsae_patch16_224", random_init=True)
    with pytest.raises(ConfigError, match=r"did you mean vit_base_patch16_224.mae"):
        create_timm_backbone("vit_base_patch16_224.mea", random_init=True)
    with pytest.raises(ConfigError, match="not a plain ViT"):
        create_timm_backbone("test_convnext", random_init=True)
    with pytest.raises(ConfigError, match="did you mean vit_base_mae"):
        BACKBONES.get("vit_base_mea")


def test_timm_layers_match_timm_forward_and_frames_are_independent() -> None:
    bb = vit_test(random_init=True)
    x = _randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        last = bb.forward_features(x, [-1])[5]  # (B, T, 4, 4, 64)
        ref = bb.model.norm(last.flatten(2, 3))  # timm's forward_features applies the final norm
        timm_tokens = bb.model.forward_features(x.flatten(0, 1))[:, bb.model.num_prefix_tokens :]
        torch.testing.assert_close(ref.flatten(0, 1), timm_tokens, rtol=1e-5, atol=1e-5)
        per_frame = torch.stack([bb.forward_features(x[:, t : t + 1], [2])[2][:, 0] for t in range(3)], dim=1)
        torch.testing.assert_close(bb.forward_features(x, [2])[2], per_frame, rtol=1e-5, atol=1e-5)
    assert bb.preprocess.mean == (0.5, 0.5, 0.5)  # test_vit's own statistics, from its timm config
    assert bb.token_grid(3, 64, 64) == (3, 4, 4)


def test_timm_aliases_name_real_timm_models() -> None:
    import timm

    from toto_eval.backbones.timm_vit import ALIASES

    for alias, name in ALIASES.items():
        arch = name.split(".")[0]
        assert name in timm.models.get_arch_pretrained_cfgs(arch), alias


# ---------------------------------------------------------------- torchvision


def test_resnet_last_stage_mean_is_torchvision_pooled_output(tmp_path: Path) -> None:
    import torchvision

    ref = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.01 * _randn(*p.shape, seed=p.numel()))
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)  # includes fc.*, which the backbone ignores
    bb = BACKBONES.get("resnet18")(checkpoint=str(path))
    assert isinstance(bb, TorchvisionResNet) and bb.layer_dims == (64, 128, 256, 512)
    x = _randn(2, 1, 3, 64, 64)
    with torch.no_grad():
        feats = bb.forward_features(x)
        ref.fc = torch.nn.Identity()
        pooled = ref(x[:, 0])  # torchvision: global average of layer4
        stage1 = ref.layer1(ref.maxpool(ref.relu(ref.bn1(ref.conv1(x[:, 0])))))  # (B, 64, 16, 16)
    torch.testing.assert_close(feats[3].mean(dim=(1, 2, 3)), pooled, rtol=1e-5, atol=1e-5)
    assert feats[0].shape == (2, 1, 2, 2, 64)
    # layer1 is average-pooled 8x8 onto the stride-32 grid, so its token mean is the stage's spatial mean
    torch.testing.assert_close(feats[0].mean(dim=(1, 2, 3)), stage1.mean(dim=(2, 3)), rtol=1e-5, atol=1e-5)


def test_resnet_wrong_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "vit.pth"
    torch.save(vit_test(random_init=True).model.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"vit.pth: does not fit torchvision resnet18: tensor 'conv1.weight'"):
        BACKBONES.get("resnet18")(checkpoint=str(path))


# ---------------------------------------------------------------- video ViT


def test_sinusoid_table_by_hand() -> None:
    t = sinusoid_table(5, 8)
    torch.testing.assert_close(t[0], torch.tensor([0.0, 1.0] * 4))
    assert t[1, 0].item() == pytest.approx(math.sin(1.0))
    assert t[1, 1].item() == pytest.approx(math.cos(1.0))
    assert t[3, 2].item() == pytest.approx(math.sin(3 / 10000 ** (2 / 8)), abs=1e-6)
    assert t[4, 7].item() == pytest.approx(math.cos(4 / 10000 ** (6 / 8)), abs=1e-6)


def test_video_vit_equals_hf_videomae() -> None:
    transformers = pytest.importorskip("transformers")
    hc = transformers.VideoMAEConfig(
        image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=64, num_hidden_layers=3,
        num_attention_heads=4, intermediate_size=256, layer_norm_eps=1e-6, qkv_bias=True, use_mean_pooling=False,
    )  # fmt: skip
    torch.manual_seed(0)
    hf = transformers.VideoMAEModel(hc).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("bias"):  # random biases, so a dropped q or v bias would show
                p.normal_()
    ours = VideoViT("hf", replace(SIZES["video_vit_test"], depth=3), Preprocess())
    ours.load_state_dict(from_videomae(hf.state_dict()))
    x = _randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        hidden = hf(x, output_hidden_states=True).hidden_states
        feats = ours.eval().forward_features(x)
    for i in range(3):
        torch.testing.assert_close(feats[i].flatten(1, 3), hidden[i + 1], rtol=1e-5, atol=1e-5)


def test_video_vit_loads_videomae_pretraining_checkpoint(tmp_path: Path) -> None:
    src = create_video_vit("video_vit_test", random_init=True)
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.01 * _randn(*p.shape, seed=p.numel()))
    state = {f"encoder.{k}": v for k, v in src.state_dict().items()}
    state |= {"encoder.norm.weight": torch.ones(64), "decoder.blocks.0.norm1.weight": torch.ones(32),
              "mask_token": torch.zeros(1, 1, 32), "encoder_to_decoder.weight": torch.zeros(32, 64)}  # fmt: skip
    path = tmp_path / "videomae_pretrain.pth"
    torch.save({"model": state}, path)
    assert create_video_vit("video_vit_test", checkpoint=str(path)).fingerprint() == src.fingerprint()


def test_video_vit_tubelets_images_and_other_grids() -> None:
    bb = create_video_vit("video_vit_test", random_init=True)
    with torch.no_grad():
        clip = bb.forward_features(_randn(1, 4, 3, 32, 32), [0])[0]
        assert clip.shape == (1, 2, 4, 4, 64) and bb.token_grid(4, 32, 32) == (2, 4, 4)
        image = _randn(1, 1, 3, 32, 32)
        still = image.expand(-1, 2, -1, -1, -1)  # an image is a clip of one repeated frame
        torch.testing.assert_close(bb.forward_features(image, [1])[1], bb.forward_features(still, [1])[1])
        assert bb.forward_features(_randn(1, 8, 3, 48, 48), [0])[0].shape == (1, 4, 6, 6, 64)
    assert torch.equal(bb._positions(bb.native_grid), bb.pos_table)
    # a resampled table at the native size is the table itself
    table = bb.pos_table.T.reshape(1, 64, *bb.native_grid)
    same = torch.nn.functional.interpolate(table, size=bb.native_grid, mode="trilinear", align_corners=False)
    torch.testing.assert_close(same.flatten(2)[0].T, bb.pos_table)


# ---------------------------------------------------------------- pixels


def test_pixels_are_the_patches() -> None:
    bb = pixels()
    x = _randn(1, 2, 3, 32, 48)
    out = bb.forward_features(x)[0]
    assert out.shape == (1, 2, 2, 3, 768) and bb.token_grid(2, 32, 48) == (2, 2, 3)
    torch.testing.assert_close(out[0, 1, 1, 2], x[0, 1, :, 16:32, 32:48].reshape(-1))
    assert bb.num_params() == 0 and not bb.random_init
    with pytest.raises(CheckpointError, match="has no weights"):
        pixels(checkpoint="w.pth")
