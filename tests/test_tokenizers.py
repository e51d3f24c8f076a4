"""Frame tokenisers: patch layout and targets, the DALL-E dVAE encoder's weight format, the small VQ-VAE.

Run: python -m pytest tests/test_tokenizers.py -q
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from toto_eval.common.errors import CheckpointError, ConfigError
from toto_eval.harness.backbone import Preprocess
from toto_eval.pretrain import tokenizers as tk


def frames(n: int = 2, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_patchify_layout_is_row_column_channel():
    x = torch.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4)  # (N, C, H, W)
    p = tk.patchify(x, 2)
    assert p.shape == (2, 2, 2, 12)
    # patch (1, 0) of image 0 covers rows 2-3, columns 0-1; values run (row, column, channel)
    expect = [x[0, c, r, col].item() for r in (2, 3) for col in (0, 1) for c in range(3)]
    assert p[0, 1, 0].tolist() == expect


def test_patch_tokens_roundtrip_to_the_backbone_input():
    f = frames()
    tokens = tk.PatchTokenizer(8).encode(f)
    assert tokens.shape == (2, 2, 2, 192) and tokens.dtype == np.uint8
    # training reads uint8 patches through patch_inputs; the evaluated backbone patchifies normalised frames
    normalised = Preprocess(mean=tk.IMAGENET_MEAN, std=tk.IMAGENET_STD).normalize(
        torch.from_numpy(f).permute(0, 3, 1, 2)
    )
    torch.testing.assert_close(tk.patch_inputs(torch.from_numpy(tokens)), tk.patchify(normalised, 8))


def test_patch_targets_are_per_patch_standardised():
    t = tk.patch_targets(torch.from_numpy(tk.PatchTokenizer(8).encode(frames())))
    torch.testing.assert_close(t.mean(-1), torch.zeros(2, 2, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(t.std(-1, unbiased=False), torch.ones(2, 2, 2), atol=1e-3, rtol=0)
    flat = tk.patch_targets(torch.full((1, 192), 7, dtype=torch.uint8))
    assert torch.isfinite(flat).all() and flat.abs().max() == 0


def test_grid_and_bad_input_are_config_errors():
    assert tk.PatchTokenizer(8).grid(64) == (8, 8)
    with pytest.raises(ConfigError, match="multiple"):
        tk.PatchTokenizer(8).grid(60)
    with pytest.raises(ConfigError, match="uint8"):
        tk.PatchTokenizer(8).encode(frames().astype(np.float32))
    with pytest.raises(ConfigError, match="unknown tokeniser"):
        tk.load_tokenizer("bpe")


def test_dvae_keys_follow_the_released_weights():
    keys = set(tk.DVAEEncoder(n_hid=64, vocab_size=512).state_dict())
    for key in (
        "blocks.input.w",
        "blocks.group_1.block_1.res_path.conv_1.w",
        "blocks.group_2.block_1.id_path.w",  # 64 -> 128 channels: a 1x1 projection
        "blocks.group_4.block_2.res_path.conv_4.b",
        "blocks.output.conv.w",
    ):
        assert key in keys
    assert "blocks.group_1.block_1.id_path.w" not in keys  # same width: identity


def test_dvae_tokenizer_loads_safetensors_and_encodes(tmp_path):
    encoder = tk.DVAEEncoder(n_hid=64, vocab_size=512)
    save_file(encoder.state_dict(), str(tmp_path / "enc.safetensors"))
    tok = tk.load_tokenizer(f"dvae:{tmp_path / 'enc.safetensors'}")
    codes = tok.encode(frames(size=16))
    assert codes.shape == (2, 2, 2) and codes.dtype == np.int16 and tok.vocab_size == 512
    with torch.no_grad():
        expect = encoder(torch.from_numpy(frames(size=16)).permute(0, 3, 1, 2).float() / 255).argmax(1)
    assert (torch.from_numpy(codes).long() == expect).all()
    torch.save(encoder.state_dict(), tmp_path / "enc.pt")  # a plain state dict also loads (weights_only)
    assert (tk.load_tokenizer(f"dvae:{tmp_path / 'enc.pt'}").encode(frames(size=16)) == codes).all()


def test_dvae_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        tk.load_tokenizer(f"dvae:{tmp_path / 'missing.safetensors'}")
    torch.save(tk.DVAEEncoder(n_hid=64, vocab_size=512), tmp_path / "module.pt")  # a pickled module: refused
    with pytest.raises(CheckpointError, match="module.pt"):
        tk.load_tokenizer(f"dvae:{tmp_path / 'module.pt'}")
    state = tk.DVAEEncoder(n_hid=64, vocab_size=512).state_dict()
    state.pop("blocks.output.conv.b")
    save_file(state, str(tmp_path / "partial.safetensors"))
    with pytest.raises(CheckpointError, match="partial.safetensors.*missing"):
        tk.load_tokenizer(f"dvae:{tmp_path / 'partial.safetensors'}")


class _Frames:
    """A stand-in mixture: single random 32x32 frames, a pure function of the index."""

    resolution = 32

    def sample(self, i):
        class Clip:
            frames = frames(1, 32, seed=i)

        return Clip


def test_vq_trains_saves_and_encodes_deterministically(tmp_path):
    cfg = tk.VQConfig(codes=16, code_dim=8, hidden=16, steps=4, batch_size=4, restart_every=2)
    tk.train_vq(_Frames(), tmp_path / "a", cfg, log=lambda _: None)
    tk.train_vq(_Frames(), tmp_path / "b", cfg, log=lambda _: None)
    a, b = (tk.load_tokenizer(f"vq:{tmp_path / d}") for d in "ab")
    codes = a.encode(frames(3, 32))
    assert codes.shape == (3, 4, 4) and codes.min() >= 0 and codes.max() < 16
    assert (codes == b.encode(frames(3, 32))).all() and a.identity() == b.identity()
    with pytest.raises(CheckpointError, match="vq.json"):
        tk.load_tokenizer(f"vq:{tmp_path / 'nothing'}")
