"""The Toto pre-training loop: one process or `torchrun` (DDP; FSDP for `1b`), exact resume after a kill.

A step trains on a global batch counted in tokens (`BatchPlan`), split over ranks and gradient-accumulated
micro-batches; AdamW (decay on matrices only), linear warm-up then cosine, gradient clipping, bf16 autocast on
CUDA and fp32 on CPU. Sequences follow the paper: start token (1 video, 3 image), the frames' tokens in raster
order, end token (2). Discrete codes are shifted by `CODE_OFFSET` so they never collide with the special ids and
trained with next-token cross-entropy. Continuous patch tokens are embedded linearly and the next patch is
regressed (MSE on per-patch normalised pixels, or with `patch_target="raw"` on the pixels it reads, where
copying an unchanged patch from the previous frame is a linear map); the end token is left out there because
under causal attention it cannot change any other position and it has no patch to predict.

Exact resume: a checkpoint (every `ckpt_every` steps, directory renamed into place, then `latest` updated) holds
the weights (safetensors + JSON config, via `checkpoint.save`), the optimizer state, and the step.
The data order and learning rate are pure functions of the step (`schedule.py`), so a restarted run replays
exactly the remaining steps: the same loss curve, bit for bit on the same machine. Logs after the checkpoint are
truncated on resume. A resume whose config differs from the checkpoint's is refused before anything is written.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from ..common.errors import CheckpointError, ConfigError, describe
from . import checkpoint
from .archs import arch_for_config, get_arch
from .configs import TrainConfig
from .decoder import Decoder, DecoderConfig
from .schedule import BatchPlan, DataOrder, eta, lr_at, peak_flops
from .shards import CODE_OFFSET, END, ShardSet, make_batch, seq_len
from .tokenizers import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PATCH_TARGETS,
    patch_inputs,
    regression_targets,
    same_tokenizer,
    write_json,
)

# Settings that may change between a run and its resume without changing the numbers.
RESUME_MAY_DIFFER = ("out", "log_every", "ckpt_every", "keep_checkpoints", "threads", "peak_tflops", "quiet")
log = logging.getLogger(__name__)
DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}


def model_config(cfg: TrainConfig, shards: ShardSet) -> DecoderConfig:
    """The size's architecture, fitted to the shards: patch width or vocabulary, positions, RoPE base.

    Positions cover the evaluated sequence, start + frames + end (training leaves the end token out for patch
    tokens): only GPT-2's learned table depends on it, and the backbone runs the full layout.
    """
    sizes = get_arch(cfg.arch).sizes
    if cfg.model not in sizes:
        raise ConfigError(f"unknown {cfg.arch} model size {cfg.model!r} (known: {', '.join(sizes)})")
    base = sizes[cfg.model]
    t, h, w = shards.grid
    changes: dict = {"max_seq_len": max(base.max_seq_len, t * h * w + 2, cfg.max_seq_len)}
    if shards.continuous:
        changes.update(patch_dim=shards.token_dim, vocab_size=CODE_OFFSET)
    else:
        changes.update(vocab_size=CODE_OFFSET + int(shards.tokenizer["vocab_size"]))
    if cfg.patch_target not in PATCH_TARGETS:
        raise ConfigError(f"--patch-target {cfg.patch_target!r}: not one of {', '.join(PATCH_TARGETS)}")
    if cfg.patch_target != "normalized" and not shards.continuous:
        raise ConfigError(
            f"--patch-target {cfg.patch_target}: applies to patch tokens, not to the codes of {cfg.shards}"
        )
    if cfg.rope_base > 0:
        if cfg.arch != "toto":
            raise ConfigError(f"--rope-base applies to --arch toto only, not {cfg.arch}")
        changes["rope_base"] = cfg.rope_base
    return dataclasses.replace(base, **changes)


class SequenceLoss(nn.Module):
    """The whole training forward in one module, so DDP/FSDP wrap embeddings, trunk and heads together."""

    def __init__(self, toto: Decoder, patch_target: str = "normalized"):
        super().__init__()
        self.toto = toto
        self.patch_target = patch_target

    def forward(self, tokens: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean next-token loss, and its mean per frame position `(T,)`, of one micro-batch."""
        toto, B, T = self.toto, tokens.shape[0], tokens.shape[1]
        start = toto.embed_tokens(starts[:, None])  # (B, 1, D)
        if tokens.dtype == torch.uint8:  # continuous patches (B, T, h, w, d)
            flat = tokens.reshape(B, -1, tokens.shape[-1])  # (B, N, d)
            h = torch.cat([start, toto.embed_patches(patch_inputs(flat))], dim=1)  # (B, 1 + N, D)
            pred = toto.predict_patches(toto(h)[:, :-1])  # position i predicts patch i
            target = regression_targets(flat, self.patch_target)
            per_token = F.mse_loss(pred.float(), target, reduction="none").mean(-1)  # (B, N)
            return per_token.mean(), per_token.detach().reshape(B, T, -1).mean(dim=(0, 2))
        codes = tokens.reshape(B, -1).long() + CODE_OFFSET  # (B, N)
        ids = torch.cat([starts[:, None], codes, torch.full_like(codes[:, :1], END)], dim=1)  # (B, 1 + N + 1)
        h = torch.cat([start, toto.embed_tokens(codes)], dim=1)  # (B, 1 + N, D)
        logits = toto.logits(toto(h))  # (B, 1 + N, V): position i predicts ids[i + 1]
        per_token = F.cross_entropy(logits.float().transpose(1, 2), ids[:, 1:], reduction="none")  # (B, N + 1)
        frames = per_token.detach()[:, :-1].reshape(B, T, -1).mean(dim=(0, 2))  # the end token is no frame
        return per_token.mean(), frames


