"""The feature cache: one pass serves every layer, a second run reads back, keys move with their inputs, bad
samples are skipped and recorded, the disk check refuses, and an extraction killed with SIGKILL resumes to the
same features.

Run: python -m pytest tests/test_cache.py -q
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from toto_eval.common.errors import TotoEvalError
from toto_eval.harness.cache import FILLED, SKIPPED, FeatureCache


def test_second_extraction_runs_no_forward(tmp_path, counting, array_source):
    cache = FeatureCache(tmp_path)
    first = cache.extract(counting, array_source, layers=[0, 1, 2], token_layers=[2], batch_size=4, progress=False)
    assert counting.seen == 10 and first.stats["computed"] == 10
    second = cache.extract(counting, array_source, layers=[0, 1, 2], token_layers=[2], batch_size=4, progress=False)
    assert counting.seen == 10 and second.stats == {**second.stats, "computed": 0, "cached": 10}
    assert set(second.pooled) == {0, 1, 2} and set(second.tokens) == {2}
    assert second.tokens[2].shape == (10, 1, 4, 8) and second.grid == (1, 2, 2)
    np.testing.assert_array_equal(first.pooled[1], second.pooled[1])


def test_features_equal_a_direct_forward(tmp_path, counting, array_source):
    feats = FeatureCache(tmp_path).extract(counting, array_source, layers=[1], token_layers=[1], progress=False)
    with torch.no_grad():  # sources hand over frames in [0, 255]; the cache normalises them
        direct = counting.forward_features(
            counting.preprocess.normalize(torch.from_numpy(array_source.clips[:, 0])), [1]
        )[1]
    np.testing.assert_allclose(feats.tokens[1][:, 0], direct.flatten(1, 3).numpy(), atol=2e-3)
    np.testing.assert_allclose(feats.pooled[1][:, 0], direct.mean((1, 2, 3)).numpy(), atol=2e-3)


def test_key_changes_with_layers_data_and_weights(tmp_path, counting, array_source):
    cache = FeatureCache(tmp_path)
    cpu = torch.device("cpu")
    base = cache.key(counting, array_source, [0, 1], [], cpu)[0]
    assert cache.key(counting, array_source, [0, 2], [], cpu)[0] != base
    assert cache.key(counting, array_source, [0, 1], [1], cpu)[0] != base
    array_source.tag = "other"
    assert cache.key(counting, array_source, [0, 1], [], cpu)[0] != base
    array_source.tag = "a"
    with torch.no_grad():
        counting.proj.bias[0] += 1e-3
    assert cache.key(counting, array_source, [0, 1], [], cpu)[0] != base


def test_bad_samples_are_skipped_and_named(tmp_path, counting, array_source, caplog):
    array_source.bad = {3}
    feats = FeatureCache(tmp_path).extract(counting, array_source, layers=[0], progress=False)
    assert feats.skipped == {"a3": "clip3.mp4: corrupt"}
    assert 3 not in feats.rows() and len(feats.rows()) == 9
    assert "skipped: clip3.mp4: corrupt" in caplog.text
    filled = np.load(next(tmp_path.glob("*/filled.npy")))
    assert filled[3] == SKIPPED and (np.delete(filled, 3) == FILLED).all()


def test_refuses_when_the_disk_is_too_small(tmp_path, counting, array_source, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 100))
    with pytest.raises(TotoEvalError, match="only 0.00 GiB are free"):
        FeatureCache(tmp_path).extract(counting, array_source, layers=[0], progress=False)


SCRIPT = textwrap.dedent(
    """
    import sys, time, numpy as np, torch
    import toto_eval.harness.cache as cache_module
    from toto_eval.harness.cache import FeatureCache
    cache_module.FLUSH_SECONDS = 0  # flush (and mark filled) after every batch, so a kill finds partial progress
    from toto_eval.harness.evaluate import create_backbone

    class Slow:
        ids = [f"s{i}" for i in range(24)]
        def __len__(self): return 24
        def identity(self): return {"dataset": "slow"}
        def load(self, i):
            time.sleep(float(sys.argv[2]))
            g = torch.Generator().manual_seed(i)
            return torch.randn(1, 1, 3, 64, 64, generator=g)

    feats = FeatureCache(sys.argv[1]).extract(create_backbone("toto_test"), Slow(), layers=[0, 3], token_layers=[1],
                                              batch_size=2, progress=False)
    print("computed", feats.stats["computed"])
    """
)


@pytest.mark.slow  # tests/test_faults.py and test_concurrency.py keep quick forms in the default suite
def test_kill_during_extraction_then_resume_gives_identical_features(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(killed), "0.15"], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until some, but not all, rows are on disk
        filled = list(killed.glob("*/filled.npy"))
        if filled and 4 <= (np.load(filled[0]) == FILLED).sum() < 24:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = int((np.load(filled[0]) == FILLED).sum())
    assert 0 < done_before < 24 and not list(killed.glob("*/COMPLETE"))
    resumed = subprocess.run([sys.executable, "-c", SCRIPT, str(killed), "0"], capture_output=True, text=True)
    assert f"computed {24 - done_before}" in resumed.stdout, resumed.stderr
    subprocess.run([sys.executable, "-c", SCRIPT, str(clean), "0"], check=True, capture_output=True)
    a, b = next(killed.glob("*/")), next(clean.glob("*/"))
    assert json.loads((a / "index.json").read_text()) == json.loads((b / "index.json").read_text())
    for name in ("pooled_L000", "pooled_L003", "tokens_L001"):
        np.testing.assert_array_equal(np.load(a / f"{name}.npy"), np.load(b / f"{name}.npy"))
