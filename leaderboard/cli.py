"""`toto-eval leaderboard`: result files in, tables (Markdown, CSV, LaTeX, HTML) and figures out.

`harness/cli.py` adds this subcommand through `add_parser` / `run`. Writes under --out: `leaderboard.md`,
`csv/<table>.csv` (one file per table), `leaderboard.tex`, `leaderboard.html` and, with --figures,
`figures/*.png|svg`; the paths written are the only thing on stdout. Skipped files and resolved duplicates are
logged as warnings and also kept in the overall table's footer, so a table never hides what it left out.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..common.errors import ConfigError

log = logging.getLogger(__name__)
FORMATS = ("md", "csv", "tex", "html")
DEFAULT_RESULTS = Path("results")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except for required options and options without one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.required or isinstance(action.default, bool) or action.default in (None, []):
            return action.help or ""
        return super()._get_help_string(action)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="tables and figures from stored results",
        description="Build leaderboard tables (Markdown, CSV, LaTeX, HTML) and figures from result files only.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument(
        "--results-dir",
        type=Path,
        action="extend",
        nargs="+",
        metavar="DIR",
        help=f"results directories (<backbone>/<checkpoint>/<task>.json); repeatable (default: {DEFAULT_RESULTS})",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument("--formats", default=",".join(FORMATS), help="comma-separated subset of the output formats")
    p.add_argument(
        "--include-flagged", action="store_true", help="also show limited, random_init and mini runs (hidden if not)"
    )
    p.add_argument(
        "--pool-seeds",
        action="store_true",
        help="results of one backbone, checkpoint and task under several --seed values (one results directory per "
        "seed) become one row: the mean, with intervals over seeds and val samples",
    )
    p.add_argument("--no-reported", action="store_true", help="leave out the paper's reported rows and ablations")
    p.add_argument("--figures", action="store_true", help="also draw the figures (PNG and SVG) and embed them in HTML")
    p.add_argument(
        "--pretrain-runs",
        type=Path,
        nargs="*",
        default=[],
        metavar="RUN",
        help="pre-training runs (folders with metrics.csv, or CSV files): their power-law fit goes beside the "
        "paper's Figure 9 fit, and with --figures the scaling figure is drawn",
    )
    p.add_argument("--title", default="toto-eval leaderboard", help="page and document title")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .collect import collect
    from .tables import build_tables

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ConfigError(f"--formats: unknown {', '.join(unknown)} (choose from {', '.join(FORMATS)})")
    coll = collect(args.results_dir or [DEFAULT_RESULTS], pool_seeds=args.pool_seeds)
    for line in coll.skipped:
        log.warning("skipped %s", line)
    for line in coll.notes:
        log.warning("%s", line)
    if not coll.entries:
        log.warning("no usable result files; the tables hold reported rows only")
    fits = _fits(args.pretrain_runs)
    tables = build_tables(coll, include_flagged=args.include_flagged, reported=not args.no_reported, fits=fits)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    shown = [e for e in coll.entries if args.include_flagged or not e.flags]
    drawn = _figures(shown, args.pretrain_runs, out / "figures") if args.figures else []
    if args.figures and not drawn:
        hidden = len(coll.entries) - len(shown)
        log.warning("--figures: no shown result has a per-layer or robot curve (%d flagged result(s) hidden)", hidden)
    written = _write(tables, formats, out, args.title, [p for p in drawn if p.suffix == ".png"])
    for path in written + drawn:
        print(path)  # the command's output: the files it wrote
    log.info("%d table(s) from %d result file(s) written to %s", len(tables), len(coll.entries), out)
    return 0


def _fits(runs: list[Path]) -> list[tuple[str, float, float]]:
    """The power-law fit of the given pre-training runs, as one (name, a, b); DataError on bad runs."""
    if not runs:
        return []
    from ..pretrain.scaling import fit_power_law, read_run

    fit = fit_power_law([read_run(p) for p in runs])
    return [(f"toto-pretrain fit ({len(runs)} run{'s' if len(runs) > 1 else ''})", fit.a, fit.b)]


def _figures(entries, pretrain_runs: list[Path], folder: Path) -> list[Path]:
    from . import figures

    paths = figures.probe_depth(entries, folder) + figures.robot_demos(entries, folder)
    if pretrain_runs:
        paths += figures.scaling(pretrain_runs, folder)
    return paths


def _write(tables, formats: list[str], out: Path, title: str, images: list[Path]) -> list[Path]:
    from . import render

    written = []
    if "md" in formats:
        written.append(out / "leaderboard.md")
        written[-1].write_text(f"# {title}\n\n" + render.markdown(tables))
    if "csv" in formats:
        (out / "csv").mkdir(exist_ok=True)
        for table in tables:
            written.append(out / "csv" / f"{table.name}.csv")
            render.write_csv(table, written[-1])
    if "tex" in formats:
        written.append(out / "leaderboard.tex")
        written[-1].write_text(render.latex(tables))
    if "html" in formats:
        written.append(out / "leaderboard.html")
        written[-1].write_text(render.html_page(tables, title, images))
    return written
