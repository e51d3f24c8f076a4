"""Tests of the Toto transformer (pretrain/model.py): shapes, causality, early stopping, init, configs, LLaMA parity.

Run: python -m pytest tests/test_model.py -q
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from toto_eval.common.config import build_config
from toto_eval.common.errors import ConfigError
from toto_eval.pretrain.model import TOTO_CONFIGS, Toto, TotoConfig, llama_ffn_dim

CFG = TOTO_CONFIGS["test"]


@pytest.fixture(scope="module")
def model() -> Toto:
    return Toto(dataclasses.replace(CFG, rope_base=500.0), seed=1).eval()


def _ids(length: int = 40, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, CFG.vocab_size, (2, length), generator=torch.Generator().manual_seed(seed))


def test_shapes(model: Toto) -> None:
    ids = _ids()
    h = model.embed_tokens(ids)
    assert h.shape == (2, 40, CFG.dim)
    hidden = model(h)
    assert hidden.shape == (2, 40, CFG.dim)
    assert model.logits(hidden).shape == (2, 40, CFG.vocab_size)
    with pytest.raises(ValueError, match="no patch"):
        model.embed_patches(torch.zeros(2, 40, 12))


def test_patch_tokens() -> None:
    toto = Toto(dataclasses.replace(CFG, patch_dim=48))
    h = toto.embed_patches(torch.randn(3, 10, 48))
    assert h.shape == (3, 10, CFG.dim)
    assert toto.predict_patches(toto(h)).shape == (3, 10, 48)
    assert toto.patch_embed.bias is None and toto.patch_head.bias is None


def test_no_biases(model: Toto) -> None:
    assert all(not name.endswith("bias") for name, _ in model.named_parameters())


@torch.no_grad()
def test_causality(model: Toto) -> None:
    ids = _ids()
    changed = ids.clone()
    changed[:, 25] = (changed[:, 25] + 1) % CFG.vocab_size
    a, b = model(model.embed_tokens(ids)), model(model.embed_tokens(changed))
    assert torch.allclose(a[:, :25], b[:, :25], atol=1e-6)
    assert (a[:, 25:] - b[:, 25:]).abs().amax(dim=-1).min() > 1e-4  # every later position sees the change


@torch.no_grad()
def test_hidden_states_equal_full_forward_and_stop_early(model: Toto) -> None:
    h = model.embed_tokens(_ids())
    everything = model.hidden_states(h, list(range(CFG.n_layers)))
    assert sorted(everything) == list(range(CFG.n_layers))
    assert torch.equal(model.norm(everything[CFG.n_layers - 1]), model(h))

    ran = []
    hooks = [layer.register_forward_hook(lambda m, i, o, k=k: ran.append(k)) for k, layer in enumerate(model.layers)]
    try:
        some = model.hidden_states(h, [1, -4])  # -4 is block 0 of 4
    finally:
        for hook in hooks:
            hook.remove()
    assert ran == [0, 1]
    assert sorted(some) == [0, 1]
    assert torch.equal(some[1], everything[1]) and torch.equal(some[0], everything[0])
    with pytest.raises(ValueError):
        model.hidden_states(h, [CFG.n_layers])


def test_determinism() -> None:
    a, b, c = Toto(CFG, seed=3), Toto(CFG, seed=3), Toto(CFG, seed=4)
    for (name, x), y, z in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
        assert x.ndim == 1 or not torch.equal(x, z), name
    h = a.embed_tokens(_ids())
    with torch.no_grad():
        assert torch.equal(a(h), a(h))


def test_init_scales() -> None:
    toto = Toto(dataclasses.replace(CFG, dim=256, n_heads=4, ffn_dim=512), seed=0)
    residual_std = 0.02 / (2 * CFG.n_layers) ** 0.5
    assert toto.layers[0].attention.wq.weight.std().item() == pytest.approx(0.02, rel=0.03)
    assert toto.layers[0].attention.wo.weight.std().item() == pytest.approx(residual_std, rel=0.03)
    assert toto.layers[2].feed_forward.w2.weight.std().item() == pytest.approx(residual_std, rel=0.03)
    assert toto.output.weight.std().item() == pytest.approx(0.02, rel=0.03)
    assert torch.equal(toto.norm.weight, torch.ones(256))


def test_meta_construction_skips_init() -> None:
    with torch.device("meta"):
        toto = Toto(TOTO_CONFIGS["1b"])
    assert all(p.is_meta for p in toto.parameters())
    assert len(toto.state_dict()) == 2 + 9 * 22 + 1  # weights only: no rope buffers


@torch.no_grad()
def test_max_seq_len_is_no_limit_for_rope() -> None:
    """RoPE has no learned length: max_seq_len records the training length, and longer inputs run (issue 15)."""
    toto = Toto(dataclasses.replace(CFG, max_seq_len=16)).eval()
    h = toto.embed_tokens(_ids(length=40))
    long = Toto(dataclasses.replace(CFG, max_seq_len=4096)).eval()
    assert torch.equal(toto(h), long(h))  # max_seq_len changes nothing the model computes


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="not divisible"):
        TotoConfig(dim=100, n_heads=3)
    with pytest.raises(ConfigError, match="n_layers"):
        TotoConfig(n_layers=0)
    with pytest.raises(ConfigError, match="rope_base"):
        TotoConfig(rope_base=0.0)
    with pytest.raises(ConfigError, match="unknown key"):
        build_config(TotoConfig, {"dims": 64})
    assert build_config(TotoConfig, {"dim": "64", "n_heads": "4"}).ffn_dim == 256
    assert TotoConfig(dim=768).ffn_dim == 2048 == llama_ffn_dim(768)
    assert TotoConfig(dim=2048, n_heads=16).ffn_dim == 5632  # TinyLlama's width


def test_paper_sizes() -> None:
    """Parameter counts (8k vocabulary, untied) that the module docstring compares with the paper."""
    expected = {"base": 125_848_320, "large": 285_246_464, "1b": 1_164_011_520}
    for name, count in expected.items():
        with torch.device("meta"):
            toto = Toto(TOTO_CONFIGS[name])
        assert toto.num_params() == count, name
    shapes = {name: (c.dim, c.n_heads, c.n_layers) for name, c in TOTO_CONFIGS.items()}
    assert shapes["base"] == (768, 12, 12) and shapes["large"] == (1024, 16, 16) and shapes["1b"] == (2048, 16, 22)


@torch.no_grad()
def test_matches_transformers_llama(model: Toto) -> None:
    """Same weights in `transformers.LlamaModel` (eager attention) give the same hidden states."""
    pytest.importorskip("transformers")
    from transformers import LlamaModel

    from toto_eval.pretrain.hf import llama_state_dict, to_llama_config

    config = to_llama_config(model.config)
    config._attn_implementation = "eager"  # an independent attention implementation, not the same SDPA call
    llama = LlamaModel(config).eval()
    state = {k.removeprefix("model."): v for k, v in llama_state_dict(model.state_dict()).items() if "lm_head" not in k}
    llama.load_state_dict(state, strict=True)
    ids = _ids(length=64, seed=5)
    out = llama(ids, output_hidden_states=True)
    h = model.embed_tokens(ids)
    ours = model.hidden_states(h, list(range(CFG.n_layers - 1)))
    for i, hidden in ours.items():  # HF's hidden_states[i + 1] is block i's output, except the last (normed)
        assert (out.hidden_states[i + 1] - hidden).abs().max().item() <= 1e-4, i
    assert (out.last_hidden_state - model(h)).abs().max().item() <= 1e-4


def test_overfits_one_batch() -> None:
    """Gradients reach every weight and AdamW memorises two short sequences: the model can learn at all."""
    toto = Toto(CFG, seed=0)
    ids = _ids(length=17)
    opt = torch.optim.AdamW(toto.parameters(), lr=5e-3)
    losses = []
    for _ in range(20):
        logits = toto.logits(toto(toto.embed_tokens(ids[:, :-1])))
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:])
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in toto.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(6.24, abs=0.1)  # ln(512): uniform predictions at init
    assert losses[-1] < 1.0


@torch.no_grad()
def test_bfloat16(model: Toto) -> None:
    h = model.embed_tokens(_ids())
    low = Toto(model.config, seed=1).to(torch.bfloat16).eval()
    out = low(h.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert (out.float() - model(h)).abs().max().item() < 0.1  # RMS-normed outputs are O(1)
