"""`toto-eval leaderboard`: result files in, tables (Markdown, CSV, LaTeX, HTML) and figures out.

The lead wires `add_parser` / `run` into `harness/cli.py`. Writes under --out: `leaderboard.md`,
`csv/<table>.csv` (one file per table), `leaderboard.tex`, `leaderboard.html` and, with --figures,
`figures/*.png|svg`. Skipped files and resolved duplicates are printed to stderr and also kept in the
overall table's footer, so a table never hides what it left out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..common.errors import ConfigError, TotoEvalError
from . import figures, render
from .collect import collect
from .tables import build_tables

FORMATS = ("md", "csv", "tex", "html")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="tables and figures from stored results")
    p.add_argument("--results-dir", type=Path, action="append", required=True, help="repeatable")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated subset of {','.join(FORMATS)}")
    p.add_argument("--include-flagged", action="store_true", help="show limited, random_init and mini runs")
    p.add_argument("--no-reported", action="store_true", help="leave out the paper's reported rows")
    p.add_argument("--figures", action="store_true", help="also draw the figures (PNG and SVG)")
    p.add_argument("--pretrain-runs", type=Path, nargs="*", default=[], help="runs for the scaling figure")
    p.add_argument("--title", default="toto-eval leaderboard")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ConfigError(f"--formats: unknown {', '.join(unknown)} (choose from {', '.join(FORMATS)})")
    coll = collect(args.results_dir)
    for line in coll.skipped:
        print(f"toto-eval leaderboard: skipped {line}", file=sys.stderr)
    for line in coll.notes:
        print(f"toto-eval leaderboard: {line}", file=sys.stderr)
    if not coll.entries:
        print("toto-eval leaderboard: no usable result files; the tables hold reported rows only", file=sys.stderr)
    tables = build_tables(coll, include_flagged=args.include_flagged, reported=not args.no_reported)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    shown = [e for e in coll.entries if args.include_flagged or not e.flags]
    drawn = _figures(shown, args.pretrain_runs, out / "figures") if args.figures else []
    written = _write(tables, formats, out, args.title, [p for p in drawn if p.suffix == ".png"])
    for path in written + drawn:
        print(path)
    return 0


def _figures(entries, pretrain_runs: list[Path], folder: Path) -> list[Path]:
    paths = figures.probe_depth(entries, folder) + figures.robot_demos(entries, folder)
    if pretrain_runs:
        paths += figures.scaling(pretrain_runs, folder)
    return paths


def _write(tables, formats: list[str], out: Path, title: str, images: list[Path]) -> list[Path]:
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


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m toto_eval.leaderboard.cli`) until the lead wires the subcommand."""
    parser = argparse.ArgumentParser(prog="toto-eval")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["leaderboard", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except TotoEvalError as err:
        print(f"toto-eval: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
