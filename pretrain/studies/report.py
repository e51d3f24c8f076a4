"""What a study hands back, and how it is written: `table.md`, `table.csv`, `figure.png` and `README.md`.

Every table row puts the paper's number beside ours. The paper's numbers come from
`leaderboard/reference_ablations.json` (the same rows the leaderboard prints) so a correction there reaches the
studies too; where the paper gives no number (a curve only, or a setting it did not run) the cell says so instead
of being left blank. Findings are stated as a claim, the paper's direction, ours, and a verdict computed from the
measured numbers, never typed in by hand.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SILENT = "not reported"
CHANCE = (
    "The mini ImageNet has 10 classes (chance: 10% top-1) and is hard on purpose (mini suite v2: digits hidden in "
    "photos, raw pixels cannot read them); a model this small and this briefly trained stays within a few points of "
    "chance, so a direction read from these numbers is weak evidence."
)


@dataclass(frozen=True)
class TableRow:
    setting: str
    paper: float | None = None  # None: the paper reports no number for this setting
    ours: float | None = None  # None: not measured here
    interval: tuple[float, float] | None = None  # 95% interval of ours
    paper_source: str = ""  # "Table 3 (summary)": where the paper's number is printed
    note: str = ""
    extra: tuple[tuple[str, str], ...] = ()  # study-specific columns, (name, value)


@dataclass(frozen=True)
class Finding:
    claim: str  # the paper's finding, in words, with its table or figure
    ours: str  # what we measured, in words
    reproduced: bool | None  # None: cannot be decided at this size


@dataclass(frozen=True)
class Outcome:
    title: str
    paper_label: str  # what the paper column holds (metric, dataset, model)
    ours_label: str
    rows: tuple[TableRow, ...]
    findings: tuple[Finding, ...]
    measured: str  # what was trained and measured, for the README
    draw: Callable  # draw(fig) -> None: the study's figure
    caveats: tuple[str, ...] = ()
    decimals: int = 1


@dataclass(frozen=True)
class Provenance:
    command: str
    size: dict
    wall_seconds: float
    cold_seconds: float  # what the pre-training steps it used cost when built (cached ones included)
    events: tuple[str, ...] = field(default_factory=tuple)
    threads: int = 1  # torch CPU threads of this invocation


def _fmt(value: float | None, decimals: int, missing: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return f"{value:.{decimals}f}"


def _extra_names(rows: tuple[TableRow, ...]) -> list[str]:
    names: list[str] = []
    for row in rows:
        names += [k for k, _ in row.extra if k not in names]
    return names


def markdown_table(outcome: Outcome) -> str:
    d, extra = outcome.decimals, _extra_names(outcome.rows)
    head = ["setting", f"paper: {outcome.paper_label}", "paper source", f"ours: {outcome.ours_label}", "ours 95% CI"]
    lines = ["| " + " | ".join(head + extra + ["note"]) + " |", "|" + "---|" * (len(head) + len(extra) + 1)]
    for r in outcome.rows:
        ci = f"[{r.interval[0]:.{d}f}, {r.interval[1]:.{d}f}]" if r.interval else ""
        cells = [r.setting, _fmt(r.paper, d, SILENT), r.paper_source, _fmt(r.ours, d, "not run"), ci]
        cells += [dict(r.extra).get(k, "") for k in extra] + [r.note]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(outcome: Outcome, path: Path) -> None:
    extra = _extra_names(outcome.rows)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["setting", "paper", "paper_source", "ours", "ours_low", "ours_high", *extra, "note"])
        for r in outcome.rows:
            low, high = r.interval or ("", "")
            paper = "" if r.paper is None else r.paper
            ours = "" if r.ours is None else r.ours
            w.writerow([r.setting, paper, r.paper_source or SILENT, ours, low, high,
                        *[dict(r.extra).get(k, "") for k in extra], r.note])  # fmt: skip


def write_figure(outcome: Outcome, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(10, 4))
    outcome.draw(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def verdict(value: bool | None) -> str:
    return {True: "**yes**", False: "**no**", None: "undecided"}[value]


def readme(name: str, outcome: Outcome, prov: Provenance) -> str:
    minutes = prov.wall_seconds / 60
    size = ", ".join(f"{k}={v}" for k, v in prov.size.items())
    findings = "\n".join(f"| {f.claim} | {f.ours} | {verdict(f.reproduced)} |" for f in outcome.findings)
    caveats = "".join(f"- {c}\n" for c in outcome.caveats)
    events = "".join(f"- {e}\n" for e in prov.events)
    threads = "one thread" if prov.threads == 1 else f"{prov.threads} threads"
    return f"""# Study `{name}`: {outcome.title}

Command: `{prov.command}`

Size: {size}.

Wall time of this invocation: {prov.wall_seconds:.0f} s ({minutes:.1f} min) on a shared 2-core CPU, {threads}. Steps
reused from the study cache (`$TOTO_EVAL_CACHE_DIR/studies`, shared between studies) cost nothing here; building every
pre-training step this study uses (corpus, tokeniser, shards, runs) cost {prov.cold_seconds:.0f} s
({prov.cold_seconds / 60:.1f} min) when it was built, as recorded in the cache. Evaluation times are in "Steps" (an
evaluation the harness has cached reads its features and probes back in seconds).

## What was measured

{outcome.measured}

## Table (paper beside ours; `table.csv` has the same rows)

{markdown_table(outcome)}
## Findings: did the paper's direction reproduce at this size?

| the paper | ours | reproduced in direction |
|---|---|---|
{findings}

## Caveats

{caveats}
## Steps

{events}
Figure: `figure.png`.
"""


def write_outputs(name: str, outcome: Outcome, prov: Provenance, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(f"# {outcome.title}\n\n" + markdown_table(outcome))
    write_csv(outcome, out / "table.csv")
    write_figure(outcome, out / "figure.png")
    (out / "README.md").write_text(readme(name, outcome, prov))
    return out


def paper_rows(study: str) -> dict[str, object]:
    """The paper's rows of one study of `reference_ablations.json` (e.g. "table5"), by setting key."""
    from ...leaderboard.reference import ablation_rows

    return {r.key: r for r in ablation_rows() if r.study == study}


def paper_rows_of(study: str) -> list:
    """All the paper's rows of one study, in file order (for studies whose rows share a key, like figure9)."""
    from ...leaderboard.reference import ablation_rows

    return [r for r in ablation_rows() if r.study == study]


def source(row) -> str:
    """Where a reference row's number is printed, and whether the summary states it."""
    return f"{row.table} ({row.checked})"


def interval(result, key: str = "top1", scale: float = 100.0) -> tuple[float, float] | None:
    ci = result.intervals.get(key)
    return (ci["low"] * scale, ci["high"] * scale) if ci else None


def overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> str:
    """' (95% intervals overlap)' when two intervals do, so a small gap is not read as a result."""
    return " (95% intervals overlap)" if a and b and a[0] <= b[1] and b[0] <= a[1] else ""


def integer_ticks(ax) -> None:
    """Layer and frame axes: whole numbers only."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plain_log_ticks(ax) -> None:
    """Log axes spanning less than a decade get crowded minor labels: none on x (compute spans decades), plain
    numbers on y (a loss spans less than one decade)."""
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%.2f"))
