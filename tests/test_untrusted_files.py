"""Untrusted files: no loader ever unpickles code, and each refuses a booby-trapped file in one line naming it.

The payload is a pickle whose `__reduce__` calls `open(marker, "w")`: unpickled by `pickle.load` (or
`torch.load(weights_only=False)`, or `np.load(allow_pickle=True)`), it creates the marker file. A control test
proves the payload is live; every other test feeds it to one loader (weight files of every suffix and container,
the zoo factories with `checkpoint=`, the dVAE weights, the training resume's optimizer state, robot demo files,
feature-cache arrays, token shards) and asserts that the marker never appears and that the error is a
`TotoEvalError` of one line naming the file (errors from torch or numpy are cut to their first line).

Run: python -m pytest tests/test_untrusted_files.py -q
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from toto_eval.common.errors import TotoEvalError


class Payload:
    """Creates `marker` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def _pickle_file(path: Path, marker: Path, torch_zip: bool = True) -> Path:
    """A checkpoint-shaped pickle with the payload among real tensors (torch's zip format, or a bare pickle)."""
    obj = {"state_dict": {"weight": torch.zeros(2), "trap": Payload(marker)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    if torch_zip:
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj))
    return path


def _npy_with_payload(path: Path, marker: Path) -> Path:
    """A .npy holding an object array whose element is the payload (what `np.save` writes for objects)."""
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = Payload(marker), 1.0
    np.save(path, arr, allow_pickle=True)
    return path


def _refused(load, path: Path, marker: Path) -> str:
    """Run `load()`; assert the payload did not run and a TotoEvalError came; return its message."""
    with pytest.raises(TotoEvalError) as info:
        load()
    assert not marker.exists(), "the payload ran: a loader unpickled code"
    return str(info.value)


def _one_line_naming(message: str, path: Path) -> None:
    assert "\n" not in message, f"not one line: {message!r}"
    assert str(path) in message or path.name in message, f"does not name {path}: {message!r}"


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "PAYLOAD_RAN"


def test_control_the_payload_is_live(tmp_path, marker):
    for torch_zip in (True, False):
        path = _pickle_file(tmp_path / f"c{torch_zip}.pth", marker, torch_zip)
        torch.load(path, weights_only=False) if torch_zip else pickle.loads(path.read_bytes())
        assert marker.exists()
        marker.unlink()
    np.load(_npy_with_payload(tmp_path / "c.npy", marker), allow_pickle=True)
    assert marker.exists()


# --- files this module's owners control: must refuse in one line ------------------------------------------------


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin", ".ckpt"])
@pytest.mark.parametrize("torch_zip", [True, False], ids=["torch_save", "bare_pickle"])
def test_weights_read_state_dict(tmp_path, marker, suffix, torch_zip):
    from toto_eval.backbones._weights import read_state_dict

    path = _pickle_file(tmp_path / f"w{suffix}", marker, torch_zip)
    _one_line_naming(_refused(lambda: read_state_dict(path), path, marker), path)


def test_weights_read_state_dict_safetensors_with_a_pickle_inside(tmp_path, marker):
    from toto_eval.backbones._weights import read_state_dict

    path = _pickle_file(tmp_path / "w.safetensors", marker)
    _one_line_naming(_refused(lambda: read_state_dict(path), path, marker), path)


@pytest.mark.parametrize("name", ["vit_test", "resnet18", "video_vit_test", "pixels"])
def test_zoo_factories_with_checkpoint(tmp_path, marker, name):
    from toto_eval.harness.registry import BACKBONES

    path = _pickle_file(tmp_path / f"{name}.pth", marker)
    factory = BACKBONES.get(name)
    _one_line_naming(_refused(lambda: factory(checkpoint=str(path)), path, marker), path)


@pytest.mark.parametrize("kind", ["object_array_in_npz", "bare_pickle"])
def test_robot_demo_files(tmp_path, marker, kind):
    from toto_eval.tasks.robot.demos import DEMO_FORMAT, load_demos

    folder = tmp_path / "demos"
    folder.mkdir()
    episode = {"seed": 0, "success": True, "steps": 2, "file": "ep_00000.npz"}
    (folder / "manifest.json").write_text(json.dumps({"format": DEMO_FORMAT, "episodes": [episode]}))
    path = folder / "ep_00000.npz"
    if kind == "bare_pickle":
        path.write_bytes(pickle.dumps({"images": Payload(marker)}))
    else:
        images = np.empty(2, dtype=object)
        images[0], images[1] = Payload(marker), 0
        with open(path, "wb") as f:
            np.savez(f, images=images, proprio=np.zeros((2, 3), np.float32), actions=np.zeros((2, 4), np.float32))
    _one_line_naming(_refused(lambda: load_demos(folder, 1), path, marker), path)


