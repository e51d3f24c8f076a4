"""Frame tokenisers: one interface from uint8 frames to a per-frame token grid.

Toto tokenises every frame on its own, so a tokeniser only sees images `(N, H, W, 3)` uint8 and returns a grid
`(N, h, w)` of integer codes (discrete) or `(N, h, w, d)` of values (continuous). Three kinds:

- `patch`: continuous patch tokens (the paper's Table 3 "patch" variant). A token is the raw uint8 pixels of one
  p x p patch, kept as uint8 so token shards stay small; the model reads them normalised by the channel mean/std
  (`patch_inputs`) and regresses the next patch normalised by its own mean and variance (`patch_targets`), or
  with `--patch-target raw` the next patch as it reads it (`regression_targets`).
  Needs no training, so it is the tokeniser of the shipped `toto_tiny`.
- `dvae`: the DALL-E dVAE encoder (8192 codes, 8x downsampling), with weights from a local state dict. The
  official `encoder.pkl` pickles whole modules; we never unpickle code, so it must be converted to safetensors
  (or a plain `torch.save` state dict, read with `weights_only=True`).
- `vq`: a small VQ-VAE that `toto-pretrain tokenizer` trains from scratch on a local corpus, so discrete-token
  pre-training works without downloaded weights. VQ-VAE rather than a Gumbel dVAE: its encoding is a
  deterministic nearest-code lookup, and it trains in minutes on a CPU without a temperature or KL schedule.

`load_tokenizer("patch8" | "dvae:FILE" | "vq:DIR")` builds one from a spec string; its kind, sizes and the
weights' sha256 are its `identity()`, which goes into every shard's metadata. A checkpoint stores `record()`:
the identity plus where the weights are and the resolution trained at, and `from_record` rebuilds the very same
tokeniser for evaluation (a missing file, or one whose sha256 differs, is a one-line CheckpointError). The
backbone feeds normalised float frames; discrete tokenisers take them back to the exact uint8 pixels (`to_uint8`)
and encode on the frames' device (`codes`), so evaluation sees the codes pre-training saw.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..common.config import build_config
from ..common.errors import CheckpointError, ConfigError, describe
from .configs import VQConfig
from .schedule import eta

logger = logging.getLogger(__name__)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Tokenizer(ABC):
    """Maps uint8 frames `(N, H, W, 3)` to a token grid; `kind` says whether tokens are codes or values."""

    kind: Literal["discrete", "continuous"]
    patch_size: int  # pixels per token side (the downsampling factor)
    vocab_size: int = 0  # number of codes (discrete only)
    token_dim: int = 0  # values per token (continuous only)

    def grid(self, resolution: int) -> tuple[int, int]:
        """Token grid `(h, w)` of one square frame of `resolution` pixels."""
        if resolution % self.patch_size:
            raise ConfigError(f"resolution {resolution} is not a multiple of the tokeniser's {self.patch_size}")
        side = resolution // self.patch_size
        return side, side

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype tokens are stored in on disk."""
        return np.dtype(np.uint8) if self.kind == "continuous" else np.dtype(np.int16)

    @abstractmethod
    def encode(self, frames: np.ndarray | torch.Tensor) -> np.ndarray:
        """uint8 `(N, H, W, 3)` -> `(N, h, w)` int16 codes or `(N, h, w, d)` uint8 patch values."""

    @abstractmethod
    def identity(self) -> dict:
        """JSON-able description (kind, sizes, weight hash) stored with every shard."""

    @property
    def weights(self) -> str | None:
        """Absolute path of what `load_tokenizer` reads (a file or a directory); None when there are no weights."""
        return None

    def record(self, resolution: int) -> dict:
        """What a checkpoint keeps to rebuild this tokeniser: identity, weights path, training resolution."""
        return {**self.identity(), "weights": self.weights, "resolution": resolution}


