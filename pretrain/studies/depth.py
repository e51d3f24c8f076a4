"""Study `depth` (the paper's Figures 4 and 8): probe accuracy per layer; is a middle layer best?

A deeper narrow LLaMA-style model (`deep8`: the test width, 8 blocks, so the curve has more than four points) is
pre-trained on the shared patch8 shards and probed at every layer on the mini ImageNet and the mini Kinetics.
Each layer's number is its test top-1 at the learning rate the holdout picked for that layer (the per-layer
table every result carries). The paper finds ImageNet probing peaks near 50% depth for every size (Fig. 4) and
the same for Kinetics and DAVIS (Fig. 8): the last layers specialise in predicting the next token.
"""

from __future__ import annotations

from .report import CHANCE, Finding, Outcome, TableRow
from .runner import Workspace, best_per_layer, full_train_command

TASKS = (("imagenet_probe", "mini ImageNet"), ("k400_probe", "mini Kinetics"))
FIGURE = {"imagenet_probe": "4", "k400_probe": "8"}
PAPER_SOURCE = "Fig. 4 / 8 (curve only)"


def model_size(ws: Workspace) -> str:
    return "deep8" if ws.size.model == "test" else ws.size.model


def run(ws: Workspace) -> Outcome:
    ckpt = ws.train("toto-patch8-deep", ws.shards("patch8"), model=model_size(ws))
    curves = {t: best_per_layer(ws.evaluate("toto_test", ckpt, t)) for t, _ in TASKS}
    layers = list(curves["imagenet_probe"])
    n = len(layers)
    rows = [
        TableRow(
            f"layer {i} ({100 * (i + 1) / n:.0f}% depth)",
            paper=None,
            ours=100 * curves["imagenet_probe"][i],
            paper_source=PAPER_SOURCE,
            extra=(("ours: mini Kinetics top-1 (%)", f"{100 * curves['k400_probe'][i]:.1f}"),),
        )
        for i in layers
    ]
    best = {t: max(c, key=c.get) for t, c in curves.items()}
    rows.append(
        TableRow(
            "best layer, relative depth (%)",
            paper=50.0,
            ours=100 * (best["imagenet_probe"] + 1) / n,
            paper_source="Fig. 4 (summary: ~50% depth)",
            note="ImageNet",
            extra=(("ours: mini Kinetics top-1 (%)", f"{100 * (best['k400_probe'] + 1) / n:.0f} (best layer depth)"),),
        )
    )
    findings = tuple(
        Finding(
            # The direction tested is "interior beats the ends"; the depth is shown beside it, not judged.
            f"an interior layer (neither the first nor the last) is best for {label.split()[-1]} "
            f"(Fig. {FIGURE[t]}: the peak is near 50% depth)",
            f"best layer {best[t]} of {n} ({100 * (best[t] + 1) / n:.0f}% depth), top-1 {100 * curves[t][best[t]]:.1f} "
            f"vs last layer {100 * curves[t][layers[-1]]:.1f}",
            0 < best[t] < layers[-1],
        )
        for t, label in TASKS
    )

    def draw(fig) -> None:
        ax = fig.add_subplot(1, 1, 1)
        for t, label in TASKS:
            depth = [100 * (i + 1) / n for i in curves[t]]
            ax.plot(depth, [100 * v for v in curves[t].values()], marker="o", label=f"ours: {label}")
        ax.axvline(50, color="k", ls="--", lw=1, label="paper: peak near 50% depth (Fig. 4, 8)")
        ax.set(xlabel="relative depth of the probed layer (%)", ylabel="top-1 (%)", title="probe accuracy per layer")
        ax.legend(fontsize=8)

    return Outcome(
        title="probe accuracy per layer (Figures 4 and 8)",
        paper_label="peak depth",
        ours_label="mini ImageNet top-1 (%)",
        rows=tuple(rows),
        findings=findings,
        measured=(
            f"One LLaMA-style Toto of {n} blocks (`{model_size(ws)}`: width 64) pre-trained {ws.size.steps} steps on "
            "patch8 tokens; `imagenet_probe` and `k400_probe` on the mini suite, attentive probe at every layer; per "
            "layer, the test top-1 of the learning rate that layer's holdout picked. Layer i is the output of block "
            "i (relative depth (i + 1) / n)."
        ),
        draw=draw,
        caveats=(
            CHANCE,
            "The paper gives curves, not numbers, so the per-layer rows have no paper value; the summary states the "
            "peak (~50% depth), which is the one number compared.",
            "Neighbouring layers often differ by less than the 95% interval of a few hundred test clips; the best "
            "layer is the argmax of noisy numbers.",
            "`deep8` is a study size of `toto-pretrain train --model` (pretrain/model.py); the checkpoint records "
            "its config, so `toto_test` loads it with a size warning.",
        ),
    )


def full_commands() -> list[str]:
    return [
        full_train_command("toto", "large"),
        "toto-eval run --backbone toto_large --checkpoint runs/toto-large-dvae/checkpoints/step_STEPS "
        "--tasks imagenet_probe,k400_probe,davis --data-root /data --layers all",
    ]