def setup_distributed(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group when launched by torchrun."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def wrap_model(toto: Decoder, cfg: TrainConfig, world: int, device: torch.device) -> nn.Module:
    """`SequenceLoss(toto)`, replicated (DDP) or sharded block by block (FSDP2) across ranks."""
    model = SequenceLoss(toto, cfg.patch_target)
    if world == 1:
        return model
    if cfg.fsdp or cfg.model == "1b":
        from torch.distributed.fsdp import fully_shard

        for block in toto.layers:
            fully_shard(block)
        return fully_shard(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    # Mamba's A_log is a (d_inner, d_state) matrix but, as in Mamba-1, not decayed (decay would pull A to -1)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.ndim >= 2 and not n.endswith("A_log")]
    other = [p for n, p in named if p.ndim < 2 or n.endswith("A_log")]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), foreach=False)


# --- checkpoints -----------------------------------------------------------------------------------------------

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)
PREFIX = "toto."  # SequenceLoss holds the Toto as `.toto`


def latest_checkpoint(out: Path) -> Path | None:
    """The checkpoint `out/latest` names, or None for a fresh run."""
    pointer = out / "latest"
    if not pointer.is_file():
        return None
    ckpt = out / "checkpoints" / pointer.read_text().strip()
    if not (ckpt / "trainer.json").is_file():
        raise CheckpointError(f"{ckpt}: the latest checkpoint is incomplete or missing")
    return ckpt


def check_resume(ckpt: Path, cfg: TrainConfig, arch: DecoderConfig) -> dict:
    """The checkpoint's trainer state, after checking it was written by this same run configuration."""
    try:
        state = json.loads((ckpt / "trainer.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{ckpt / 'trainer.json'}: unreadable ({err})") from None
    old, new = {**DEFAULTS, **state["config"]}, dataclasses.asdict(cfg)  # a field added since: its default
    for key in sorted(set(old) | set(new)):
        if key not in RESUME_MAY_DIFFER and old.get(key) != new.get(key):
            raise CheckpointError(
                f"{ckpt}: cannot resume with a different config ({key}: {old.get(key)!r} -> {new.get(key)!r}); "
                "use the same settings or a new --out"
            )
    _, stored, _ = checkpoint.read_config(ckpt)
    if stored != arch:
        raise CheckpointError(f"{ckpt}: the checkpoint's architecture does not match the shards and model size")
    return state


def save_state(
    out: Path, step: int, model: nn.Module, opt: torch.optim.Optimizer, arch: DecoderConfig, extra: dict
) -> None:
    """Write checkpoints/step_N (weights, config, optimizer, trainer.json) then point `latest` at it."""
    weights = {k.removeprefix(PREFIX): v for k, v in get_model_state_dict(model, options=FULL).items()}
    optim = get_optimizer_state_dict(model, opt, options=FULL)
    if int(os.environ.get("RANK", "0")) == 0:
        final = out / "checkpoints" / f"step_{step:07d}"
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with torch.device("meta"):
            shell = arch_for_config(arch).model(arch)
        shell.load_state_dict(weights, assign=True)
        checkpoint.save(tmp, shell, extra={**extra, "step": step})
        torch.save(optim, tmp / "optimizer.pt")
        write_json(tmp / "trainer.json", {"step": step, "config": extra["train_config"], "loader": extra["loader"]})
        if final.exists():  # written by a run killed before it updated `latest`: newer than the resume point
            shutil.rmtree(final)
        tmp.rename(final)
        (out / "latest.tmp").write_text(final.name)
        (out / "latest.tmp").replace(out / "latest")
        old = sorted((out / "checkpoints").glob("step_???????"))[: -extra["keep"]]
        for path in old:
            shutil.rmtree(path)
    if dist.is_initialized():
        dist.barrier()


def load_state(ckpt: Path, model: nn.Module, opt: torch.optim.Optimizer) -> None:
    from safetensors.torch import load_file

    weights = {PREFIX + k: v for k, v in load_file(str(ckpt / "model.safetensors")).items()}
    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True))
    try:
        optim = torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: name it, keep the checkpoint untouched
        raise CheckpointError(f"{ckpt / 'optimizer.pt'}: unreadable optimizer state ({describe(err)})") from None
    set_optimizer_state_dict(model, opt, optim, options=StateDictOptions(full_state_dict=True))