class DiscreteTokenizer(Tokenizer):
    """A tokeniser whose tokens are codes from a network: `codes` runs it on a batch of uint8 frames."""

    kind = "discrete"
    device: str | torch.device = "cpu"
    batch_size: int = 16  # frames per network call: bounds activation memory at 128 px and above

    @abstractmethod
    def network(self) -> nn.Module:
        """The encoder module (moved to the frames' device on first use there)."""

    @abstractmethod
    def encode_batch(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (n, 3, H, W) on the network's device -> (n, h, w) int64 codes."""

    @torch.no_grad()
    def codes(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 `(N, 3, H, W)` frames -> `(N, H/8, W/8)` int64 codes, on the frames' device."""
        self.grid(frames.shape[-1])
        self.network().to(frames.device)
        return torch.cat([self.encode_batch(chunk) for chunk in frames.split(self.batch_size)])

    def encode(self, frames: np.ndarray | torch.Tensor) -> np.ndarray:
        x = _as_uint8_nchw(frames).to(self.device)
        return self.codes(x).to(torch.int16).cpu().numpy()


def _as_uint8_nchw(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(frames))
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ConfigError(f"tokenisers take uint8 frames (N, H, W, 3), got {tuple(x.shape)} {x.dtype}")
    return x.permute(0, 3, 1, 2)  # (N, 3, H, W)


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """`(..., C, H, W)` -> `(..., H/p, W/p, p*p*C)`, each patch laid out as (row, column, channel)."""
    *lead, c, h, w = x.shape
    p = patch_size
    x = x.reshape(*lead, c, h // p, p, w // p, p)
    n = len(lead)
    x = x.permute(*range(n), n + 1, n + 3, n + 2, n + 4, n)  # (..., h, w, p, p, C)
    return x.reshape(*lead, h // p, w // p, p * p * c)


def patch_inputs(patches: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 patch tokens `(..., p*p*3)` -> float in the backbone's normalisation (same as `patchify` of
    normalised frames, so the evaluated backbone and the training loop see identical inputs)."""
    x = patches.float() / 255.0
    shape = x.shape
    x = x.reshape(*shape[:-1], -1, 3)
    x = (x - torch.tensor(mean, device=x.device)) / torch.tensor(std, device=x.device)
    return x.reshape(shape)


def patch_targets(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """uint8 patch tokens -> regression targets normalised by each patch's own mean and variance (MAE's
    "normalised pixels"), so flat patches do not dominate the loss."""
    x = patches.float() / 255.0
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return (x - mean) / (var + eps).sqrt()


PATCH_TARGETS = ("normalized", "raw")  # `--patch-target`: the paper's, or the pixels as the model reads them


def regression_targets(patches: torch.Tensor, kind: str = "normalized") -> torch.Tensor:
    """What a patch model regresses (`--patch-target`): per-patch normalised pixels, or the pixels it reads."""
    return patch_targets(patches) if kind == "normalized" else patch_inputs(patches)


class PatchTokenizer(Tokenizer):
    """Continuous tokens: the raw pixels of each `patch_size` x `patch_size` patch."""

    kind = "continuous"

    def __init__(self, patch_size: int = 8):
        self.patch_size = patch_size
        self.token_dim = patch_size * patch_size * 3

    def encode(self, frames: np.ndarray | torch.Tensor) -> np.ndarray:
        x = _as_uint8_nchw(frames)
        self.grid(x.shape[-1])
        return patchify(x, self.patch_size).numpy()

    def identity(self) -> dict:
        return {"kind": "patch", "patch_size": self.patch_size, "token_dim": self.token_dim}


# ---------------------------------------------------------------------------------------------------------------
# DALL-E dVAE encoder. Facts from the paper's released architecture: a 7x7 input conv to n_hid channels, four
# groups of residual bottleneck blocks (widths 1, 2, 4, 8 x n_hid, 2x2 max-pool after the first three), then ReLU
# and a 1x1 conv to the 8192 code logits. Blocks scale their residual by 1 / n_layers**2. Convs hold parameters
# named `w` and `b` and use "same" padding; pixels enter as x * 0.8 + 0.1 (x in [0, 1]).


class _Conv(nn.Module):
    def __init__(self, n_in: int, n_out: int, kw: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(n_out, n_in, kw, kw) / (n_in * kw * kw) ** 0.5)
        self.b = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.w, self.b, padding=(self.w.shape[-1] - 1) // 2)


class _DVAEBlock(nn.Module):
    def __init__(self, n_in: int, n_out: int, n_layers: int):
        super().__init__()
        hid = n_out // 4
        self.post_gain = 1.0 / n_layers**2
        self.id_path = _Conv(n_in, n_out, 1) if n_in != n_out else nn.Identity()
        convs = [(n_in, hid, 3), (hid, hid, 3), (hid, hid, 3), (hid, n_out, 1)]
        layers: list[tuple[str, nn.Module]] = []
        for i, (a, b, k) in enumerate(convs, start=1):
            layers += [(f"relu_{i}", nn.ReLU()), (f"conv_{i}", _Conv(a, b, k))]
        self.res_path = nn.Sequential(OrderedDict(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.id_path(x) + self.post_gain * self.res_path(x)


class DVAEEncoder(nn.Module):
    """The DALL-E dVAE encoder; its state-dict keys match the released weights (`blocks.group_1.block_1...`)."""

    def __init__(self, n_hid: int = 256, n_blk_per_group: int = 2, vocab_size: int = 8192):
        super().__init__()
        n_layers = 4 * n_blk_per_group
        widths = [n_hid, n_hid, 2 * n_hid, 4 * n_hid, 8 * n_hid]
        groups: list[tuple[str, nn.Module]] = [("input", _Conv(3, n_hid, 7))]
        for g in range(4):
            blocks = [
                (f"block_{i + 1}", _DVAEBlock(widths[g] if i == 0 else widths[g + 1], widths[g + 1], n_layers))
                for i in range(n_blk_per_group)
            ]
            if g < 3:
                blocks.append(("pool", nn.MaxPool2d(kernel_size=2)))
            groups.append((f"group_{g + 1}", nn.Sequential(OrderedDict(blocks))))
        head = OrderedDict([("relu", nn.ReLU()), ("conv", _Conv(8 * n_hid, vocab_size, 1))])
        groups.append(("output", nn.Sequential(head)))
        self.blocks = nn.Sequential(OrderedDict(groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(N, 3, H, W)` float in [0, 1] -> code logits `(N, vocab, H/8, W/8)`."""
        return self.blocks(0.8 * x + 0.1)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a `.safetensors` file or a plain `torch.save` state dict (never unpickles code)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: tokeniser weights not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any parse failure is the file's fault, reported in one line
        raise CheckpointError(f"{path}: not a readable state dict ({describe(err)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a flat dict of tensors")
    return state


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """`load_state_dict(strict=True)` with a one-line error that names the file and the first mismatch."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(f"{path}: weights do not fit the architecture ({what})")
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise CheckpointError(f"{path}: {key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}")
    module.load_state_dict(state)


class DVAETokenizer(DiscreteTokenizer):
    """Discrete tokens from the DALL-E dVAE encoder: argmax over its 8192 code logits."""

    patch_size = 8

    def __init__(self, weights: str | Path, device: str = "cpu", batch_size: int = 16):
        state = read_state_dict(weights)
        n_hid = state["blocks.input.w"].shape[0] if "blocks.input.w" in state else 256
        vocab = state["blocks.output.conv.w"].shape[0] if "blocks.output.conv.w" in state else 8192
        self.encoder = DVAEEncoder(n_hid=n_hid, vocab_size=vocab).eval().to(device)
        load_strict(self.encoder, state, weights)
        self.vocab_size, self.device, self.batch_size = vocab, device, batch_size
        self._path, self._sha = str(Path(weights).resolve()), file_sha256(weights)

    def network(self) -> nn.Module:
        return self.encoder

    def encode_batch(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.float() / 255.0).argmax(dim=1)

    @property
    def weights(self) -> str:
        return self._path

    def identity(self) -> dict:
        return {"kind": "dvae", "patch_size": 8, "vocab_size": self.vocab_size, "sha256": self._sha}


# ---------------------------------------------------------------------------------------------------------------
# A small VQ-VAE (8x downsampling) that trains on a CPU: strided-conv encoder, nearest-code quantiser with the
# straight-through gradient, codebook + commitment losses, and restarts of codes unused for `restart_every` steps.


class VQVAE(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        h = cfg.hidden
        self.encoder = nn.Sequential(
            nn.Conv2d(3, h, 4, 2, 1), nn.ReLU(), nn.Conv2d(h, h, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(h, h, 4, 2, 1), nn.ReLU(), nn.Conv2d(h, cfg.code_dim, 1),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.Conv2d(cfg.code_dim, h, 3, 1, 1), nn.ReLU(), nn.ConvTranspose2d(h, h, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(h, h, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(h, 3, 4, 2, 1),
        )  # fmt: skip
        self.codebook = nn.Parameter(torch.randn(cfg.codes, cfg.code_dim) * 0.1)

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """(N, d, h, w) encoder output -> (N, h, w) nearest code indices."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.T + self.codebook.pow(2).sum(1)
        return dist.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (N, 3, H, W) in [-1, 1] -> (reconstruction, codes, vq loss terms without the beta split)."""
        z = self.encoder(x)
        codes = self.quantize(z)
        e = self.codebook[codes].permute(0, 3, 1, 2)  # (N, d, h, w)
        return (
            self.decoder(z + (e - z).detach()),
            codes,
            torch.stack([F.mse_loss(e, z.detach()), F.mse_loss(z, e.detach())]),
        )


def train_vq(mixture, out: str | Path, cfg: VQConfig, log: Callable[[str], object] | None = None) -> Path:
    """Train a VQ-VAE on single frames of `mixture` (frames=1) and write vq.safetensors + vq.json to `out`."""
    from safetensors.torch import save_file

    log = log or logger.info
    began = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = VQVAE(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    used = torch.zeros(cfg.codes, dtype=torch.bool)
    for step in range(cfg.steps):
        clips = [mixture.sample(step * cfg.batch_size + j).frames[0] for j in range(cfg.batch_size)]
        x = torch.from_numpy(np.stack(clips)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        recon, codes, (codebook_loss, commit) = model(x)
        loss = F.mse_loss(recon, x) + codebook_loss + cfg.beta * commit
        opt.zero_grad()
        loss.backward()
        opt.step()
        used[codes.flatten()] = True
        if (step + 1) % cfg.restart_every == 0:
            with torch.no_grad():  # dead codes jump onto random current encoder outputs
                z = model.encoder(x).permute(0, 2, 3, 1).reshape(-1, cfg.code_dim)
                dead = (~used).nonzero().flatten()
                pick = torch.randint(len(z), (len(dead),), generator=gen)
                model.codebook[dead] = z[pick]
            left = eta(time.perf_counter() - began, step + 1, cfg.steps - step - 1)
            codes_used = f"{int(used.sum())}/{cfg.codes} codes used"
            log(f"vq step {step + 1}/{cfg.steps}: loss {loss.item():.4f}, {codes_used}, eta {left}")
            used.zero_()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "vq.safetensors"))
    write_json(out / "vq.json", {"kind": "vq", **dataclasses.asdict(cfg)})
    return out


class VQTokenizer(DiscreteTokenizer):
    """Discrete tokens from a VQ-VAE trained by `toto-pretrain tokenizer` (a directory with vq.json + weights)."""

    patch_size = 8

    def __init__(self, directory: str | Path, device: str = "cpu"):
        directory = Path(directory)
        config_file = directory / "vq.json"
        if not config_file.is_file():
            raise CheckpointError(
                f"{config_file}: VQ tokeniser config not found (train one with `toto-pretrain tokenizer`)"
            )
        values = json.loads(config_file.read_text())
        values.pop("kind", None)
        self.cfg = build_config(VQConfig, values, where=str(config_file))
        self.model = VQVAE(self.cfg).eval().to(device)
        load_strict(self.model, read_state_dict(directory / "vq.safetensors"), directory / "vq.safetensors")
        self.vocab_size, self.device = self.cfg.codes, device
        self._path, self._sha = str(directory.resolve()), file_sha256(directory / "vq.safetensors")

    def network(self) -> nn.Module:
        return self.model

    def encode_batch(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.quantize(self.model.encoder(x.float() / 127.5 - 1.0))

    @property
    def weights(self) -> str:
        return self._path

    def identity(self) -> dict:
        return {"kind": "vq", "patch_size": 8, "vocab_size": self.vocab_size, "sha256": self._sha}


def load_tokenizer(spec: str, device: str = "cpu") -> Tokenizer:
    """`patch` / `patch8` / `patch16` | `dvae:WEIGHTS` | `vq:DIR` -> a tokeniser."""
    kind, _, arg = spec.partition(":")
    if kind.startswith("patch") and not arg:
        size = kind.removeprefix("patch") or "8"
        if not size.isdigit():
            raise ConfigError(f"tokeniser {spec!r}: expected patch<N>, e.g. patch8")
        return PatchTokenizer(int(size))
    if kind == "dvae" and arg:
        return DVAETokenizer(arg, device=device)
    if kind == "vq" and arg:
        return VQTokenizer(arg, device=device)
    raise ConfigError(f"unknown tokeniser {spec!r} (expected patch8, dvae:WEIGHTS or vq:DIR)")


IDENTITY_KEYS = ("kind", "patch_size", "vocab_size", "token_dim", "sha256")


def same_tokenizer(a: dict, b: dict) -> bool:
    """Whether two identities or records name the same tokeniser (paths and resolutions may differ)."""
    return all(a.get(k) == b.get(k) for k in IDENTITY_KEYS)


def from_record(record: dict, where: str | Path, device: str = "cpu") -> Tokenizer:
    """The tokeniser a checkpoint's record names, checked against the recorded sha256.

    `where` (the checkpoint) goes into every error; a relative weights path is relative to it.
    """
    kind = record.get("kind")
    if kind == "patch":
        return PatchTokenizer(int(record.get("patch_size", 8)))
    if kind not in ("dvae", "vq"):
        raise CheckpointError(f"{where}: unknown tokeniser kind {kind!r} in the checkpoint (patch, dvae or vq)")
    if not record.get("weights"):
        raise CheckpointError(f"{where}: the checkpoint records no {kind} tokeniser weights path (re-export it)")
    path = Path(record["weights"])
    path = path if path.is_absolute() else Path(where) / path
    if not path.exists():
        raise CheckpointError(
            f"{path}: {kind} tokeniser weights not found (checkpoint {where} was trained with sha256 "
            f"{str(record.get('sha256'))[:12]}...; put the file back there)"
        )
    tokenizer = load_tokenizer(f"{kind}:{path}", device)
    if not same_tokenizer(tokenizer.identity(), record):
        raise CheckpointError(
            f"{path}: sha256 {tokenizer.identity()['sha256'][:12]}... differs from the {kind} tokeniser checkpoint "
            f"{where} was trained with ({str(record.get('sha256'))[:12]}...): not the same weights"
        )
    return tokenizer


def to_uint8(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Normalised float frames `(..., 3, H, W)` -> the uint8 pixels they were made from (exact: rounding undoes
    the float error of normalising, which is far below half a grey level)."""
    shape = (3, 1, 1)
    m = torch.tensor(mean, device=x.device, dtype=torch.float32).view(shape)
    s = torch.tensor(std, device=x.device, dtype=torch.float32).view(shape)
    return ((x.float() * s + m) * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def write_json(path: Path, obj: dict) -> None:
    """Atomic JSON write: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    tmp.replace(path)
