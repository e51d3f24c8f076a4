"""Study `scaling` (the paper's Figure 9): three model sizes, a power law through the compute-optimal loss frontier.

Three LLaMA-style widths (32, 64 and 128; 2, 4 and 4 blocks) train on the shared patch8 shards with the same
steps and batch, so the larger models spend more compute per step. Each run's (training FLOPs, loss) points come
from its metrics.csv; `pretrain.scaling.fit_power_law` takes the lower envelope over the runs and fits
L(C) = a * C^b to it in log-log space (what `toto-pretrain scaling-fit` does). The paper's fit is
L(C) = 7.32 * C^-0.0378 (Section 4.9). Only b is comparable: a depends on the compute unit and the loss.
"""

from __future__ import annotations

import itertools

import numpy as np

from .. import scaling
from .report import Finding, Outcome, TableRow, paper_rows_of, plain_log_ticks, source
from .runner import Workspace, final_loss, full_train_command

SIZES = ("s32", "test", "s128")


def sizes_for(ws: Workspace) -> tuple[str, ...]:
    return SIZES if ws.size.model == "test" else ("test", "tiny", "base")


def run(ws: Workspace) -> Outcome:
    shards = ws.shards("patch8")
    names = sizes_for(ws)
    ckpts = {m: ws.train("toto-patch8", shards, model=m) for m in names}
    # the trainer logs a noisy single-batch loss: skip the warm-up, where every run's loss is still the init's
    curves = {
        m: scaling.read_run(c.parent.parent)[max(1, ws.size.warmup_steps // ws.size.log_every) :]
        for m, c in ckpts.items()
    }
    fit = scaling.fit_power_law(list(curves.values()))
    logs = np.log(fit.frontier)
    r2 = 1 - np.sum((logs[:, 1] - np.log(fit.predict(fit.frontier[:, 0]))) ** 2) / np.sum(
        (logs[:, 1] - logs[:, 1].mean()) ** 2
    )
    params = {m: _params(c) for m, c in ckpts.items()}
    fits = paper_rows_of("figure9")
    paper, gpt3 = (next(r for r in fits if r.model == m) for m in ("Toto", "GPT-3"))
    rows = (
        TableRow("exponent b", paper=paper.values["b"], ours=fit.b, paper_source=source(paper), note="unit-free"),
        TableRow(
            "exponent b of GPT-3 (language), as the paper quotes it",
            paper=gpt3.values["b"],
            paper_source=source(gpt3),
            note="for scale: the paper's visual exponent is smaller in magnitude",
        ),
        TableRow(
            "coefficient a",
            paper=paper.values["a"],
            ours=fit.a,
            paper_source=source(paper),
            note="not comparable: paper MACs and dVAE cross-entropy, ours FLOPs and patch MSE",
        ),
        TableRow(
            "R^2 of the log-log fit on the frontier",
            ours=float(r2),
            paper_source="not reported",
            note=f"{len(fit.frontier)} frontier points",
        ),
        *(
            TableRow(
                f"final loss, size {m} ({params[m] / 1e6:.2f}M params)",
                ours=final_loss(ckpts[m]),
                paper_source="Fig. 9 (curves only)",
                extra=(("training FLOPs", f"{curves[m][-1, 0]:.3g}"),),
            )
            for m in names
        ),
    )
    findings = (
        Finding(
            "loss falls as a power law of compute on the frontier (Fig. 9: L = 7.32 C^-0.0378)",
            f"L = {fit.a:.3g} C^{fit.b:.4f}, R^2 = {r2:.3f} over {len(fit.frontier)} frontier points",
            fit.b < 0 and r2 >= 0.9,
        ),
        Finding(
            "larger models reach lower loss (Fig. 9's envelope is made of ever larger models)",
            ", ".join(f"{m}: {final_loss(ckpts[m]):.4f}" for m in names),
            all(final_loss(ckpts[a]) > final_loss(ckpts[b]) for a, b in itertools.pairwise(names)),
        ),
    )

    def draw(fig) -> None:
        ax = fig.add_subplot(1, 2, 1)
        scaling.draw(ax, {f"{m} ({params[m] / 1e6:.2f}M)": curves[m] for m in names}, fit)
        ax.set_title("ours: loss vs training compute")
        plain_log_ticks(ax)
        bx = fig.add_subplot(1, 2, 2)
        grid = np.logspace(np.log10(fit.frontier[0, 0]), np.log10(fit.frontier[-1, 0]), 20)
        rel = lambda a, b: (a * grid**b) / (a * grid[0] ** b)  # noqa: E731  (relative loss: only the slope matters)
        bx.plot(grid, rel(fit.a, fit.b), label=f"ours: b = {fit.b:.4f}")
        bx.plot(grid, rel(paper.values["a"], paper.values["b"]), "--", label=f"paper: b = {paper.values['b']}")
        bx.set(xscale="log", yscale="log", xlabel="training compute (FLOPs)", ylabel="loss / loss at smallest C",
               title="slopes compared")  # fmt: skip
        bx.legend(fontsize=8)
        plain_log_ticks(bx)

    return Outcome(
        title="compute scaling: power law through the loss frontier (Figure 9)",
        paper_label="Fig. 9 fit",
        ours_label="fit / loss",
        rows=rows,
        findings=findings,
        measured=(
            f"Three LLaMA-style sizes ({', '.join(f'{m}: {params[m] / 1e6:.2f}M params' for m in names)}), each "
            f"pre-trained {ws.size.steps} steps of {ws.size.batch_sequences} x 513 patch8 tokens on the same shards; "
            "the "
            "trainer's metrics.csv (training FLOPs = 3 x forward FLOPs per token x tokens, loss every "
            f"{ws.size.log_every} steps, warm-up dropped); `pretrain.scaling.fit_power_law` on the lower envelope."
        ),
        draw=draw,
        caveats=(
            "The loss is the training loss of one batch per logged step (no held-out set), so the frontier is noisy.",
            "Each run has a cosine schedule to its own end, so a point in mid-run is not what a run stopped there "
            "would reach; the paper's frontier has the same property unless every budget is its own run.",
            "Three sizes over about one decade of compute: a line through a few points fits well almost always; "
            "the exponent is the number to read, and it depends on the budget (a few hundred steps).",
            "s32 and s128 are study sizes of `toto-pretrain train --model` (pretrain/model.py).",
        ),
        decimals=4,
    )


def _params(ckpt) -> int:
    from ..checkpoint import load

    return sum(p.numel() for p in load(ckpt).parameters())


def full_commands() -> list[str]:
    lines = [full_train_command("toto", m) for m in ("base", "large", "1b")]
    return [*lines, "toto-pretrain scaling-fit runs/toto-{base,large,1b}-dvae --plot fig9.png"]
