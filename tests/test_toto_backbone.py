"""Toto behind the backbone contract: golden features, grid layout, special tokens, causality across frames, early
stopping, and checkpoints that do not fit.

Run: python -m pytest tests/test_toto_backbone.py -q
Regenerate the golden features (only after a deliberate change): python tests/test_toto_backbone.py --regen
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from toto_eval.backbones.toto import START_IMAGE, START_VIDEO
from toto_eval.common.errors import CheckpointError
from toto_eval.harness.evaluate import create_backbone
from toto_eval.pretrain import tokenizers as tk
from toto_eval.pretrain.archs import get_arch
from toto_eval.pretrain.checkpoint import save
from toto_eval.pretrain.model import Toto

GOLDEN = Path(__file__).parent / "assets" / "golden" / "toto_test_features.safetensors"
GOLDEN_LAYERS = [0, 2, 3]


def golden_input() -> torch.Tensor:
    return torch.randn(1, 2, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # a 2-frame clip


@pytest.fixture(scope="module")
def toto():
    return create_backbone("toto_test").eval()


@torch.no_grad()
def test_features_equal_the_golden_ones_to_float_rounding(toto):
    """Seeded init + patch layout + trunk: any change to what toto_test computes shows up here. Not to the bit:
    another CPU's kernels round differently (up to 6e-8 on features of magnitude 1 between two machines, once),
    while a change to the computation moves them by orders of magnitude more."""
    golden = load_file(str(GOLDEN))
    out = toto.forward_features(golden_input(), GOLDEN_LAYERS)
    assert sorted(out) == GOLDEN_LAYERS
    for layer, feats in out.items():
        torch.testing.assert_close(feats, golden[f"layer_{layer}"], rtol=0, atol=1e-6, msg=f"layer {layer}")


def test_grid_shapes_and_layer_rule(toto):
    x = torch.randn(2, 3, 3, 64, 64)
    out = toto.forward_features(x, layers=2)
    assert sorted(out) == [2, 3]
    assert out[3].shape == (2, 3, 8, 8, 64) == (2, *toto.token_grid(3, 64, 64), toto.embed_dim)


def test_early_stop_equals_full_forward(toto):
    x = torch.randn(1, 2, 3, 64, 64)
    with torch.no_grad():
        full = toto.forward_features(x)
        early = toto.forward_features(x, [1])
    torch.testing.assert_close(early[1], full[1])


def test_sequence_layout_and_causality(toto):
    x = torch.randn(1, 2, 3, 64, 64)
    seq, grid = toto.embed(x)
    assert grid == (2, 8, 8) and seq.shape == (1, 2 * 64 + 2, 64)
    start, end = toto.model.embed_tokens(torch.tensor([START_VIDEO, 2]))
    torch.testing.assert_close(seq[0, 0], start)
    torch.testing.assert_close(seq[0, -1], end)
    image_seq, _ = toto.embed(x[:, :1])
    torch.testing.assert_close(image_seq[0, 0], toto.model.embed_tokens(torch.tensor(START_IMAGE)))
    y = x.clone()
    y[:, 1] += 1.0  # a later frame cannot change an earlier frame's features (causal decoder)
    with torch.no_grad():
        a, b = toto.forward_features(x, [-1])[3], toto.forward_features(y, [-1])[3]
    torch.testing.assert_close(a[:, 0], b[:, 0])
    assert not torch.allclose(a[:, 1], b[:, 1])


def test_seeded_init_is_deterministic_and_fingerprinted(toto):
    again = create_backbone("toto_test")
    assert again.fingerprint() == toto.fingerprint()
    with torch.no_grad():
        again.model.layers[0].attention.wq.weight[0, 0] += 1.0
    assert again.fingerprint() != toto.fingerprint()


def test_checkpoint_round_trip_and_mismatch(tmp_path, toto):
    save(tmp_path / "ok", toto.model)
    loaded = create_backbone("toto_test", checkpoint=tmp_path / "ok")
    assert loaded.fingerprint() == toto.fingerprint() and loaded.checkpoint == str(tmp_path / "ok")
    wider = dataclasses.replace(toto.model.config, dim=128, n_heads=4, ffn_dim=256)
    save(tmp_path / "bad", Toto(wider))
    shutil.copy(tmp_path / "ok" / "model.safetensors", tmp_path / "bad" / "model.safetensors")  # config != weights
    with pytest.raises(CheckpointError, match=r"bad/model.safetensors: tensor .* has shape"):
        create_backbone("toto_test", checkpoint=tmp_path / "bad")
    save(tmp_path / "gpt2", get_arch("gpt2").build("test", patch_dim=192))
    with pytest.raises(CheckpointError, match="a gpt2 checkpoint, but this model is toto"):
        create_backbone("toto_test", checkpoint=tmp_path / "gpt2")


def test_paper_sizes_need_weights_or_random_init():
    with pytest.raises(CheckpointError, match="--random-init"):
        create_backbone("toto_base")


def dvae_checkpoint(root: Path, seed: int = 0) -> Path:
    """A random-weight dVAE (the DALL-E architecture, narrow) and a test-size Toto checkpoint that records it."""
    torch.manual_seed(seed)
    save_file(tk.DVAEEncoder(n_hid=8, vocab_size=64).state_dict(), str(root / f"dvae{seed}.safetensors"))
    tokenizer = tk.load_tokenizer(f"dvae:{root / f'dvae{seed}.safetensors'}")
    config = dataclasses.replace(get_arch("toto").sizes["test"], vocab_size=4 + 64)
    extra = {
        "tokenizer": {**tokenizer.record(32), "code_offset": 4},
        "data": {"resolution": 32, "frames": 2, "frame_stride": 4, "patch_size": 8},
    }
    return save(root / f"ckpt{seed}", Toto(config), extra=extra)


@torch.no_grad()
def test_dvae_checkpoint_evaluates_with_its_tokenizer(tmp_path):
    ckpt = dvae_checkpoint(tmp_path)
    bb = create_backbone("toto_base", checkpoint=ckpt).eval()
    pre = bb.preprocess
    assert (pre.tokenizer, pre.resolution, pre.frames, bb.patch_size) == ("dvae", 32, 2, 8)
    pixels = torch.randint(0, 256, (1, 2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    seq, grid = bb.embed(pre.normalize(pixels))
    codes = torch.from_numpy(bb.tokenizer.encode(pixels[0].permute(0, 2, 3, 1).numpy())).long()  # as shards do
    ids = torch.cat([torch.tensor([START_VIDEO]), codes.flatten() + 4, torch.tensor([2])])
    assert grid == (2, 4, 4) and torch.equal(seq[0], bb.model.embed_tokens(ids))
    assert bb.forward_features(pre.normalize(pixels), [0, -1])[3].shape == (1, 2, 4, 4, 64)
    # same model weights, another tokeniser: other features, so another fingerprint
    other = create_backbone("toto_base", checkpoint=dvae_checkpoint(tmp_path, seed=1))
    assert other.config()["tokenizer"]["sha256"] != bb.config()["tokenizer"]["sha256"]
    assert other.fingerprint() != bb.fingerprint()


def test_missing_or_changed_tokenizer_is_one_line_naming_it(tmp_path):
    ckpt = dvae_checkpoint(tmp_path)
    weights = tmp_path / "dvae0.safetensors"
    torch.manual_seed(5)
    save_file(tk.DVAEEncoder(n_hid=8, vocab_size=64).state_dict(), str(weights))  # same shapes, other weights
    with pytest.raises(CheckpointError, match=rf"^{weights}: sha256 \w+\.\.\. differs from the dvae tokeniser") as err:
        create_backbone("toto_base", checkpoint=ckpt)
    assert "\n" not in str(err.value)
    weights.unlink()
    with pytest.raises(CheckpointError, match=rf"^{weights}: dvae tokeniser weights not found") as err:
        create_backbone("toto_base", checkpoint=ckpt)
    assert "\n" not in str(err.value)


if __name__ == "__main__" and "--regen" in sys.argv:
    backbone = create_backbone("toto_test").eval()
    with torch.no_grad():
        features = backbone.forward_features(golden_input(), GOLDEN_LAYERS)
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"layer_{k}": v.contiguous() for k, v in features.items()}, str(GOLDEN))
    print(f"wrote layers {GOLDEN_LAYERS} of toto_test ({backbone.fingerprint()}) to {GOLDEN}")
