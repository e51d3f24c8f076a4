"""The paper's studies as runnable recipes: `toto-pretrain study NAME [--size test|mini|full]`.

Each study (one module here) pre-trains its variants with the project's trainer, scores them with the harness,
and writes `table.md`, `table.csv`, `figure.png` and `README.md` with the paper's numbers beside ours:

    tokenizers  Table 3      patch regression vs a trained VQ tokeniser, same model and token budget
    probe       Table 5      attentive vs linear probe on the same frozen features
    arch        Table 6      LLaMA-style Toto vs GPT-2 vs Mamba, same tokens and budget
    depth       Fig. 4, 8    probe accuracy per layer
    scaling     Fig. 9       three model sizes, power law through the compute-optimal loss frontier
    frames      Fig. 10      training loss per frame position

`test` runs in seconds (the unit test), `mini` in minutes on one CPU thread (docs/studies/), `full` prints the
paper-scale commands and runs nothing: that needs the paper's data and GPU nodes.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import time
from pathlib import Path

from ...common.errors import ConfigError
from .report import Provenance, write_outputs
from .runner import SIZES, Workspace

STUDIES = ("tokenizers", "probe", "arch", "depth", "scaling", "frames")
log = logging.getLogger(__name__)


def study_module(name: str):
    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r} (known: {', '.join(STUDIES)})")
    return importlib.import_module(f"{__name__}.{name}")


def run_study(name: str, size: str = "mini", out: str | Path | None = None, threads: int = 1) -> Path:
    """Run one study end to end at a size of `SIZES` and write its outputs; returns the output folder."""
    module = study_module(name)
    if size not in SIZES:
        raise ConfigError(f"unknown study size {size!r} (known: {', '.join([*SIZES, 'full'])})")
    import torch

    torch.set_num_threads(threads)
    out = Path(out or Path("docs/studies") / name)
    began = time.perf_counter()
    ws = Workspace(SIZES[size], threads=threads)
    outcome = module.run(ws)
    command = f"toto-pretrain study {name} --size {size}" + (f" --threads {threads}" if threads != 1 else "")
    size_record = {k: v for k, v in dataclasses.asdict(ws.size).items() if v is not None}
    prov = Provenance(command, size_record, time.perf_counter() - began, ws.cold_seconds, tuple(ws.events), threads)
    return write_outputs(name, outcome, prov, out)


def full_plan(name: str) -> list[str]:
    """The paper-scale commands of a study (the `full` size): printed, not run."""
    return study_module(name).full_commands()
