"""Table 6's ablation decoders (GPT-2-style, Mamba-style): interface, causality, scan, training, checkpoints.

Run: python -m pytest tests/test_ablations.py -q

Models are test-sized or smaller and sequences a few dozen tokens, so the whole file runs in seconds on CPU.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from toto_eval.backbones.ablations import DecoderBackbone  # importing registers gpt2_* and mamba_*
from toto_eval.common.errors import CheckpointError, ConfigError
from toto_eval.harness.registry import BACKBONES
from toto_eval.pretrain import archs, checkpoint
from toto_eval.pretrain.gpt2 import GPT2, GPT2Config
from toto_eval.pretrain.mamba import Mamba, MambaConfig, selective_scan_chunked, selective_scan_sequential
from toto_eval.pretrain.model import Toto

SMALL = {
    "gpt2": GPT2Config(dim=32, n_layers=3, n_heads=2, vocab_size=16, max_seq_len=64, patch_dim=12),
    "mamba": MambaConfig(dim=32, n_layers=3, vocab_size=16, d_state=4, patch_dim=12, chunk_size=4),
}
MODELS = {"gpt2": GPT2, "mamba": Mamba}


@pytest.fixture(params=["gpt2", "mamba"])
def model(request: pytest.FixtureRequest) -> torch.nn.Module:
    return MODELS[request.param](SMALL[request.param], seed=0).eval()


def _embeddings(model: torch.nn.Module, length: int = 21, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    patches = torch.randn(2, length - 1, model.config.patch_dim, generator=g)
    start = model.embed_tokens(torch.tensor([[1], [3]]))  # (2, 1, D)
    return torch.cat([start, model.embed_patches(patches)], dim=1)  # (2, L, D)


@torch.no_grad()
def test_interface_shapes(model: torch.nn.Module) -> None:
    cfg = model.config
    h = _embeddings(model)
    hidden = model(h)
    assert hidden.shape == (2, 21, cfg.dim)
    assert model.logits(hidden).shape == (2, 21, cfg.vocab_size)
    assert model.predict_patches(hidden).shape == (2, 21, cfg.patch_dim)
    assert set(model.hidden_states(h, [0, -1])) == {0, cfg.n_layers - 1}
    assert cfg.n_heads >= 1 and cfg.dim % cfg.n_heads == 0 and "dim" in cfg.to_dict()
    assert model.flops_per_token(21) > 2 * model.num_params(embeddings=False) * 0.5
    with pytest.raises(ValueError):
        model.hidden_states(h, [cfg.n_layers])


@torch.no_grad()
def test_causal(model: torch.nn.Module) -> None:
    """Changing token 15 leaves every block's outputs at positions 0..14 as they were, and changes position 15."""
    h = _embeddings(model)
    changed = h.clone()
    changed[:, 15] += 1.0
    layers = list(range(model.config.n_layers))
    before, after = model.hidden_states(h, layers), model.hidden_states(changed, layers)
    for i in layers:
        torch.testing.assert_close(before[i][:, :15], after[i][:, :15], rtol=0, atol=1e-6)
        assert not torch.allclose(before[i][:, 15:], after[i][:, 15:])


@torch.no_grad()
def test_early_stop_equals_full_forward(model: torch.nn.Module) -> None:
    h = _embeddings(model)
    n = model.config.n_layers
    full = model.hidden_states(h, list(range(n)))
    torch.testing.assert_close(model.hidden_states(h, [1])[1], full[1], rtol=0, atol=0)
    torch.testing.assert_close(model.norm(full[n - 1]), model(h), rtol=0, atol=0)


def test_seeded_init_and_meta_build(model: torch.nn.Module) -> None:
    twin = type(model)(model.config, seed=0)
    other = type(model)(model.config, seed=1)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, twin.state_dict()[name]), name
    assert not torch.equal(model.output.weight, other.output.weight)
    with torch.device("meta"):
        shell = type(model)(model.config)
    assert shell.output.weight.is_meta


@pytest.mark.parametrize("chunk_size", [1, 3, 8, 64])
def test_chunked_scan_equals_sequential(chunk_size: int) -> None:
    """Including dt large enough that exp(-S) would overflow a naive cumulative-product scan."""
    g = torch.Generator().manual_seed(0)
    b, length, d, n = 2, 19, 5, 3
    x = torch.randn(b, length, d, generator=g, dtype=torch.float64)
    dt = torch.rand(b, length, d, generator=g, dtype=torch.float64) * 20  # up to 20 * 16 per step in log decay
    A = -torch.arange(1, n + 1, dtype=torch.float64).repeat(d, 1)  # (d, n)
    B, C = (torch.randn(b, length, n, generator=g, dtype=torch.float64) for _ in range(2))
    expected = selective_scan_sequential(x, dt, A, B, C)
    got = selective_scan_chunked(x, dt, A, B, C, chunk_size)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_mamba_scan_gradients_match() -> None:
    """In the mixer, the chunked scan's output and backward equal the sequential one's (masked -inf gives no NaN)."""
    m = Mamba(SMALL["mamba"], seed=0)
    h = _embeddings(m, length=10)
    mixer = m.layers[0].mixer
    outs, grads = [], []
    for scan in ("sequential", "chunked"):
        m.zero_grad()
        out = mixer(h.detach(), scan=scan)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append(mixer.A_log.grad.clone())
    assert torch.isfinite(grads[1]).all()
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="scan must be"):
        mixer(h, scan="parallel")