def init_from(toto: Decoder, path: str, shards: ShardSet) -> None:
    """Fine-tuning start: weights from another checkpoint (same shapes; RoPE base and length may differ)."""
    _, _, extra = checkpoint.read_config(path, expect=arch_for_config(toto.config).name)
    theirs, ours = extra.get("tokenizer"), shards.tokenizer
    if theirs is not None and not same_tokenizer(theirs, ours):
        raise CheckpointError(f"{path}: trained with tokeniser {theirs}, but the shards use {ours}")
    checkpoint.load_state_into(toto, path)


# --- logs ------------------------------------------------------------------------------------------------------

METRICS = ("step", "loss", "lr", "grad_norm", "tokens", "flops", "tokens_per_s", "mfu", "seconds")


class RunLog:
    """metrics.csv (one row per logged step) and frame_loss.csv (loss per frame position, the paper's Fig. 10).

    On resume the rows after the checkpoint's step are dropped, so the files read as one uninterrupted run.
    """

    def __init__(self, out: Path, resume_step: int, frames: int, enabled: bool):
        self.enabled = enabled
        self.files = {"metrics": out / "metrics.csv", "frames": out / "frame_loss.csv"}
        self.headers = {"metrics": list(METRICS), "frames": ["step"] + [f"frame_{t}" for t in range(frames)]}
        if not enabled:
            return
        for name, path in self.files.items():
            rows = []
            if resume_step and path.exists():
                with open(path, newline="") as f:
                    rows = [r for r in csv.reader(f)][1:]
                rows = [r for r in rows if int(r[0]) <= resume_step]
            with open(path, "w", newline="") as f:
                csv.writer(f).writerows([self.headers[name], *rows])

    def write(self, metrics: dict, frame_loss: list[float]) -> None:
        if not self.enabled:
            return
        with open(self.files["metrics"], "a", newline="") as f:
            csv.writer(f).writerow([metrics[k] for k in METRICS])
        with open(self.files["frames"], "a", newline="") as f:
            csv.writer(f).writerow([metrics["step"], *frame_loss])


def read_losses(out: str | Path) -> list[float]:
    """The loss column of a run's metrics.csv (tests and golden files)."""
    with open(Path(out) / "metrics.csv", newline="") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def data_recipe(shards: ShardSet) -> dict:
    """The token layout and preprocessing a checkpoint was trained with; `backbones/toto.py` reads it."""
    mixture = shards.meta["mixture"]
    return {
        "tokenizer": shards.tokenizer["kind"],
        "patch_size": shards.tokenizer.get("patch_size", 8),
        "resolution": mixture["resolution"],
        "frames": shards.grid[0],
        "frame_stride": mixture["stride"],
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }


# --- the loop --------------------------------------------------------------------------------------------------


