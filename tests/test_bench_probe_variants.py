"""`bench/probe_variants.py`: a position table lets the probe read where a token is, which pooling alone cannot,
and per-class accuracy is counted per label.

Run: python -m pytest tests/test_bench_probe_variants.py -q
"""

from __future__ import annotations

import argparse

import torch


def where_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 4, 8) tokens: noise, and one token of 4 carrying the same bright vector; the label is which one."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(n, 4, 8, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    x[torch.arange(n), y] += 3.0
    return x, y


def test_only_the_position_table_reads_which_token_is_bright(bench_script) -> None:
    bench = bench_script("probe_variants")
    torch.set_num_threads(1)
    args = argparse.Namespace(epochs=30, batch_size=16, lr=3e-3)
    train, (xv, yv) = where_task(256, 0), where_task(200, 1)
    val = (xv[:, None], yv)  # one view per val sample
    plain = bench.train_and_test(train, val, args, table=False, seed=0).mean()
    table = bench.train_and_test(train, val, args, table=True, seed=0).mean()
    assert plain < 0.45 and table > 0.9  # chance is 0.25: pooling forgets where the bright token was


def test_per_class_counts_each_label_on_its_own(bench_script) -> None:
    bench = bench_script("probe_variants")
    hits, labels = torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([0, 0, 1, 1])
    assert bench.per_class(hits, labels, ["a", "b"]) == {"a": 50.0, "b": 100.0}
    assert bench.class_names("k400_probe", 12)[:2] == ["appearing", "approaching"]  # the label order: sorted names
    assert bench.class_names("cater", 3) == ["0", "1", "2"]