# --- files owned elsewhere (pretrain/, harness/): the payload must never run; one-line errors pending ---------------


def test_dvae_tokenizer_weights_never_unpickle_code(tmp_path, marker):
    from toto_eval.pretrain.tokenizers import DVAETokenizer, read_state_dict

    path = _pickle_file(tmp_path / "encoder.pt", marker)
    message = _refused(lambda: read_state_dict(path), path, marker)
    assert path.name in message
    _refused(lambda: DVAETokenizer(path), path, marker)


def test_dvae_tokenizer_weights_error_is_one_line(tmp_path, marker):
    from toto_eval.pretrain.tokenizers import read_state_dict

    path = _pickle_file(tmp_path / "encoder.pt", marker)
    _one_line_naming(_refused(lambda: read_state_dict(path), path, marker), path)


class _Loss(nn.Module):
    """The shape `load_state` expects: the trained model held as `.toto`."""

    def __init__(self) -> None:
        super().__init__()
        self.toto = nn.Linear(2, 2)


def _resume_dir(tmp_path: Path, marker: Path) -> tuple[Path, _Loss, torch.optim.Optimizer]:
    model = _Loss()
    ckpt = tmp_path / "step_0000001"
    ckpt.mkdir()
    save_file({k: v.contiguous() for k, v in model.toto.state_dict().items()}, str(ckpt / "model.safetensors"))
    _pickle_file(ckpt / "optimizer.pt", marker)
    return ckpt, model, torch.optim.AdamW(model.parameters())


def test_training_resume_optimizer_state_never_unpickles_code(tmp_path, marker):
    from toto_eval.pretrain.train import load_state

    ckpt, model, opt = _resume_dir(tmp_path, marker)
    assert "optimizer.pt" in _refused(lambda: load_state(ckpt, model, opt), ckpt / "optimizer.pt", marker)


def test_training_resume_optimizer_state_error_is_one_line(tmp_path, marker):
    from toto_eval.pretrain.train import load_state

    ckpt, model, opt = _resume_dir(tmp_path, marker)
    path = ckpt / "optimizer.pt"
    _one_line_naming(_refused(lambda: load_state(ckpt, model, opt), path, marker), path)


@pytest.mark.parametrize("kind", ["object_npy", "bare_pickle"])
def test_token_shards(tmp_path, marker, kind):
    from toto_eval.pretrain.shards import FORMAT, ShardSet

    meta = {"format": FORMAT, "complete": True, "grid": [1, 1, 1], "tokenizer": {"kind": "vq"}, "token_dim": 0,
            "dtype": "int32", "shards": [{"file": "shard_00000.npy", "count": 2, "kinds": "vv"}]}  # fmt: skip
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    path = tmp_path / "shard_00000.npy"
    if kind == "bare_pickle":
        path.write_bytes(pickle.dumps([Payload(marker)]))
    else:
        _npy_with_payload(path, marker)
    _one_line_naming(_refused(lambda: ShardSet(tmp_path), path, marker), path)


def _cache_entry(tmp_path: Path, marker: Path) -> Path:
    entry = tmp_path / "entry"
    entry.mkdir()
    (entry / "meta.json").write_text(json.dumps({"arrays": {"pooled_L0": [4]}, "grid": [1, 1, 1], "n": 2}))
    (entry / "index.json").write_text(json.dumps(["a", "b"]))
    _npy_with_payload(entry / "pooled_L0.npy", marker)
    np.save(entry / "filled.npy", np.ones(2, np.uint8))
    (entry / "COMPLETE").write_text("ok\n")
    return entry


def _open_cache_entry(entry: Path):
    from toto_eval.harness.cache import _Entry

    return _Entry(entry, {}, ["a", "b"]).open()


def test_cache_arrays_never_unpickle_code(tmp_path, marker):
    entry = _cache_entry(tmp_path, marker)
    with pytest.raises(Exception):  # noqa: B017 -- today a bare ValueError; the one-line test below tracks the fix
        _open_cache_entry(entry)
    assert not marker.exists()


def test_cache_arrays_error_is_one_line(tmp_path, marker):
    entry = _cache_entry(tmp_path, marker)
    path = entry / "pooled_L0.npy"
    _one_line_naming(_refused(lambda: _open_cache_entry(entry), path, marker), path)
