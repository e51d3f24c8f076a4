"""The stacked probe heads equal the plain reference probes; the optimiser and clipping are per head; the grid
learns, selects on held-out train data and is deterministic.

Run: python -m pytest tests/test_probes.py -q
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toto_eval.harness.probe_grid import CachedFeed, fit_probe_grid
from toto_eval.harness.probes import (
    AttentiveHeads,
    AttentiveProbe,
    GlobalBatchNorm,
    LinearHeads,
    LinearProbe,
    ProbeConfig,
    StackedAdamW,
    clip_per_head,
    topk_accuracy,
)


def ProbeData(features: dict[int, np.ndarray], labels: np.ndarray) -> CachedFeed:
    """In-memory features (N, V, ...) as the grid's input."""
    return CachedFeed(features, np.arange(len(labels)), labels, ram_bytes=2**30)


def _copy_attentive(stack: AttentiveHeads, i: int, ref: AttentiveProbe) -> None:
    with torch.no_grad():
        ref.query.copy_(stack.query[i])
        ref.k.weight.copy_(stack.k[i].T)  # stacked weights are (in, out); nn.Linear's are (out, in)
        ref.v.weight.copy_(stack.v[i].T)
        ref.classifier.weight.copy_(stack.classifier[i].T)


@pytest.mark.parametrize("train", [True, False])
def test_attentive_heads_equal_reference(train):
    torch.manual_seed(0)
    stack = AttentiveHeads(n=3, dim=16, num_heads=4, num_classes=5)
    x = torch.randn(6, 7, 16) * 3 + 1
    refs = [AttentiveProbe(16, 4, 5) for _ in range(3)]
    for i, ref in enumerate(refs):
        _copy_attentive(stack, i, ref)
        ref.train(train)
    stack.train(train)
    if not train:  # give eval mode non-trivial running statistics
        for m in [stack.norm, *(r.norm for r in refs)]:
            m.running_mean.fill_(0.5)
            m.running_var.fill_(2.0)
    out = stack(x)
    for i, ref in enumerate(refs):
        torch.testing.assert_close(out[i], ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_token_batch_norm_equals_batchnorm1d_in_training_and_eval(momentum):
    """GlobalBatchNorm reads (B, C, L) token views as channels-last: the same normalisation, running statistics
    and counter as nn.BatchNorm1d (to float rounding), and an output that is contiguous once transposed back."""
    torch.manual_seed(0)
    ours, ref = GlobalBatchNorm(32), torch.nn.BatchNorm1d(32, affine=False, eps=1e-6)
    ours.momentum = ref.momentum = momentum
    for step in range(3):
        x = torch.randn(8, 50, 32) * (step + 1) + step  # (B, L, C) memory, as tokens arrive
        out = ours(x.transpose(1, 2)).transpose(1, 2)
        assert out.is_contiguous()
        torch.testing.assert_close(out, ref(x.transpose(1, 2)).transpose(1, 2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.running_mean, ref.running_mean, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ours.running_var, ref.running_var, atol=1e-5, rtol=1e-6)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 3
    ours.eval(), ref.eval()
    x = torch.randn(4, 50, 32)
    torch.testing.assert_close(ours(x.transpose(1, 2)), ref(x.transpose(1, 2)), atol=1e-5, rtol=1e-5)
    pooled = torch.randn(6, 32)  # (B, C): the linear probe's input takes BatchNorm1d's own path
    assert torch.equal(ours.train()(pooled), ref.train()(pooled))


def test_linear_heads_equal_reference():
    torch.manual_seed(0)
    stack = LinearHeads(n=2, dim=8, num_heads=1, num_classes=3)
    x = torch.randn(5, 8)
    for i in range(2):
        ref = LinearProbe(8, 3)
        with torch.no_grad():
            ref.classifier.weight.copy_(stack.weight[i].T)
            ref.classifier.bias.copy_(stack.bias[i])
        torch.testing.assert_close(stack(x)[i], ref(x), atol=1e-6, rtol=1e-6)


def test_stacked_adamw_matches_torch_adamw_per_head():
    torch.manual_seed(0)
    lrs = [1e-2, 3e-2]
    stacked = torch.nn.Parameter(torch.randn(2, 4, 3))
    singles = [torch.nn.Parameter(stacked[i].detach().clone()[None]) for i in range(2)]
    opt = StackedAdamW([stacked], torch.tensor(lrs), torch.tensor([0.1, 0.1]))
    refs = [
        torch.optim.AdamW([p], lr=lr, weight_decay=0.1, betas=(0.9, 0.999), eps=1e-8)
        for p, lr in zip(singles, lrs, strict=True)
    ]
    for _step in range(5):
        grad = torch.randn(2, 4, 3)
        stacked.grad = grad.clone()
        opt.step(scale=1.0)
        for i, (p, ref) in enumerate(zip(singles, refs, strict=True)):
            p.grad = grad[i][None].clone()
            ref.step()
    for i in range(2):
        torch.testing.assert_close(stacked[i], singles[i][0], atol=1e-6, rtol=1e-6)


def test_clip_per_head_equals_clipping_each_head_alone():
    a, b = torch.nn.Parameter(torch.zeros(3, 4)), torch.nn.Parameter(torch.zeros(3, 2, 2))
    a.grad, b.grad = torch.randn(3, 4) * torch.tensor([[0.01], [1.0], [10.0]]), torch.randn(3, 2, 2)
    expected = []
    for i in range(3):
        ga, gb = a.grad[i].clone(), b.grad[i].clone()
        norm = torch.sqrt(ga.pow(2).sum() + gb.pow(2).sum())
        f = min(1.0, 1.0 / (norm.item() + 1e-6))
        expected.append((ga * f, gb * f))
    clip_per_head([a, b], 1.0)
    for i in range(3):
        torch.testing.assert_close(a.grad[i], expected[i][0])
        torch.testing.assert_close(b.grad[i], expected[i][1])


def test_topk_accuracy_exact():
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5]])
    labels = np.array([1, 2, 0])
    assert topk_accuracy(probs, labels, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(probs, labels, 2) == pytest.approx(2 / 3)


def _toy(n: int, seed: int, informative_layer: int) -> ProbeData:
    """Two layers of (N, V=1, L=4, D=8) tokens; only `informative_layer` carries the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    feats = {layer: rng.normal(size=(n, 1, 4, 8)).astype(np.float16) for layer in (0, 1)}
    feats[informative_layer][np.arange(n), 0, 0, labels] += 4.0
    return ProbeData(feats, labels)


def test_grid_learns_the_informative_layer_and_is_deterministic():
    cfg = ProbeConfig(lrs=(1e-3, 1e-2), epochs=15, batch_size=32)
    train, test = _toy(300, 0, informative_layer=1), _toy(100, 1, informative_layer=1)
    first = fit_probe_grid(train, test, 3, cfg, num_heads=2)
    second = fit_probe_grid(train, test, 3, cfg, num_heads=2)
    assert first.selected["layer"] == 1
    assert first.selected["test_top1"] > 0.9
    assert max(r["test_top1"] for r in first.heads if r["layer"] == 0) < 0.6
    assert len(first.heads) == 4 and len(first.per_layer) == 2
    assert first.heads == second.heads
    np.testing.assert_array_equal(first.test_probs, second.test_probs)


def test_selection_never_looks_at_test_labels():
    cfg = ProbeConfig(lrs=(1e-2,), epochs=5, batch_size=32)
    train, test = _toy(200, 0, informative_layer=0), _toy(60, 1, informative_layer=0)
    honest = fit_probe_grid(train, test, 3, cfg, num_heads=2)
    shuffled = ProbeData(test._arrays, np.random.default_rng(5).permutation(test.labels))
    lied = fit_probe_grid(train, shuffled, 3, cfg, num_heads=2)
    assert honest.selected["layer"] == lied.selected["layer"]
    assert honest.selected["holdout_top1"] == lied.selected["holdout_top1"]


def test_views_are_softmax_averaged():
    cfg = ProbeConfig(probe="linear", lrs=(1e-2,), epochs=3, batch_size=16)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 64)
    train = ProbeData({0: rng.normal(size=(64, 1, 4)).astype(np.float32)}, labels)
    one_view = rng.normal(size=(20, 1, 4)).astype(np.float32)
    test1 = ProbeData({0: one_view}, labels[:20])
    test3 = ProbeData({0: np.repeat(one_view, 3, axis=1)}, labels[:20])  # three identical views
    r1, r3 = fit_probe_grid(train, test1, 2, cfg, num_heads=1), fit_probe_grid(train, test3, 2, cfg, num_heads=1)
    np.testing.assert_allclose(r1.test_probs, r3.test_probs, atol=1e-6)
