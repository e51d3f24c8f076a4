"""The configs of the `toto-pretrain` commands that take one flag per field: training and the VQ tokeniser.

They live apart from the code that uses them (`train.py`, `tokenizers.py`) for one reason: this module imports no
torch, so `toto-pretrain ... --help` builds its parser, and answers, in a fraction of a second. Each field's help
text is its `metadata["help"]`; the CLI shows it next to the flag, with the default.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from typing import Any


def option(default: Any = MISSING, help: str = "") -> Any:
    """A dataclass field with its command-line help."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    """Everything a pre-training run depends on; stored in every checkpoint and compared on resume."""

    shards: str = option(help="token shard directory (written by `toto-pretrain shards`)")
    out: str = option(help="run directory: checkpoints/, latest, metrics.csv, frame_loss.csv")
    model: str = option("test", "size of the architecture: test, tiny (all); base, large, 1b (toto)")
    arch: str = option("toto", "toto, gpt2 or mamba: the paper's Table 6 architectures")
    steps: int = option(1000, "optimizer steps of the whole run (a resumed run continues to this step)")
    batch_tokens: int = option(8192, "global batch in tokens, rounded down to whole sequences")
    micro_batch: int = option(4, "sequences per forward pass on one rank (gradient accumulation makes up the rest)")
    lr: float = option(3e-4, "peak learning rate (AdamW)")
    warmup_steps: int = option(2000, "linear warm-up steps before the cosine decay")
    min_lr_ratio: float = option(0.1, "the cosine decays to lr * min_lr_ratio at the last step")
    weight_decay: float = option(0.1, "AdamW weight decay, on matrices only (norm gains and biases are not decayed)")
    beta1: float = option(0.9, "AdamW beta1")
    beta2: float = option(0.95, "AdamW beta2")
    clip_grad: float = option(1.0, "gradient-norm clipping threshold")
    seed: int = option(0, "seed of the model init and the data order")
    patch_target: str = option(
        "normalized",
        "what patch tokens regress: 'normalized' (each patch by its own mean and variance, the paper's) or 'raw' "
        "(the pixels the model reads, so copying a patch that did not change is linear)",
    )
    rope_base: float = option(0.0, "> 0: replace the size's RoPE base (resolution fine-tuning: 50000); toto only")
    max_seq_len: int = option(
        0,
        "> 0: at least this many positions; GPT-2's learned table is a hard limit on evaluated clips "
        "(0: the size's, or the shards' start + frames + end tokens if longer)",
    )
    init_from: str = option("", "start from this checkpoint's weights with a fresh optimizer (fine-tuning)")
    fsdp: bool = option(False, "shard parameters (FSDP2) instead of replicating them (DDP); size 1b always shards")
    log_every: int = option(10, "log (and write metrics.csv) every this many steps")
    ckpt_every: int = option(200, "write a checkpoint every this many steps (and at the last)")
    keep_checkpoints: int = option(2, "how many of the newest checkpoints to keep")
    threads: int = option(0, "torch CPU threads per process (0: torch's default)")
    peak_tflops: float = option(0.0, "per-device peak for MFU (0: look up the GPU's bf16 peak; CPU: not reported)")


@dataclass(frozen=True)
class VQConfig:
    """The small VQ-VAE tokeniser `toto-pretrain tokenizer` trains (8x downsampling, like the dVAE)."""

    codes: int = option(512, "vocabulary size (number of codes)")
    code_dim: int = option(32, "width of a code vector")
    hidden: int = option(64, "channels of the encoder and decoder convolutions")
    steps: int = option(2000, "training steps")
    batch_size: int = option(32, "frames per step")
    lr: float = option(2e-3, "Adam learning rate")
    beta: float = option(0.25, "commitment loss weight")
    restart_every: int = option(100, "steps between restarts of codes no frame used")
    seed: int = option(0, "seed of the init and of the frame sampling")
