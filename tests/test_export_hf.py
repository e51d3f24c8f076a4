"""Tests of checkpoints (pretrain/checkpoint.py) and the export to transformers (pretrain/hf.py).

Run: python -m pytest tests/test_export_hf.py -q
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from toto_eval.common.errors import CheckpointError
from toto_eval.pretrain.checkpoint import load, load_state_into, read_config, save
from toto_eval.pretrain.hf import PATCH_FILE, export_hf
from toto_eval.pretrain.model import TOTO_CONFIGS, Toto

CFG = dataclasses.replace(TOTO_CONFIGS["test"], rope_base=2000.0)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(tmp_path_factory.mktemp("ckpt") / "toto_test", Toto(CFG, seed=7), extra={"step": 12})


def _same_weights(a: Toto, b: Toto) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip(ckpt: Path) -> None:
    assert sorted(p.name for p in ckpt.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((ckpt / "config.json").read_text())
    assert meta["arch"] == "toto" and meta["format_version"] == 1 and meta["rope_base"] == 2000.0
    for path in (ckpt, ckpt / "model.safetensors"):
        loaded = load(path)
        assert loaded.config == CFG
        assert _same_weights(loaded, Toto(CFG, seed=7))
    arch, config, extra = read_config(ckpt)
    assert (arch.name, config, extra) == ("toto", CFG, {"step": 12})


def test_load_into_existing_model_keeps_dtype(ckpt: Path) -> None:
    model = Toto(CFG, seed=0).to(torch.float64)
    load_state_into(model, ckpt)
    assert model.output.weight.dtype == torch.float64
    assert torch.equal(model.output.weight.float(), load(ckpt).output.weight)


def test_save_unwraps_compiled_or_ddp_models(tmp_path: Path) -> None:
    class Wrapper(torch.nn.Module):  # stands in for DistributedDataParallel's `.module`
        def __init__(self, module: torch.nn.Module) -> None:
            super().__init__()
            self.module = module

    toto = Toto(CFG, seed=2)
    save(tmp_path, Wrapper(toto))
    assert _same_weights(load(tmp_path), toto)


def test_wrong_shape_is_one_line_error(ckpt: Path, tmp_path: Path) -> None:
    state = load_file(str(ckpt / "model.safetensors"))
    state["layers.1.feed_forward.w3.weight"] = torch.zeros(128, CFG.dim)
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((ckpt / "config.json").read_text())
    with pytest.raises(CheckpointError) as err:
        load(tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "model.safetensors") in message
    assert "'layers.1.feed_forward.w3.weight' has shape (128, 64), the model expects (256, 64)" in message


def test_other_bad_checkpoints(ckpt: Path, tmp_path: Path) -> None:
    cases = {
        "missing": (lambda d: None, "missing: checkpoint not found"),
        "no config": (lambda d: (d / "config.json").unlink(), "config.json: checkpoint file not found"),
        "corrupt": (lambda d: (d / "model.safetensors").write_bytes(b"not a safetensors file"), "unreadable"),
        "arch": (lambda d: (d / "config.json").write_text('{"arch": "vit", "format_version": 1}'), "not a model"),
        "key": (lambda d: _edit_config(d, n_layer=4), "unknown key 'n_layer'"),
        "extra tensor": (lambda d: _add_tensor(d, "layers.4.ffn_norm.weight"), "unexpected tensor"),
    }
    for name, (damage, expected) in cases.items():
        directory = tmp_path / name.replace(" ", "_")
        if name != "missing":
            save(directory, Toto(CFG))
        damage(directory)
        with pytest.raises(CheckpointError, match=expected) as err:
            load(directory)
        assert "\n" not in str(err.value), name


def _edit_config(directory: Path, **changes: object) -> None:
    meta = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**meta, **changes}))


def _add_tensor(directory: Path, name: str) -> None:
    state = load_file(str(directory / "model.safetensors"))
    save_file({**state, name: torch.ones(CFG.dim)}, str(directory / "model.safetensors"))


@torch.no_grad()
def test_export_loads_in_transformers_with_same_logits(ckpt: Path, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    out = export_hf(ckpt, tmp_path / "hf")
    llama = transformers.LlamaForCausalLM.from_pretrained(out).eval()
    assert llama.config.intermediate_size == CFG.ffn_dim and not llama.config.tie_word_embeddings
    toto = load(ckpt).eval()
    ids = torch.randint(0, CFG.vocab_size, (2, 48), generator=torch.Generator().manual_seed(0))
    ours = toto.logits(toto(toto.embed_tokens(ids)))
    assert (llama(ids).logits - ours).abs().max().item() <= 1e-4


def test_export_keeps_patch_layers(tmp_path: Path) -> None:
    toto = Toto(dataclasses.replace(CFG, patch_dim=12), seed=1)
    export_hf(save(tmp_path / "ckpt", toto), tmp_path / "hf")
    patch = load_file(str(tmp_path / "hf" / PATCH_FILE))
    assert torch.equal(patch["patch_embed.weight"], toto.patch_embed.weight.detach())
    assert torch.equal(patch["patch_head.weight"], toto.patch_head.weight.detach())


def test_export_hf_command(ckpt: Path, tmp_path: Path, capsys) -> None:
    from toto_eval.pretrain.cli import main

    transformers = pytest.importorskip("transformers")
    assert main(["export-hf", str(ckpt), str(tmp_path / "hf")]) == 0
    model = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    toto = load(ckpt).eval()
    ids = torch.randint(0, toto.config.vocab_size, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, toto.logits(toto(toto.embed_tokens(ids))), atol=1e-4, rtol=0)
    assert main(["export-hf", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
