"""Registry lookups, suggestions and lazy entries; strict configs; the timm layer rule.

Run: python -m pytest tests/test_registry_config.py -q
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from toto_eval.common.config import build_config, parse_overrides
from toto_eval.common.errors import ConfigError
from toto_eval.harness.backbone import resolve_layers
from toto_eval.harness.registry import Registry


def test_register_get_and_glob():
    reg: Registry = Registry("thing")
    reg.register("alpha_one", "alpha_two")(int)
    reg.add("beta", "fractions:Fraction")  # lazy: imported on first get
    assert reg.names("alpha_*") == ["alpha_one", "alpha_two"]
    assert reg.get("alpha_two") is int
    from fractions import Fraction

    assert reg.get("beta") is Fraction


def test_unknown_name_suggests_and_duplicates_fail():
    reg: Registry = Registry("backbone")
    reg.add("toto_large", int)
    with pytest.raises(ConfigError, match="did you mean toto_large"):
        reg.get("toto_lrge")
    with pytest.raises(ConfigError, match="registered twice"):
        reg.add("toto_large", float)


def test_entry_points_are_loaded_lazily(monkeypatch):
    import importlib.metadata as md

    ep = md.EntryPoint(name="plug", value="fractions:Fraction", group="toto_eval.backbones")
    monkeypatch.setattr("toto_eval.harness.registry.entry_points", lambda group: [ep] if group == ep.group else [])
    reg: Registry = Registry("backbone", "toto_eval.backbones")
    assert "plug" in reg
    assert reg.get("plug").__name__ == "Fraction"


@dataclass(frozen=True)
class Cfg:
    epochs: int = 3
    lr: float = 1e-3
    lrs: tuple[float, ...] = (1.0, 2.0)
    name: str | None = None
    flag: bool = False


def test_build_config_is_strict_and_coerces_strings():
    cfg = build_config(Cfg, {"epochs": "5", "lr": "0.1", "lrs": "0.5,1", "flag": "true", "name": "none"})
    assert cfg == Cfg(epochs=5, lr=0.1, lrs=(0.5, 1.0), name=None, flag=True)
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        build_config(Cfg, {"epoch": 1})
    with pytest.raises(ConfigError, match="Cfg.epochs: expected int"):
        build_config(Cfg, {"epochs": "many"})
    with pytest.raises(ConfigError, match="expected int"):
        build_config(Cfg, {"epochs": 2.5})


def test_parse_overrides():
    assert parse_overrides(["k400_probe.epochs=3", "k400_probe.lr=1"]) == {"k400_probe": {"epochs": "3", "lr": "1"}}
    with pytest.raises(ConfigError):
        parse_overrides(["epochs=3"])


@pytest.mark.parametrize(
    ("layers", "expected"),
    [(None, [0, 1, 2, 3, 4, 5]), (2, [4, 5]), ([0, -1], [0, 5]), ([-2, 1, 1], [1, 4])],
)
def test_resolve_layers_follows_timm(layers, expected):
    assert resolve_layers(6, layers) == expected


@pytest.mark.parametrize("layers", [0, 7, [6], [-7]])
def test_resolve_layers_rejects_out_of_range(layers):
    with pytest.raises(ConfigError):
        resolve_layers(6, layers)
