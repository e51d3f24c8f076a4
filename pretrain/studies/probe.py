"""Study `probe` (the paper's Table 5): the attentive probe against average pooling + linear, same frozen features.

One LLaMA-style model on patch tokens (the study cache's shared run), probed on the mini ImageNet twice: with the
attentive probe (a learned query cross-attending to every token) and with `probe=linear` (tokens average-pooled,
then a linear classifier). Every layer and learning rate of the harness's grid is trained in both cases; the
reported number is the head the holdout selects, the harness's own rule. The paper's claim (Section 3.5): in a
causal model later tokens see more context, so uniform pooling under-weights them and attention pooling wins.
"""

from __future__ import annotations

from .report import CHANCE, Finding, Outcome, TableRow, integer_ticks, interval, overlap, paper_rows, source
from .runner import Workspace, best_per_layer, full_train_command

PROBES = ("attentive", "linear")


def run(ws: Workspace) -> Outcome:
    ckpt = ws.train("toto-patch8", ws.shards("patch8"))
    results = {p: ws.evaluate("toto_test", ckpt, "imagenet_probe", {"probe": p}) for p in PROBES}
    # the same architecture untrained, attentive probe: the floor that says whether pre-training helped at all
    floor = ws.evaluate("toto_test", ckpt, "imagenet_probe", {"probe": "attentive"}, random_init=True)
    paper = paper_rows("table5")
    measured = [
        TableRow(
            f"{p} ({'attention pooling' if p == 'attentive' else 'average pooling + linear'})",
            paper=paper[p].values["top1"],
            ours=100 * results[p].metrics["top1"],
            interval=interval(results[p]),
            paper_source=source(paper[p]),
            note=f"selected layer {results[p].selected.get('layer')} of {results[p].num_layers}",
        )
        for p in PROBES
    ]
    untrained = TableRow(
        "attentive, untrained twin (random init)",
        ours=100 * floor.metrics["top1"],
        interval=interval(floor),
        paper_source="not reported",
        note=f"selected layer {floor.selected.get('layer')}: the floor pre-training should beat",
    )
    rows = (*measured, untrained)
    ours = {p: 100 * results[p].metrics["top1"] for p in PROBES}
    gap = ours["attentive"] - ours["linear"]
    finding = Finding(
        "attentive > linear (Table 5: 61.1 vs 53.2, +7.9 points)",
        f"attentive {ours['attentive']:.1f} vs linear {ours['linear']:.1f} ({gap:+.1f} points)"
        + overlap(interval(results["attentive"]), interval(results["linear"])),
        gap > 0,
    )
    helped = Finding(
        "pre-training beats the untrained network (implicit in every table of the paper)",
        f"trained {ours['attentive']:.1f} vs random init {100 * floor.metrics['top1']:.1f} (attentive)"
        + overlap(interval(results["attentive"]), interval(floor)),
        ours["attentive"] > 100 * floor.metrics["top1"],
    )
    curves = {p: best_per_layer(results[p]) for p in PROBES}

    def draw(fig) -> None:
        ax = fig.add_subplot(1, 2, 1)
        for p in PROBES:
            ax.plot(list(curves[p]), [100 * v for v in curves[p].values()], marker="o", label=p)
        ax.set(xlabel="layer", ylabel="mini ImageNet top-1 (%)", title="ours, per layer")
        ax.legend()
        integer_ticks(ax)
        bx = fig.add_subplot(1, 2, 2)
        x = range(len(PROBES))
        bx.bar([i - 0.2 for i in x], [paper[p].values["top1"] for p in PROBES], 0.4, label="paper (ImageNet-1k)")
        bx.bar([i + 0.2 for i in x], [ours[p] for p in PROBES], 0.4, label="ours (mini ImageNet)")
        bx.set_xticks(list(x), PROBES)
        bx.set(ylabel="top-1 (%)", title="selected head")
        bx.legend()

    return Outcome(
        title="attentive vs linear probe on the same frozen features (Table 5)",
        paper_label="ImageNet-1k top-1 (%), dVAE 16x16 Toto",
        ours_label="mini ImageNet top-1 (%)",
        rows=rows,
        findings=(finding, helped),
        measured=(
            f"One `{ws.size.model}`-size LLaMA-style Toto pre-trained on patch8 tokens ({ws.size.steps} steps), "
            "frozen; `imagenet_probe` on the mini suite (scikit-learn digits in photos, 10 classes) with "
            "`probe.probe=attentive` and `probe.probe=linear`, every layer x learning rate, the head selected on a "
            "10% holdout of train; the same with the untrained twin (`--random-init`) as the floor."
        ),
        draw=draw,
        caveats=(
            CHANCE,
            "The paper's model is a dVAE-token Toto at ImageNet scale; ours is a patch-token model of a few hundred "
            "thousand parameters on digits in photos, so only the direction is comparable, not the numbers.",
            "The linear probe pools every token uniformly; the attentive probe has more parameters, which also "
            "helps it on a small training set.",
        ),
    )


def full_commands() -> list[str]:
    return [
        full_train_command("toto", "large"),
        "toto-eval run --backbone toto_large --checkpoint runs/toto-large-dvae/checkpoints/step_STEPS "
        "--tasks imagenet_probe --data-root /data --set imagenet_probe.probe.probe=attentive",
        "toto-eval run --backbone toto_large --checkpoint runs/toto-large-dvae/checkpoints/step_STEPS "
        "--tasks imagenet_probe --data-root /data --set imagenet_probe.probe.probe=linear",
    ]