def test_one_batch_overfit(model: torch.nn.Module) -> None:
    """Next-patch regression on one fixed batch: 40 Adam steps cut the loss to under half."""
    torch.manual_seed(0)
    model.train()
    patches = torch.randn(2, 12, model.config.patch_dim, generator=torch.Generator().manual_seed(3))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        pred = model.predict_patches(model(model.embed_patches(patches[:, :-1])))
        loss = torch.nn.functional.mse_loss(pred, patches[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@torch.no_grad()
def test_checkpoint_round_trip(model: torch.nn.Module, tmp_path) -> None:
    name = type(model).__name__.lower()
    checkpoint.save(tmp_path / "ck", model, extra={"step": 7})
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert meta["arch"] == name and meta["extra"] == {"step": 7}
    loaded = checkpoint.load(tmp_path / "ck", expect=name)
    assert type(loaded) is type(model) and loaded.config == model.config
    h = _embeddings(model)
    torch.testing.assert_close(loaded(h), model(h), rtol=0, atol=0)
    other = "mamba" if name == "gpt2" else "gpt2"
    with pytest.raises(CheckpointError, match=f"a {name} checkpoint, but this model is {other}"):
        checkpoint.load(tmp_path / "ck", expect=other)


def test_archs_registry_and_toto_checkpoints(tmp_path) -> None:
    assert set(archs.ARCHS) == {"toto", "gpt2", "mamba"}
    gpt2 = archs.get_arch("gpt2").build("test", patch_dim=12)
    assert isinstance(gpt2, GPT2) and gpt2.config.patch_dim == 12 and gpt2.config.n_layers == 4
    with pytest.raises(ConfigError, match="unknown architecture 'rwkv'"):
        archs.get_arch("rwkv")
    with pytest.raises(ConfigError):
        archs.get_arch("mamba").build("test", not_a_field=1)
    toto = archs.get_arch("toto").build("test")
    checkpoint.save(tmp_path / "toto", toto)
    arch, config, _ = checkpoint.read_config(tmp_path / "toto")
    assert arch.name == "toto" and config == toto.config
    assert isinstance(checkpoint.load(tmp_path / "toto"), Toto)


@pytest.mark.parametrize("name", ["gpt2_test", "mamba_test"])
@torch.no_grad()
def test_backbone_layout_matches_toto(name: str) -> None:
    """Same patch tokens and layout as toto_test: 8 px patches, grid (T, H/8, W/8), deterministic."""
    bb = BACKBONES.get(name)().eval()
    toto = BACKBONES.get("toto_test")().eval()
    x = torch.randn(1, 2, 3, 16, 24, generator=torch.Generator().manual_seed(0))
    feats = bb.forward_features(x, layers=[0, -1])
    assert sorted(feats) == [0, 3] and feats[3].shape == (1, 2, 2, 3, 64)
    seq, grid = bb.embed(x)
    assert grid == toto.embed(x)[1] == (2, 2, 3) and seq.shape == (1, 2 + 2 * 2 * 3, 64)
    torch.testing.assert_close(bb.forward_features(x, layers=[0, -1])[3], feats[3], rtol=0, atol=0)
    assert bb.preprocess == toto.preprocess and bb.config()["model"]["patch_dim"] == 192


@torch.no_grad()
def test_decoder_backbone_with_a_toto_inside_is_toto_test() -> None:
    """The generalisation proposed for backbones/toto.py: same features, same config, same fingerprint."""
    toto = BACKBONES.get("toto_test")().eval()
    generic = DecoderBackbone("toto_test", Toto(toto.model.config), toto.preprocess, toto.patch_size).eval()
    x = torch.randn(2, 3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    for layer, feats in toto.forward_features(x).items():
        torch.testing.assert_close(generic.forward_features(x)[layer], feats, rtol=0, atol=0)
    assert generic.config() == toto.config() and generic.fingerprint() == toto.fingerprint()


@torch.no_grad()
def test_tiny_backbones_from_checkpoint(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="--random-init"):
        BACKBONES.get("gpt2_tiny")()
    model = archs.get_arch("mamba").build("test", patch_dim=192, seed=4)
    checkpoint.save(tmp_path / "m", model, extra={"data": {"patch_size": 8, "resolution": 32, "frames": 4}})
    bb = BACKBONES.get("mamba_tiny")(checkpoint=str(tmp_path / "m"))
    assert bb.preprocess.resolution == 32 and bb.checkpoint == str(tmp_path / "m")
    assert torch.equal(bb.model.output.weight, model.output.weight)
    with pytest.raises(CheckpointError, match="a mamba checkpoint, but this model is gpt2"):
        BACKBONES.get("gpt2_tiny")(checkpoint=str(tmp_path / "m"))
    with torch.device("meta"):
        assert BACKBONES.get("gpt2_tiny")(random_init=True).random_init


@torch.no_grad()
def test_only_learned_positions_limit_the_length() -> None:
    """GPT-2's table is a hard limit whose error names the flag that sizes it; Mamba (and Toto) run past it."""
    gpt2 = GPT2(dataclasses.replace(SMALL["gpt2"], max_seq_len=8))
    with pytest.raises(ConfigError, match=r"9 tokens .*learned position table \(max_seq_len=8\).*--max-seq-len 9"):
        gpt2(torch.zeros(1, 9, 32))
    mamba = Mamba(dataclasses.replace(SMALL["mamba"], max_seq_len=8))
    assert mamba(torch.zeros(1, 9, 32)).shape == (1, 9, 32)
