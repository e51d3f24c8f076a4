"""The backbone contract, checked for every registered backbone (built with `random_init=True`).

Run: python -m pytest tests/test_backbone_contract.py -q          (backbones up to 12M parameters)
     python -m pytest tests/test_backbone_contract.py -q -m slow  (the larger ones, minutes)

Each backbone is fed its smallest input (two patches a side, three frames) and must: follow the layer rule
(None / int / negative / list, errors for layers that do not exist), return grids whose shape is
`token_grid(...)` with the layer's width, give the same tensor for a layer whether or not deeper layers were
computed (early stopping), be deterministic in eval mode, produce no NaNs, and change its fingerprint when any
weight changes. Sizes are read from a meta-device build at collection time, so big models cost nothing unless
asked for.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Importing registers: the package holds the built-ins, the zoo modules are named until the package imports them.
import toto_eval.backbones
import toto_eval.backbones.baselines
import toto_eval.backbones.timm_vit
import toto_eval.backbones.torchvision_cnn
import toto_eval.backbones.video_vit  # noqa: F401
from toto_eval.common.errors import CheckpointError, ConfigError
from toto_eval.harness.backbone import Backbone
from toto_eval.harness.registry import BACKBONES

FAST_PARAMS = 12e6  # one or two of each family: vit_test, deit_tiny, resnet18, video_vit_test, pixels
BATCH, FRAMES = 2, 3


def _meta_params(name: str) -> float:
    try:
        with torch.device("meta"):
            return BACKBONES.get(name)(random_init=True).num_params()
    except Exception:  # a factory that cannot build on meta is measured when it is really built
        return 0.0


def _params() -> list:
    out = []
    for name in BACKBONES.names():
        n = _meta_params(name)
        marks = [pytest.mark.slow] if n > FAST_PARAMS else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


NAMES = _params()


@pytest.fixture(scope="module", params=NAMES)
def bb(request: pytest.FixtureRequest) -> Backbone:
    """One built backbone per name; module scope makes pytest run all checks of a backbone, then drop it."""
    return BACKBONES.get(request.param)(random_init=True).eval()


def _input(bb: Backbone) -> torch.Tensor:
    side = bb.preprocess.resolution if bb.preprocess.resolution <= 64 else 2 * bb.patch_size
    side = max(side, 2 * bb.patch_size)
    return torch.randn(BATCH, FRAMES, 3, side, side, generator=torch.Generator().manual_seed(1))


def _dim(bb: Backbone, layer: int) -> int:
    dims = getattr(bb, "layer_dims", None)  # backbones whose width changes with depth (CNN stages)
    return dims[layer] if dims else bb.embed_dim


@pytest.fixture
def cached_control_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every positive control's weights already in a fresh cache folder, as a first use leaves them: the factory's
    no-flag path then loads them instead of training for minutes (training is tested in test_controls.py and,
    at full size, by the slow range tests)."""
    from safetensors.torch import save_file

    from toto_eval.backbones.controls import SPECS, ControlNet, weights_path

    monkeypatch.setenv("TOTO_EVAL_CACHE_DIR", str(tmp_path))
    for name, spec in SPECS.items():
        path = weights_path(name, spec, tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in ControlNet(name, spec).state_dict().items()}, str(path))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.usefixtures("cached_control_weights")
def test_factory_signature(name: str) -> None:
    """Without flags a backbone says what to pass, or loads shipped weights, or is weightless or flagged untrained."""
    factory = BACKBONES.get(name)
    try:
        bb = factory()
    except CheckpointError as err:
        assert "--checkpoint" in str(err) and "--random-init" in str(err)
        return
    # weights shipped with the package count as a checkpoint; untrained weights must say so
    assert bb.checkpoint or bb.random_init or bb.num_params() == 0, f"{name} built untrained weights silently"


def test_metadata(bb: Backbone) -> None:
    assert not bb.training
    assert bb.num_layers >= 1 and bb.embed_dim >= 1 and bb.num_heads >= 1
    assert 0 <= bb.default_layer < bb.num_layers
    assert bb.name in BACKBONES
    assert bb.random_init or bb.num_params() == 0
    for layer in range(bb.num_layers):
        assert _dim(bb, layer) % bb.num_heads == 0, "attentive probes split the width into num_heads"


def test_layers_shapes_and_early_stop(bb: Backbone) -> None:
    x = _input(bb)
    n = bb.num_layers
    with torch.no_grad():
        full = bb.forward_features(x)
        assert sorted(full) == list(range(n))
        grid = bb.token_grid(FRAMES, x.shape[-2], x.shape[-1])
        for layer, feats in full.items():
            assert tuple(feats.shape) == (BATCH, *grid, _dim(bb, layer)), f"layer {layer}"
            assert torch.isfinite(feats).all(), f"layer {layer} has NaN/inf"
        one = x[:1, :1]  # the layer rule needs only the keys: a single frame keeps it cheap
        assert sorted(bb.forward_features(one, 1)) == [n - 1]
        assert sorted(bb.forward_features(one, [-1])) == [n - 1]
        assert sorted(bb.forward_features(one, [0, -1])) == sorted({0, n - 1})
        for layer in {0, bb.default_layer}:  # computation stops after `layer`; the result must not change
            alone = bb.forward_features(x, [layer])
            assert list(alone) == [layer]
            torch.testing.assert_close(alone[layer], full[layer], rtol=1e-5, atol=1e-5)
        again = bb.forward_features(x)
    for layer in full:
        assert torch.equal(again[layer], full[layer]), "eval mode must be deterministic"
    with pytest.raises(ConfigError):
        bb.forward_features(x, [n])
    with pytest.raises(ConfigError):
        bb.forward_features(x, n + 1)


def test_fingerprint_follows_weights(bb: Backbone) -> None:
    first = bb.fingerprint()
    assert bb.fingerprint() == first
    params = [p for p in bb.parameters() if p.is_floating_point()]
    if not params:
        pytest.skip(f"{bb.name} has no weights")
    p = params[len(params) // 2]
    with torch.no_grad():
        old = p.view(-1)[0].item()
        p.view(-1)[0] += 1e-3
        changed = bb.fingerprint()
        p.view(-1)[0] = old
    assert changed != first
    assert bb.fingerprint() == first