def train(cfg: TrainConfig) -> list[float]:
    """Run (or resume) pre-training to `cfg.steps`; returns the losses logged by this process."""
    rank, world, device = setup_distributed(cfg)
    shards = ShardSet(cfg.shards)
    arch = model_config(cfg, shards)
    plan = BatchPlan.make(cfg.batch_tokens, seq_len(shards), world, cfg.micro_batch)
    out = Path(cfg.out)
    ckpt = latest_checkpoint(out)
    state = check_resume(ckpt, cfg, arch) if ckpt else None  # refuse before anything is written
    toto = arch_for_config(arch).model(arch, seed=cfg.seed).to(device)
    if arch.patch_dim:  # a patch model never reads its token logits: freeze them (no optimizer state, no DDP sync)
        toto.output.requires_grad_(False)
    if cfg.init_from and ckpt is None:
        init_from(toto, cfg.init_from, shards)
    model = wrap_model(toto, cfg, world, device)
    opt = make_optimizer(model, cfg)
    start = 0
    if ckpt is not None:
        load_state(ckpt, model, opt)
        start = int(state["step"])
    out.mkdir(parents=True, exist_ok=True)
    order = DataOrder(len(shards), cfg.seed)
    run_log = RunLog(out, start, shards.grid[0], enabled=rank == 0)
    extra = checkpoint_extra(cfg, shards)
    flops_per_step = 3 * toto.flops_per_token(plan.seq_len) * plan.tokens  # forward + backward
    peak = world * peak_flops(torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", cfg.peak_tflops)
    if rank == 0:
        log.info(
            "%s %s: %.2fM params, %d x %d tokens/step, %d rank(s) x %d micro-batches of %d, steps %d..%d",
            cfg.arch, cfg.model, toto.num_params() / 1e6, plan.sequences, plan.seq_len, world, plan.accum,
            plan.micro_batch, start, cfg.steps,
        )  # fmt: skip
    losses, window, since, began = [], time.perf_counter(), start, time.perf_counter()
    for step in range(start, cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
        loss, frame_loss = train_step(model, shards, order, plan, step, rank, device)
        norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
        opt.step()
        opt.zero_grad(set_to_none=True)
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            loss, frame_loss = mean_over_ranks(loss, frame_loss, world, device)
            seconds = time.perf_counter() - window
            row = metrics_row(done, float(loss), float(norm), opt, plan, flops_per_step, seconds, done - since, peak)
            run_log.write(row, [float(x) for x in frame_loss])
            losses.append(row["loss"])
            if rank == 0:
                left = eta(time.perf_counter() - began, done - start, cfg.steps - done)
                log.info(
                    "step %d/%d: loss %.4f lr %.2e %s tok/s, eta %s",
                    done, cfg.steps, row["loss"], row["lr"], row["tokens_per_s"], left,
                )  # fmt: skip
            window, since = time.perf_counter(), done
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            save_state(out, done, model, opt, arch, {**extra, "loader": order.state(plan, done)})
            window, since = time.perf_counter(), done  # throughput excludes checkpoint writing
    if dist.is_initialized():
        dist.destroy_process_group()
    return losses


def checkpoint_extra(cfg: TrainConfig, shards: ShardSet) -> dict:
    """What every checkpoint of the run records besides the weights: config, tokeniser, data recipe."""
    return {
        "train_config": dataclasses.asdict(cfg),
        "tokenizer": {**shards.tokenizer_record, "code_offset": CODE_OFFSET},  # the backbone rebuilds it from this
        "shards": {"path": str(cfg.shards), "grid": list(shards.grid), "mixture": shards.meta["mixture"]},
        "data": data_recipe(shards),
        "keep": cfg.keep_checkpoints,
    }


def mean_over_ranks(loss: torch.Tensor, frame_loss: torch.Tensor, world: int, device: torch.device) -> tuple:
    """The global batch's loss and per-frame loss (each rank holds its share's mean)."""
    if world == 1:
        return loss, frame_loss
    both = torch.cat([loss.view(1), frame_loss]).to(device)
    dist.all_reduce(both)
    return both[0] / world, both[1:] / world


def metrics_row(step, loss, norm, opt, plan: BatchPlan, flops_per_step, seconds, steps, peak) -> dict:
    """One metrics.csv row; tokens/s and MFU over the `steps` steps of the last `seconds` (all ranks)."""
    tokens_per_s = plan.tokens * steps / seconds
    return {
        "step": step,
        "loss": loss,
        "lr": opt.param_groups[0]["lr"],
        "grad_norm": norm,
        "tokens": step * plan.tokens,
        "flops": step * flops_per_step,
        "tokens_per_s": round(tokens_per_s, 1),
        "mfu": round(steps * flops_per_step / seconds / peak, 4) if peak else "",
        "seconds": round(seconds, 3),
    }


def train_step(
    model: nn.Module, shards: ShardSet, order: DataOrder, plan: BatchPlan, step: int, rank: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward + backward over this rank's micro-batches; returns the mean loss and per-frame loss."""
    total, frames = torch.zeros(()), torch.zeros(())
    for micro in range(plan.accum):
        tokens, starts = make_batch(shards, order.micro_batch(plan, step, rank, micro), device)
        last = micro == plan.accum - 1
        sync = model.no_sync() if isinstance(model, nn.parallel.DistributedDataParallel) and not last else nullcontext()
        if hasattr(model, "set_requires_gradient_sync"):  # FSDP2: reduce-scatter only on the last micro-batch
            model.set_requires_gradient_sync(last)
        with sync, torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, per_frame = model(tokens, starts)
        with sync:
            (loss / plan.accum).backward()
        total = total + loss.detach().float().cpu() / plan.accum
        frames = frames + per_frame.float().cpu() / plan.accum
    return total, frames
