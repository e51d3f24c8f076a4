"""Shared fixtures: a counting toy backbone, one mini-suite cache folder for the whole session, and bench scripts
loaded as modules.

Run the suite: python -m pytest (slow tests: python -m pytest -m slow)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from torch import nn

from toto_eval.harness.backbone import Backbone, Layers, Preprocess, resolve_layers


class CountingBackbone(Backbone):
    """A 3-layer toy backbone that counts the samples it has seen (to prove cache hits)."""

    name = "counting"
    num_layers, embed_dim, num_heads, patch_size = 3, 8, 2, 4
    preprocess = Preprocess(resolution=8, frames=1)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(3 * 4 * 4, 8)
        self.seen = 0

    def forward_features(self, x: torch.Tensor, layers: Layers = None) -> dict[int, torch.Tensor]:
        self.seen += x.shape[0]
        b, t, c, h, w = x.shape
        p = x.reshape(b, t, c, h // 4, 4, w // 4, 4).permute(0, 1, 3, 5, 2, 4, 6).flatten(4)  # (B, T, h, w, 48)
        out, feats = self.proj(p), {}
        for i in range(max(resolve_layers(3, layers)) + 1):
            out = torch.tanh(out + i)
            feats[i] = out
        return {i: feats[i] for i in resolve_layers(3, layers)}


class ArraySource:
    """A cache source over an in-memory array of clips `(N, V, T, C, H, W)`; `bad` rows raise DataError."""

    def __init__(self, clips: np.ndarray, labels: np.ndarray, bad: tuple[int, ...] = (), tag: str = "a") -> None:
        self.clips, self.labels, self.bad, self.tag = clips, labels, set(bad), tag
        self.ids = [f"{tag}{i}" for i in range(len(clips))]

    def __len__(self) -> int:
        return len(self.clips)

    def identity(self) -> dict:
        return {"dataset": "array", "tag": self.tag, "n": len(self.clips)}

    def load(self, i: int) -> torch.Tensor:
        from toto_eval.common.errors import data_error

        if i in self.bad:
            raise data_error(f"clip{i}.mp4", "corrupt")
        return torch.from_numpy(self.clips[i]).float()


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests use small tensors: one intra-op thread is fastest and immune to oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def counting() -> CountingBackbone:
    return CountingBackbone()


@pytest.fixture
def array_source() -> ArraySource:
    rng = np.random.default_rng(0)
    return ArraySource(rng.normal(size=(10, 1, 1, 3, 8, 8)).astype(np.float32), rng.integers(0, 2, 10))


@pytest.fixture(scope="session")
def mini_cache(tmp_path_factory) -> object:
    """One cache dir per session, so each mini dataset is generated once."""
    return tmp_path_factory.mktemp("toto-cache")


@pytest.fixture
def bench_script(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """`bench_script("position_readout")`: a bench/ script as a module (bench/ is not a package, and its scripts
    import their siblings, so bench/ goes on sys.path for the test)."""
    bench = Path(__file__).resolve().parents[1] / "bench"
    monkeypatch.syspath_prepend(str(bench))

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, bench / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
