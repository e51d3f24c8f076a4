"""`bench/position_readout.py`: the token grid's coordinates in the backbones' raster order, and a readout that
finds a position written into the features and none in noise.

Run: python -m pytest tests/test_bench_position.py -q
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The bench script as a module (bench/ is not a package; it imports its sibling `motion_readout`)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("position_readout", ROOT / "bench" / "position_readout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_positions_follow_frame_row_column_raster_order(monkeypatch: pytest.MonkeyPatch) -> None:
    where = load(monkeypatch).positions((8, 8, 8))
    assert where.shape == (512, 3)
    np.testing.assert_array_equal(where[0], [0, 0, 0])
    np.testing.assert_array_equal(where[7], [0, 0, 7])  # the row fills first
    np.testing.assert_array_equal(where[8], [0, 1, 0])
    np.testing.assert_array_equal(where[64], [1, 0, 0])  # then the frame
    np.testing.assert_array_equal(where[511], [7, 7, 7])


def test_readout_finds_a_written_column_and_nothing_in_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load(monkeypatch)
    grid = (4, 4, 4)
    where = bench.positions(grid)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(50, 64, 16)).astype(np.float32)
    marked = noise.copy()
    marked[..., 0] = where[:, 2]  # the column, and only the column, written into one channel
    draw = np.random.default_rng(1)
    frame, row, col = bench.r2(bench.sample(marked, 4000, draw), bench.sample(marked, 1000, draw), where)
    assert col > 0.999
    assert abs(frame) < 0.02 and abs(row) < 0.02
    scores = bench.r2(bench.sample(noise, 4000, draw), bench.sample(noise, 1000, draw), where)
    assert max(abs(s) for s in scores) < 0.02


def test_readout_of_a_single_frame_leaves_the_frame_undefined(monkeypatch: pytest.MonkeyPatch) -> None:
    """An image has one frame: its R^2 is not defined (None, not NaN, which JSON cannot hold)."""
    bench = load(monkeypatch)
    where = bench.positions((1, 4, 4))
    tokens = np.random.default_rng(0).normal(size=(20, 16, 8)).astype(np.float32)
    tokens[..., 0] = where[:, 1]
    draw = np.random.default_rng(1)
    frame, row, _ = bench.r2(bench.sample(tokens, 2000, draw), bench.sample(tokens, 500, draw), where)
    assert frame is None and row > 0.999
