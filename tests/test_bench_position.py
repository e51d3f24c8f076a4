"""`bench/position_readout.py`: the token grid's coordinates in the backbones' raster order, and a readout that
finds a position written into the features and none in noise.

Run: python -m pytest tests/test_bench_position.py -q
"""

from __future__ import annotations

import numpy as np


def test_positions_follow_frame_row_column_raster_order(bench_script) -> None:
    where = bench_script("position_readout").positions((8, 8, 8))
    assert where.shape == (512, 3)
    np.testing.assert_array_equal(where[0], [0, 0, 0])
    np.testing.assert_array_equal(where[7], [0, 0, 7])  # the row fills first
    np.testing.assert_array_equal(where[8], [0, 1, 0])
    np.testing.assert_array_equal(where[64], [1, 0, 0])  # then the frame
    np.testing.assert_array_equal(where[511], [7, 7, 7])


def test_readout_finds_a_written_column_and_nothing_in_noise(bench_script) -> None:
    bench = bench_script("position_readout")
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


def test_readout_of_a_single_frame_leaves_the_frame_undefined(bench_script) -> None:
    """An image has one frame: its R^2 is not defined (None, not NaN, which JSON cannot hold)."""
    bench = bench_script("position_readout")
    where = bench.positions((1, 4, 4))
    tokens = np.random.default_rng(0).normal(size=(20, 16, 8)).astype(np.float32)
    tokens[..., 0] = where[:, 1]
    draw = np.random.default_rng(1)
    frame, row, _ = bench.r2(bench.sample(tokens, 2000, draw), bench.sample(tokens, 500, draw), where)
    assert frame is None and row > 0.999
