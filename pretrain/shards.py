"""Token shards: every clip is tokenised once, written to disk, and read back memory-mapped by the trainer.

A shard directory holds `meta.json` and `shard_00000.npy`, `shard_00001.npy`, ... Each shard is one array of
tokens `(n, T, h, w)` (int16 codes) or `(n, T, h, w, d)` (uint8 patches). `meta.json` records the tokeniser's
identity (and, as `tokenizer_record`, where its weights are), the mixture's identity, the grid, and per shard:
file name, row count, sha256, and a string of clip kinds ("v" video, "i" image) that picks each sequence's start
token. Shards are written to a temporary name and renamed, and `meta.json` is rewritten after each one, so a
killed build resumes at the next shard and a reader never sees half a file. `ShardSet` checks every shard's
header against the metadata when it opens (cheap); `verify()` also checks the hashes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..common.errors import ConfigError, DataError, data_error
from .data import Mixture
from .schedule import eta
from .tokenizers import Tokenizer, file_sha256, write_json

logger = logging.getLogger(__name__)
FORMAT = 1
KIND_CODE = {"video": "v", "image": "i"}
START_VIDEO, END, START_IMAGE = 1, 2, 3  # the paper's special token ids
CODE_OFFSET = 4  # discrete code c is token id c + 4: ids 0..3 are pad, video start, end, image start


def build_shards(
    mixture: Mixture,
    tokenizer: Tokenizer,
    out_dir: str | Path,
    num_clips: int,
    shard_size: int = 1024,
    log: Callable[[str], object] | None = None,
) -> Path:
    """Sample `num_clips` clips from `mixture`, tokenise them and write shards; resumes a killed build."""
    log = log or logger.info
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h, w = tokenizer.grid(mixture.resolution)
    header = {
        "format": FORMAT,
        "tokenizer": tokenizer.identity(),
        "mixture": mixture.identity(),
        "grid": [mixture.frames, h, w],
        "token_dim": tokenizer.token_dim,
        "dtype": tokenizer.dtype.name,
        "num_clips": num_clips,
        "shard_size": shard_size,
    }
    meta = _resume_meta(out / "meta.json", header)
    meta["tokenizer_record"] = tokenizer.record(mixture.resolution)  # where its weights are: checkpoints keep it
    done = first = sum(s["count"] for s in meta["shards"])
    start = time.time()
    while done < num_clips:
        rows, kinds = [], []
        while len(rows) < min(shard_size, num_clips - done):
            i = meta["next_index"]
            meta["next_index"] += 1
            try:
                clip = mixture.sample(i)
            except DataError as err:  # one bad file among many: record it and draw the next sample
                meta["skipped"][str(i)] = str(err)
                log(f"skipped sample {i}: {err}")
                continue
            rows.append(tokenizer.encode(clip.frames))
            kinds.append(KIND_CODE[clip.kind])
        name = f"shard_{len(meta['shards']):05d}.npy"
        tmp = out / (name + ".tmp")
        with open(tmp, "wb") as f:
            np.save(f, np.stack(rows).astype(tokenizer.dtype))
        tmp.replace(out / name)
        meta["shards"].append(
            {"file": name, "count": len(rows), "sha256": file_sha256(out / name), "kinds": "".join(kinds)}
        )
        write_json(out / "meta.json", meta)
        done += len(rows)
        elapsed = time.time() - start
        log(f"{name}: {done}/{num_clips} clips, {elapsed:.0f}s, eta {eta(elapsed, done - first, num_clips - done)}")
    meta["complete"] = True
    write_json(out / "meta.json", meta)
    return out


def _resume_meta(path: Path, header: dict) -> dict:
    if not path.exists():
        return {**header, "shards": [], "next_index": 0, "skipped": {}, "complete": False}
    meta = read_meta(path)
    for key, value in header.items():
        if meta.get(key) != json.loads(json.dumps(value)):
            raise ConfigError(f"{path}: existing shards were built with a different {key}; use a new directory")
    return meta


def read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise data_error(path, "no shard metadata (build shards with `toto-pretrain shards`)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise data_error(path, f"corrupt shard metadata ({err})") from None
    if not isinstance(meta, dict):
        raise data_error(path, "corrupt shard metadata (not a JSON object)")
    if meta.get("format") != FORMAT:
        raise data_error(path, f"shard format {meta.get('format')!r}, this version reads {FORMAT}")
    for key, kind in (("grid", list), ("tokenizer", dict), ("shards", list), ("dtype", str), ("token_dim", int)):
        if not isinstance(meta.get(key), kind):
            raise data_error(path, f"corrupt shard metadata ({key!r} missing or not a {kind.__name__})")
    return meta


class ShardSet:
    """Read-only view of a shard directory: `len()`, `tokens(i)` and `kind(i)` over all clips."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.meta = read_meta(self.root / "meta.json")
        if not self.meta.get("complete"):
            raise data_error(self.root, "shard build did not finish (run `toto-pretrain shards` again to resume)")
        self.grid = tuple(self.meta["grid"])  # (T, h, w)
        self.tokenizer = self.meta["tokenizer"]
        resolution = self.meta.get("mixture", {}).get("resolution")  # shards from before records: no weights path
        self.tokenizer_record = self.meta.get(
            "tokenizer_record", {**self.tokenizer, "weights": None, "resolution": resolution}
        )
        self.token_dim = int(self.meta["token_dim"])
        self.arrays = [self._open(s) for s in self.meta["shards"]]
        self.kinds = "".join(s["kinds"] for s in self.meta["shards"])
        self.offsets = np.cumsum([0] + [len(a) for a in self.arrays])

    def _open(self, entry: dict) -> np.ndarray:
        path = self.root / entry["file"]
        expect = (entry["count"], *self.grid) + ((self.token_dim,) if self.token_dim else ())
        try:
            array = np.load(path, mmap_mode="r")
        except FileNotFoundError:
            raise data_error(path, "shard file missing") from None
        except (ValueError, OSError) as err:
            raise data_error(path, f"corrupt shard ({err})") from None
        if array.shape != expect or array.dtype.name != self.meta["dtype"]:
            raise data_error(
                path, f"corrupt shard: {array.dtype}{array.shape}, metadata says {self.meta['dtype']}{expect}"
            )
        return array

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def tokens(self, i: int) -> np.ndarray:
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return np.asarray(self.arrays[k][i - self.offsets[k]])

    def kind(self, i: int) -> str:
        return "image" if self.kinds[i] == "i" else "video"

    @property
    def continuous(self) -> bool:
        return self.token_dim > 0

    def verify(self) -> None:
        """Recompute every shard's sha256; a mismatch is a DataError naming the shard."""
        for entry in self.meta["shards"]:
            if file_sha256(self.root / entry["file"]) != entry["sha256"]:
                raise data_error(self.root / entry["file"], "corrupt shard: sha256 does not match meta.json")


def seq_len(shards: ShardSet) -> int:
    """Tokens per training sequence: start + frames (+ end for discrete tokens, see train.py)."""
    t, h, w = shards.grid
    return 1 + t * h * w + (0 if shards.continuous else 1)


def make_batch(shards: ShardSet, clips: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens `(B, T, h, w[, d])`, start ids `(B,)`) of a list of clip indices."""
    tokens = torch.from_numpy(np.stack([shards.tokens(i) for i in clips]))
    starts = torch.tensor([START_IMAGE if shards.kind(i) == "image" else START_VIDEO for i in clips])
    return tokens.to(device), starts.to(device)
