"""Local weights for zoo backbones: read a checkpoint file, check it fits, load it, or seed a random init.

Every zoo factory has the same signature, `(checkpoint=None, random_init=False) -> Backbone`, and the same three
outcomes: weights from a local file, a seeded random initialisation that is recorded as such, or an error that
tells the user which flag to pass. Nothing here downloads. Checkpoints are read in the formats people actually
have on disk: a bare state dict or a training checkpoint that wraps one (`state_dict`, `model`, `module`, EMA
copies), saved as `.safetensors`, or as a pickle (`.pth`, `.pt`, `.bin`, `.ckpt`) that `torch.load` opens with
`weights_only=True`, so a pickle that would run code is refused in one line, never executed. A file for another
architecture fails with the first tensor that does not fit, because that one name ("blocks.0.attn.qkv.weight:
file (2304, 768), model (3072, 1024)") usually says what went wrong.
"""

from __future__ import annotations

import contextlib
import pickle
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import torch
from torch import nn

from toto_eval.common.errors import CheckpointError

RANDOM_INIT_SEED = 0
# Keys that wrap the real state dict in training checkpoints, most specific (EMA weights) first, as timm does.
_WRAPPERS = ("state_dict_ema", "model_ema", "state_dict", "model", "module", "teacher")
_PREFIXES = ("_orig_mod.", "module.")  # torch.compile and DDP wrappers


def require_weights(name: str, checkpoint: str | None, random_init: bool) -> None:
    """The one rule for every factory: exactly one of a checkpoint or `--random-init`."""
    if checkpoint is None and not random_init:
        raise CheckpointError(f"backbone {name!r} needs weights: pass --checkpoint PATH or --random-init")
    if checkpoint is not None and random_init:
        raise CheckpointError(f"backbone {name!r}: pass either --checkpoint PATH or --random-init, not both")


@contextlib.contextmanager
def seeded(seed: int = RANDOM_INIT_SEED) -> Iterator[None]:
    """Build modules under a fixed torch seed without disturbing the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped from training-checkpoint containers and DDP prefixes."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any reader failure means the same thing to the user: this file is unusable
        if isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in str(err):
            raise CheckpointError(  # weights_only met a global it does not allow: code, or a foreign class
                f"{path}: cannot read checkpoint (refused: it pickles Python objects other than tensors and plain "
                "containers, and toto-eval never unpickles code; re-save its state dict alone, or as .safetensors)"
            ) from None
        raise CheckpointError(f"{path}: cannot read checkpoint ({_one_line(err)})") from None
    state = _unwrap(obj)
    if not state:
        raise CheckpointError(f"{path}: no tensors found (expected a state dict, or one under 'model'/'state_dict')")
    return {_strip_prefixes(k): v for k, v in state.items()}


def _one_line(err: Exception) -> str:
    """The first line of an error, without terminal escape codes, at most 200 characters."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]


def _unwrap(obj: object) -> dict[str, torch.Tensor]:
    while isinstance(obj, dict):
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict) and obj[k]), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        return {}
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def check_fits(
    expected: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    path: str | Path,
    arch: str,
    ignore: Iterable[str] = (),
    skip_shape: Iterable[str] = (),
    missing_ok: bool = False,
) -> None:
    """Raise CheckpointError naming the first tensor that is missing, extra, or of another shape.

    `expected` is the model's state dict. `ignore` lists key prefixes the file may carry but the model does not
    need (classifier heads, decoders); `skip_shape` lists keys whose shape legitimately differs before
    adaptation (a position table that is resampled); `missing_ok` checks only the keys both sides have.
    """
    ignore, skip_shape = tuple(ignore), set(skip_shape)
    hint = "is it a checkpoint for another architecture? pass the matching --backbone, or --random-init"
    for key, tensor in expected.items():
        if key not in state:
            if missing_ok:
                continue
            shape = tuple(tensor.shape)
            raise CheckpointError(f"{path}: does not fit {arch}: tensor {key!r} {shape} is missing; {hint}")
        if key not in skip_shape and tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{path}: does not fit {arch}: tensor {key!r} has shape {tuple(state[key].shape)} in the file "
                f"but {tuple(tensor.shape)} in the model; {hint}"
            )
    for key in state:
        if key not in expected and not key.startswith(ignore):
            raise CheckpointError(f"{path}: does not fit {arch}: unexpected tensor {key!r} in the file; {hint}")


def load_checked(
    model: nn.Module,
    path: str | Path,
    arch: str,
    ignore: Iterable[str] = (),
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> None:
    """Read `path`, optionally convert it to the model's layout, check it fits exactly, and load it."""
    state = read_state_dict(path)
    if convert is not None:
        state = convert(state)
    expected = model.state_dict()
    check_fits(expected, state, path, arch, ignore=ignore)
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=True)
