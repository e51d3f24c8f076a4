"""Model checkpoints of every architecture: a directory holding `model.safetensors` (the weights) and `config.json`.

`config.json` is the model config's fields plus `{"arch": NAME, "format_version": 1}` (NAME from
`pretrain/archs.py`: toto, gpt2, mamba) and, optionally, an `"extra"` dict (training step, tokenizer, data
recipe, anything JSON-able the caller wants kept). Weights are safetensors only, so loading a checkpoint never
unpickles anything. Every problem a user can cause (missing file, corrupt file, a config written for another
architecture, a tensor of the wrong shape) is one `CheckpointError` line that names the file and, for weights,
the first tensor that does not fit.

This is the one checkpoint API (training, `toto-pretrain export` / `export-hf`, the backbones): `save`,
`read_config`, `load`, `load_state_into`. Loading builds the model on the meta device and assigns the stored
tensors, so a 1B model is never initialised only to be overwritten; `load_state_into` also fills an existing model
in place (e.g. one already on a GPU).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from toto_eval.common.config import build_config
from toto_eval.common.errors import CheckpointError, ConfigError

from .archs import ARCHS, Arch, arch_for_config, unwrap
from .decoder import Decoder, DecoderConfig

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT_VERSION = 1


def save(directory: str | os.PathLike, model: nn.Module, extra: dict | None = None) -> Path:
    """Write `directory/model.safetensors` and `directory/config.json`, each by atomic rename; returns the dir."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    decoder = unwrap(model)
    arch = arch_for_config(decoder.config).name
    state = {name: t.detach().cpu().contiguous() for name, t in decoder.state_dict().items()}
    meta = {"arch": arch, "format_version": FORMAT_VERSION, **decoder.config.to_dict()}
    if extra:
        meta["extra"] = extra
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"  # serialise first: a bad `extra` writes nothing
    # weights first, config last: a directory whose config.json exists has its weights in place
    tmp = directory / f".{WEIGHTS_NAME}.tmp"
    save_file(state, str(tmp), metadata={"format": "pt", "arch": arch})
    os.replace(tmp, directory / WEIGHTS_NAME)
    tmp = directory / f".{CONFIG_NAME}.tmp"
    tmp.write_text(text)
    os.replace(tmp, directory / CONFIG_NAME)
    return directory


def checkpoint_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights, config) paths for a checkpoint directory or its model.safetensors; both must exist."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    directory = path if path.is_dir() else path.parent
    weights = path if path.is_file() else directory / WEIGHTS_NAME
    config = directory / CONFIG_NAME
    for file in (weights, config):
        if not file.is_file():
            raise CheckpointError(
                f"{file}: checkpoint file not found (a checkpoint is a directory with {WEIGHTS_NAME} and {CONFIG_NAME})"
            )
    return weights, config


def read_config(path: str | os.PathLike, expect: str | None = None) -> tuple[Arch, DecoderConfig, dict]:
    """(architecture, config, extra) from a checkpoint's config.json (or its directory, or its weights file).

    `expect` names the architecture the caller can use; a checkpoint of another one is a CheckpointError.
    """
    path = Path(path)
    if path.is_dir() or path.suffix == ".safetensors":
        path = checkpoint_files(path)[1]
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable config ({_one_line(err)})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    name = meta.pop("arch", None)
    if name not in ARCHS:
        known = ", ".join(ARCHS)
        raise CheckpointError(f'{path}: not a model checkpoint config ("arch" is {name!r}, not one of {known})')
    if expect is not None and name != expect:
        raise CheckpointError(f"{path}: a {name} checkpoint, but this model is {expect} (use a {name} backbone)")
    version = meta.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version!r}, this code reads {FORMAT_VERSION}")
    extra = meta.pop("extra", {})
    try:
        return ARCHS[name], build_config(ARCHS[name].config, meta, where=str(path)), extra
    except ConfigError as err:
        raise CheckpointError(str(err)) from None


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu", expect: str | None = None) -> Decoder:
    """The model a checkpoint describes (any architecture, or only `expect`), with its weights, on `map_location`."""
    weights, config_path = checkpoint_files(path)
    arch, config, _ = read_config(config_path, expect)
    with torch.device("meta"):
        model = arch.model(config)
    load_state_into(model, weights, map_location=map_location)
    return model


def load_state_into(model: nn.Module, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> None:
    """Copy a checkpoint's weights into `model` after checking every name and shape.

    A model on the meta device gets the stored tensors on `map_location` (and in their stored dtype); any
    other model keeps its device and dtype and has the values copied in.
    """
    path = Path(path)
    weights = checkpoint_files(path)[0] if path.is_dir() else path
    if not weights.is_file():
        raise CheckpointError(f"{weights}: checkpoint file not found")
    model = unwrap(model)
    on_meta = any(p.is_meta for p in model.parameters())
    device = torch.device(map_location) if on_meta else next(model.parameters()).device
    try:
        state = load_file(str(weights), device=str(device))
    except (OSError, SafetensorError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{weights}: unreadable safetensors file ({_one_line(err)})") from None
    _check_state(weights, model.state_dict(), state)
    model.load_state_dict(state, strict=True, assign=on_meta)


def _check_state(weights: Path, expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> None:
    for name, tensor in expected.items():
        if name not in got:
            raise CheckpointError(
                f"{weights}: tensor {name!r} is missing ({len(set(expected) - set(got))} missing in all)"
            )
        if tuple(got[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{weights}: tensor {name!r} has shape {tuple(got[name].shape)}, "
                f"the model expects {tuple(tensor.shape)}"
            )
    unexpected = sorted(set(got) - set(expected))
    if unexpected:
        raise CheckpointError(
            f"{weights}: unexpected tensor {unexpected[0]!r} ({len(unexpected)} in all); "
            f"it was written for another architecture"
        )


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
