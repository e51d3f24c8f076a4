"""Study `frames` (the paper's Figure 10, Appendix A.1): training loss per frame position; is the first frame's highest?

The trainer writes the mean next-token loss of each frame position of every logged step (frame_loss.csv). This
study reads that of the shared LLaMA-style patch8 run and averages the last fifth of training. The paper sees
the first frame, which has no earlier frame to copy from, keep the highest loss while later frames are cheaper:
video is redundant in time, which it reads as next-token prediction being partly too easy on video.
"""

from __future__ import annotations

import numpy as np

from .report import Finding, Outcome, TableRow, integer_ticks
from .runner import Workspace, full_train_command, run_log


def run(ws: Workspace) -> Outcome:
    ckpt = ws.train("toto-patch8", ws.shards("patch8"))
    log = run_log(ckpt, "frame_loss.csv")
    frames = sorted((k for k in log[0] if k.startswith("frame_")), key=lambda k: int(k.split("_")[1]))
    table = np.array([[row[k] for k in frames] for row in log])  # (logged steps, frames)
    tail = table[-max(1, len(table) // 5) :]
    mean, spread = tail.mean(0), tail.std(0)
    rows = tuple(
        TableRow(
            f"frame {i}",
            ours=float(mean[i]),
            paper_source="Fig. 10 (curves only)",
            extra=(("std over the averaged steps", f"{spread[i]:.4f}"),),
        )
        for i in range(len(frames))
    )
    later = float(mean[1:].mean())
    wins = float((tail[:, 0] > tail[:, 1:].max(1)).mean())
    finding = Finding(
        "the first frame's loss is the highest; later frames are lower (Fig. 10)",
        f"frame 0 {mean[0]:.4f} vs frames 1-{len(frames) - 1} mean {later:.4f} (highest frame: {int(mean.argmax())}; "
        f"frame 0 highest at {100 * wins:.0f}% of the averaged steps)",
        int(mean.argmax()) == 0,
    )
    steps = [int(row["step"]) for row in log]

    def draw(fig) -> None:
        ax = fig.add_subplot(1, 2, 1)
        ax.bar(range(len(frames)), mean, yerr=spread, color=["tab:red"] + ["tab:blue"] * (len(frames) - 1))
        ax.set(xlabel="frame position", ylabel="loss (MSE)", title=f"ours: mean of the last {len(tail)} logs")
        ax.set_ylim(0.95 * (mean - spread).min(), 1.02 * (mean + spread).max())
        integer_ticks(ax)
        bx = fig.add_subplot(1, 2, 2)
        for i in range(len(frames)):
            bx.plot(steps, table[:, i], lw=2 if i == 0 else 0.8, label=f"frame {i}")
        bx.set(xlabel="step", ylabel="loss (MSE)", title="ours: loss per frame during training")
        bx.legend(fontsize=6, ncol=2)

    return Outcome(
        title="training loss per frame position (Figure 10)",
        paper_label="loss per frame",
        ours_label="loss per frame (MSE, normalised patches)",
        rows=rows,
        findings=(finding,),
        measured=(
            f"The shared `{ws.size.model}`-size LLaMA-style patch8 run ({ws.size.steps} steps): the trainer's "
            f"frame_loss.csv, mean (and std) over the last {len(tail)} logged steps (every {ws.size.log_every})."
        ),
        draw=draw,
        caveats=(
            "The paper plots curves for a dVAE model (cross-entropy); the summary gives no numbers, so every paper "
            "cell is empty. Ours is the MSE of normalised patches.",
            "Our corpus mixes videos with image sequences (8 unrelated images, 40% of the mixture); for those every "
            "position is a first frame, which flattens the per-position differences.",
            "Each logged value is one batch of four sequences: the std column shows how noisy a position's loss is.",
        ),
        decimals=4,
    )


def full_commands() -> list[str]:
    return [full_train_command("toto", "large"), "# then read runs/toto-large-dvae/frame_loss.csv"]
