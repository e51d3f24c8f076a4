"""The positive-control backbones: the backbone contract, the shift mixer, training, and the weights cache.

Run: python -m pytest tests/test_controls.py -q

Training on the real mini train splits takes minutes (see bench/mini_range.py for the measured ranges); here a
tiny spec learns a synthetic task in seconds, so what is checked is the mechanism: trained on first use, cached
by mini-dataset version and recipe, read back without training, flagged as a supervised control.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from toto_eval.backbones import _control_data, controls
from toto_eval.backbones._control_train import train_classifier, train_correspondence
from toto_eval.backbones.controls import SPECS, ControlNet, ControlSpec, shift
from toto_eval.harness.evaluate import create_backbone
from toto_eval.harness.registry import BACKBONES

TINY = ControlSpec("imagenet_probe", num_classes=2, resolution=16, width=16, blocks=2, epochs=12, batch_size=8)


def test_every_control_is_registered_and_flagged():
    for name, spec in SPECS.items():
        doc = BACKBONES.get(name).__doc__
        assert doc.startswith("POSITIVE CONTROL") and spec.task in doc
        net = create_backbone(name, random_init=True)
        assert net.random_init and net.supervised_control
        assert net.config()["supervised_control"]["task"] == spec.task


def test_forward_features_contract():
    net = ControlNet("c", dataclasses.replace(TINY, blocks=3)).eval()
    x = torch.randn(2, 4, 3, 16, 16)
    with torch.no_grad():
        out = net.forward_features(x, [0, -1])
        again = net.forward_features(x, [0, -1])
    assert sorted(out) == [0, 2] and out[0].shape == (2, 4, 2, 2, 16) == out[2].shape
    assert net.token_grid(4, 16, 16) == (4, 2, 2) and net.default_layer == 2
    assert all(torch.equal(out[k], again[k]) for k in out)
    assert net.embed_dim % net.num_heads == 0


def test_shift_moves_one_group_per_direction_and_its_gradient_is_the_reverse_move():
    x = torch.zeros(1, 3, 3, 3, 8)
    x[0, 1, 1, 1] = 1.0
    y = shift(x)
    moved = [tuple(torch.nonzero(y[..., c])[0].tolist()) for c in range(2, 8)]
    assert moved == [(0, 2, 1, 1), (0, 0, 1, 1), (0, 1, 2, 1), (0, 1, 0, 1), (0, 1, 1, 2), (0, 1, 1, 0)]
    assert torch.equal(y[..., :2], x[..., :2])
    a = torch.randn(2, 3, 4, 5, 16, requires_grad=True)
    b = torch.randn(2, 3, 4, 5, 16)
    (shift(a) * b).sum().backward()  # <shift(a), b> = <a, shift^T(b)>: the gradient is the adjoint
    assert torch.allclose((shift(a) * b).sum(), (a * a.grad).sum(), atol=1e-5)
    edge = torch.ones(1, 1, 2, 2, 8)
    assert shift(edge)[..., 2:4].abs().sum() == 0  # a single frame: the time-shifted groups are zero, not wrapped


def _two_colours(n: int = 48) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, n)
    clips = rng.normal(128, 20, (n, 1, 1, 3, 16, 16))
    clips[:, :, :, 0] += np.where(labels == 1, 60.0, -60.0)[:, None, None, None, None]  # class = red channel
    return torch.from_numpy(clips.round().clip(0, 255).astype(np.uint8)), labels  # uint8, as the loaders give


@pytest.mark.parametrize("head", ["attention", "mil"])
def test_train_classifier_learns_a_separable_task(head):
    clips, labels = _two_colours()
    torch.manual_seed(0)
    net = ControlNet("c", dataclasses.replace(TINY, head=head))
    losses = train_classifier(net, clips, labels)
    with torch.no_grad():
        pred = net.logits(net.preprocess.normalize(clips[:, 0])).argmax(-1).numpy()
    assert losses[-1] < losses[0] and (pred == labels).mean() > 0.95


def test_train_correspondence_lowers_the_propagation_loss():
    rng = np.random.default_rng(0)
    frames, labels = [], []
    for _ in range(3):  # two colour blobs that swap sides: correspondence must follow colour, not position
        f = torch.zeros(4, 3, 16, 16)
        y = torch.zeros(4, 2, 2, 3)
        for t in range(4):
            left = t % 2
            f[t, 0, :, :8] = 230.0 if left else 25.0
            f[t, 0, :, 8:] = 25.0 if left else 230.0
            y[t, :, 0, 1 + (1 - left)] = 1.0
            y[t, :, 1, 1 + left] = 1.0
        noisy = f + 12.0 * torch.from_numpy(rng.normal(size=f.shape)).float()
        frames.append(noisy.round().clamp(0, 255).to(torch.uint8))  # uint8, as the loaders give frames
        labels.append(y)
    torch.manual_seed(0)
    spec = dataclasses.replace(TINY, task="davis", num_classes=0, epochs=1, warmup_epochs=0)
    losses = train_correspondence(ControlNet("c", spec), frames, labels)
    assert len(losses) == 1 and losses[0] < 0.6  # chance: -log(1/2) = 0.69 at the start


def test_weights_are_trained_once_cached_and_keyed_by_the_mini_version(tmp_path, monkeypatch):
    calls = []

    def fake_train_set(root, backbone):
        calls.append(root)
        return _two_colours()

    monkeypatch.setitem(_control_data.TRAIN_SETS, "imagenet_probe", fake_train_set)
    monkeypatch.setitem(controls.TRAIN_SETS, "imagenet_probe", fake_train_set)
    first = controls.trained("control_tiny", TINY, tmp_path)
    second = controls.trained("control_tiny", TINY, tmp_path)
    assert len(calls) == 1 and first.fingerprint() == second.fingerprint()
    path = controls.weights_path("control_tiny", TINY, tmp_path)
    assert path.exists() and path.name.startswith("control_tiny-mini") and not first.random_init
    monkeypatch.setattr("toto_eval.tasks.imagenet_probe.mini.VERSION", "999")
    assert controls.weights_path("control_tiny", TINY, tmp_path) != path  # new mini data: retrain
    assert controls.weights_path("control_tiny", dataclasses.replace(TINY, epochs=1), tmp_path) != path


def test_checkpoint_and_random_init_are_exclusive(tmp_path):
    with pytest.raises(Exception, match="not both"):
        create_backbone("control_k400", checkpoint=tmp_path / "w.safetensors", random_init=True)


def test_per_frame_cater_labels_end_with_the_list_label(tmp_path):
    """The CATER control's per-frame targets come from the train scenes; the last sampled frame's is the label."""
    from toto_eval.tasks.cater.data import read_list
    from toto_eval.tasks.cater.mini import MINI, write_dataset
    from toto_eval.tasks.cater.task import Config

    write_dataset(tmp_path, dataclasses.replace(MINI, videos=4, width=32, height=32, video_frames=12))
    cfg = Config(frames=5, list_task="localize_4x4")
    for entry in read_list(tmp_path / "lists" / "localize_4x4" / "train.txt", tmp_path, 16):
        cells = _control_data._snitch_cells(tmp_path, entry.video, cfg)
        assert cells.shape == (5,) and cells[-1] == entry.label and ((cells >= 0) & (cells < 16)).all()


def test_mirror_flips_clips_and_their_grid_cells_together():
    from toto_eval.backbones._control_train import mirror

    x = torch.arange(2 * 1 * 1 * 1 * 4, dtype=torch.float32).view(2, 1, 1, 1, 4)
    labels = torch.tensor([[0, 5], [3, 14]])  # 4x4 cells: row * 4 + col
    rng = np.random.default_rng(0)
    flipped, cells = mirror(x, labels, 4, rng)
    flip = torch.as_tensor(np.random.default_rng(0).random(2) < 0.5)
    for i in range(2):
        expected = (x[i].flip(-1), labels[i] // 4 * 4 + 3 - labels[i] % 4) if flip[i] else (x[i], labels[i])
        assert torch.equal(flipped[i], expected[0]) and torch.equal(cells[i], expected[1])
    assert mirror(x, labels, 0, rng)[1] is labels


def test_translate_moves_whole_clips_by_whole_pixels():
    from toto_eval.backbones._control_train import translate

    x = torch.zeros(3, 2, 1, 9, 9)
    x[:, :, :, 4, 4] = 1.0  # one lit pixel in the middle of every frame
    moved = translate(x, 2, np.random.default_rng(1))
    for clip in moved:
        (ys, xs) = torch.nonzero(clip[0, 0], as_tuple=True)
        assert len(ys) == 1 and abs(int(ys[0]) - 4) <= 2 and abs(int(xs[0]) - 4) <= 2
        assert torch.equal(clip[0], clip[1])  # the same shift for every frame of a clip
