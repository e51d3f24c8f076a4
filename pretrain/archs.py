"""The architectures `toto-pretrain` trains and `toto-eval` evaluates, by name: "toto" (the paper's LLaMA-style
model) and the Table 6 ablations "gpt2" and "mamba".

Each is a (config class, model class, named sizes) triple; every model is a `Decoder` (`pretrain/decoder.py`),
so the training loop, checkpoints (`pretrain/checkpoint.py`, which writes the name as "arch" in config.json) and
the backbone factory build any of them from its name. Registering a fourth architecture is one line here.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from toto_eval.common.config import build_config
from toto_eval.common.errors import ConfigError

from .decoder import Decoder, DecoderConfig
from .gpt2 import GPT2, GPT2_CONFIGS, GPT2Config
from .mamba import MAMBA_CONFIGS, Mamba, MambaConfig
from .model import TOTO_CONFIGS, Toto, TotoConfig


@dataclass(frozen=True)
class Arch:
    """One architecture: how to build it, and its named sizes."""

    name: str
    config: type[DecoderConfig]
    model: type[Decoder]
    sizes: dict[str, DecoderConfig]

    def build(self, size: str, seed: int = 0, **changes) -> Decoder:
        """The model of a named size, with config fields replaced by `changes` (e.g. patch_dim)."""
        return self.model(self.size_config(size, **changes), seed=seed)

    def size_config(self, size: str, **changes) -> DecoderConfig:
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


def arch_for_config(config: DecoderConfig) -> Arch:
    """The architecture a config object belongs to (its class says which)."""
    for arch in ARCHS.values():
        if type(config) is arch.config:
            return arch
    raise TypeError(f"{type(config).__name__} is not the config of any of {', '.join(ARCHS)}")


def unwrap(model: nn.Module) -> Decoder:
    """The decoder inside DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while not isinstance(model, Decoder):
        inner = next((getattr(model, k) for k in ("module", "_orig_mod") if hasattr(model, k)), None)
        if not isinstance(inner, nn.Module):
            raise TypeError(f"expected a decoder of {', '.join(ARCHS)} (possibly wrapped), got {type(model).__name__}")
        model = inner
    return model
