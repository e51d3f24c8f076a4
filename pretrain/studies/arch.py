"""Study `arch` (the paper's Table 6): LLaMA-style Toto vs GPT-2 vs Mamba on the same tokens and budget.

The three `--arch` families of the trainer at the same named size, trained on the same patch8 shard set with the
same steps, batch, learning rate and seed, then probed on the mini ImageNet by the harness (every layer, the
head the holdout selects). The paper's Table 6 reports ImageNet linear probing of ~280M-parameter models; its
ordering is LLaMA > GPT-2 > Mamba. Parameter counts differ between the families at one size name (they do in the
paper too: Mamba is "about 290M"), so the table lists them.
"""

from __future__ import annotations

from .report import CHANCE, Finding, Outcome, TableRow, interval, overlap, paper_rows, source
from .runner import Workspace, final_loss, full_train_command, run_log

ARCHS = (("toto", "llama", "LLaMA (toto)"), ("gpt2", "gpt2", "GPT-2"), ("mamba", "mamba", "Mamba"))


def run(ws: Workspace) -> Outcome:
    shards = ws.shards("patch8")
    ckpts = {a: ws.train(f"{a}-patch8", shards, **({"arch": a} if a != "toto" else {})) for a, _, _ in ARCHS}
    results = {a: ws.evaluate(f"{a}_{ws.size.model}", ckpts[a], "imagenet_probe") for a, _, _ in ARCHS}
    ours = {a: 100 * results[a].metrics["top1"] for a, _, _ in ARCHS}
    losses = {a: final_loss(ckpts[a]) for a, _, _ in ARCHS}
    paper = paper_rows("table6")
    rows = tuple(
        TableRow(
            label,
            paper=paper[key].values["top1"],
            ours=ours[a],
            interval=interval(results[a]),
            paper_source=source(paper[key]),
            note=f"selected layer {results[a].selected.get('layer')} of {results[a].num_layers}",
            extra=(
                ("params (M), paper", str(paper[key].params_m)),
                ("params (M), ours", f"{results[a].num_params / 1e6:.2f}"),
                ("final train loss (MSE)", f"{losses[a]:.4f}"),
            ),
        )
        for a, key, label in ARCHS
    )
    order = sorted(ours, key=ours.get, reverse=True)
    ties = overlap(interval(results["toto"]), interval(results["gpt2"])) or overlap(
        interval(results["gpt2"]), interval(results["mamba"])
    )
    findings = (
        Finding(
            "LLaMA > GPT-2 > Mamba (Table 6: 53.2 > 48.5 > 40.7)",
            " > ".join(f"{a} {ours[a]:.1f}" for a in order) + ties,
            order == ["toto", "gpt2", "mamba"],
        ),
        Finding(
            "LLaMA-style is the best of the three (Table 6)",
            f"best: {order[0]}; lowest training loss: {min(losses, key=losses.get)}",
            order[0] == "toto",
        ),
    )

    def draw(fig) -> None:
        ax = fig.add_subplot(1, 2, 1)
        x = range(len(ARCHS))
        ax.bar([i - 0.2 for i in x], [paper[k].values["top1"] for _, k, _ in ARCHS], 0.4, label="paper (ImageNet)")
        ax.bar([i + 0.2 for i in x], [ours[a] for a, _, _ in ARCHS], 0.4, label="ours (mini ImageNet)")
        ax.set_xticks(list(x), [label for _, _, label in ARCHS])
        ax.set(ylabel="top-1 (%)", title="probe top-1")
        ax.legend()
        bx = fig.add_subplot(1, 2, 2)
        for a, _, label in ARCHS:
            log = run_log(ckpts[a])
            bx.plot([r["step"] for r in log], [r["loss"] for r in log], label=label)
        bx.set(xlabel="step", ylabel="training loss (MSE, normalised patches)", title="ours: pre-training")
        bx.legend()

    return Outcome(
        title="LLaMA-style vs GPT-2 vs Mamba, same tokens and budget (Table 6)",
        paper_label="ImageNet-1k linear-probe top-1 (%)",
        ours_label="mini ImageNet top-1 (%), attentive probe",
        rows=rows,
        findings=findings,
        measured=(
            f"Three `{ws.size.model}`-size models (`--arch toto|gpt2|mamba`), each pre-trained {ws.size.steps} "
            f"steps of {ws.size.batch_sequences} x 513 patch8 tokens on the same shards (seed 0, lr {ws.size.lr}), "
            "then "
            "`imagenet_probe` on the mini suite with the harness's default attentive probe, every layer."
        ),
        draw=draw,
        caveats=(
            CHANCE,
            "The paper's Table 6 is a linear probe; ours uses the harness's attentive probe (Table 5 shows the probe "
            "type moves numbers by ~8 points at paper scale). The probe is the same for the three models.",
            "At this size the three models differ in parameter count (see the table); the paper's are matched.",
            "One seed per model: differences inside the 95% intervals are not evidence either way.",
        ),
    )


def full_commands() -> list[str]:
    note = "# gpt2 and mamba have sizes test and tiny only (pretrain/gpt2.py, mamba.py): a ~280M size must be added"
    lines = [note] + [full_train_command(a, "tiny") for a in ("toto", "gpt2", "mamba")]
    return lines + [
        f"toto-eval run --backbone {a}_tiny --checkpoint runs/{a}-tiny-dvae/checkpoints/step_STEPS "
        "--tasks imagenet_probe --data-root /data --set imagenet_probe.probe.probe=linear"
        for a in ("toto", "gpt2", "mamba")
    ]
