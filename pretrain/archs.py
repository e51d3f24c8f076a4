"""The architectures `toto-pretrain` can build, by name: "toto" (the paper's LLaMA-style model), and the Table 6
ablations "gpt2" and "mamba". Each is a (config class, model class, sizes) triple behind one interface (the
`Toto` model's methods), so the training loop, checkpoints and backbone wrapper build any of them from a name.

A checkpoint's config.json records the name as "arch" (`pretrain/checkpoint.py` writes it); `save`,
`read_config` and `load` here are the architecture-generic forms of checkpoint.py's Toto-only ones: same
directory format, same checks (they reuse its file lookup and tensor checks), any registered architecture.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from toto_eval.common.config import build_config
from toto_eval.common.errors import CheckpointError, ConfigError

from . import checkpoint as ckpt
from .gpt2 import GPT2, GPT2_CONFIGS, GPT2Config
from .mamba import MAMBA_CONFIGS, Mamba, MambaConfig
from .model import TOTO_CONFIGS, Toto, TotoConfig


@dataclass(frozen=True)
class Arch:
    """One architecture: how to build it, and its named sizes."""

    name: str
    config: type
    model: type[nn.Module]
    sizes: dict

    def build(self, size: str, seed: int = 0, **changes) -> nn.Module:
        """The model of a named size, with config fields replaced by `changes` (e.g. patch_dim)."""
        return self.model(self.size_config(size, **changes), seed=seed)

    def size_config(self, size: str, **changes):
        if size not in self.sizes:
            raise ConfigError(f"unknown {self.name} size {size!r} (known: {', '.join(self.sizes)})")
        fields = {**self.sizes[size].to_dict(), **changes}
        return build_config(self.config, fields, where=f"{self.name} size {size}")


ARCHS: dict[str, Arch] = {
    "toto": Arch("toto", TotoConfig, Toto, TOTO_CONFIGS),
    "gpt2": Arch("gpt2", GPT2Config, GPT2, GPT2_CONFIGS),
    "mamba": Arch("mamba", MambaConfig, Mamba, MAMBA_CONFIGS),
}


def get_arch(name: str) -> Arch:
    if name not in ARCHS:
        raise ConfigError(f"unknown architecture {name!r} (known: {', '.join(ARCHS)})")
    return ARCHS[name]


def arch_for_config(config: object) -> Arch:
    """The architecture a config object belongs to (its class says which)."""
    for arch in ARCHS.values():
        if type(config) is arch.config:
            return arch
    raise TypeError(f"{type(config).__name__} is not the config of any of {', '.join(ARCHS)}")


def unwrap(model: nn.Module) -> tuple[Arch, nn.Module]:
    """(architecture, model) of a registered model inside DDP (`.module`) / torch.compile (`._orig_mod`) wrappers."""
    while True:
        for arch in ARCHS.values():
            if type(model) is arch.model:
                return arch, model
        inner = next((getattr(model, k) for k in ("module", "_orig_mod") if hasattr(model, k)), None)
        if not isinstance(inner, nn.Module):
            raise TypeError(f"expected a model of {', '.join(ARCHS)} (possibly wrapped), got {type(model).__name__}")
        model = inner


def save(directory: str | os.PathLike, model: nn.Module, extra: dict | None = None) -> Path:
    """checkpoint.save_checkpoint for any architecture: weights, then config.json with "arch" set to its name."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arch, inner = unwrap(model)
    state = {name: t.detach().cpu().contiguous() for name, t in inner.state_dict().items()}
    meta = {"arch": arch.name, "format_version": ckpt.FORMAT_VERSION, **inner.config.to_dict()}
    if extra:
        meta["extra"] = extra
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"  # serialise first: a bad `extra` writes nothing
    tmp = directory / f".{ckpt.WEIGHTS_NAME}.tmp"
    save_file(state, str(tmp), metadata={"format": "pt", "arch": arch.name})
    os.replace(tmp, directory / ckpt.WEIGHTS_NAME)
    tmp = directory / f".{ckpt.CONFIG_NAME}.tmp"
    tmp.write_text(text)
    os.replace(tmp, directory / ckpt.CONFIG_NAME)
    return directory


def read_config(path: str | os.PathLike, expect: str | None = None) -> tuple[Arch, object, dict]:
    """(arch, config, extra) from a checkpoint's config.json (or its directory); `expect` names the arch wanted."""
    path = Path(path)
    if path.is_dir() or path.suffix == ".safetensors":
        path = ckpt.checkpoint_files(path)[1]
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable config ({' '.join(str(err).split())})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    name = meta.pop("arch", None)
    if name not in ARCHS:
        raise CheckpointError(f'{path}: "arch" is {name!r}, expected one of {", ".join(ARCHS)}')
    if expect is not None and name != expect:
        raise CheckpointError(f"{path}: a {name} checkpoint, but this model is {expect} (use a {name} backbone)")
    version = meta.pop("format_version", None)
    if version != ckpt.FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version!r}, this code reads {ckpt.FORMAT_VERSION}")
    extra = meta.pop("extra", {})
    try:
        return ARCHS[name], build_config(ARCHS[name].config, meta, where=str(path)), extra
    except ConfigError as err:
        raise CheckpointError(str(err)) from None


def load_state_into(model: nn.Module, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> None:
    """checkpoint.load_state_into for any architecture: names and shapes checked, meta models assigned."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    weights = ckpt.checkpoint_files(path)[0] if path.is_dir() else path
    if not weights.is_file():
        raise CheckpointError(f"{weights}: checkpoint file not found")
    model = unwrap(model)[1]
    on_meta = any(p.is_meta for p in model.parameters())
    device = torch.device(map_location) if on_meta else next(model.parameters()).device
    try:
        state = load_file(str(weights), device=str(device))
    except (OSError, SafetensorError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{weights}: unreadable safetensors file ({' '.join(str(err).split())})") from None
    ckpt._check_state(weights, model.state_dict(), state)
    model.load_state_dict(state, strict=True, assign=on_meta)


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu", expect: str | None = None) -> nn.Module:
    """The model a checkpoint describes (any architecture), with its weights, on `map_location`."""
    weights, config_path = ckpt.checkpoint_files(path)
    arch, config, _ = read_config(config_path, expect)
    with torch.device("meta"):
        model = arch.model(config)
    load_state_into(model, weights, map_location=map_location)
    return model
