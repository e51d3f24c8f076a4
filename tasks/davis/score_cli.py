"""`toto-eval davis-score`: the official semi-supervised DAVIS-2017 evaluation of a folder of predictions.

`toto-eval davis-score --davis-root R --predictions P [--set val]` prints the global and per-object tables and
writes `global_results-<set>.csv` and `per-sequence_results-<set>.csv` into P, as davis2017-evaluation's
`evaluation_method.py --task semi-supervised` does (but at full precision, and always recomputed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from toto_eval.common.errors import TotoEvalError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `davis-score` subcommand."""
    parser = subparsers.add_parser(
        "davis-score",
        help="score DAVIS-2017 predictions with the official semi-supervised J&F",
        description="Score a folder of <seq>/<frame>.png predictions against a DAVIS-2017 root with the official "
        "semi-supervised semantics; writes global_results-<set>.csv and per-sequence_results-<set>.csv into it.",
    )
    parser.add_argument("--davis-root", type=Path, required=True, help="DAVIS root holding JPEGImages/, Annotations/")
    parser.add_argument("--predictions", type=Path, required=True, help="folder of <seq>/<frame>.png predictions")
    parser.add_argument("--set", dest="split", default="val", help="ImageSets/2017/<set>.txt to score (default val)")
    parser.add_argument("--sequences", nargs="+", default=None, help="score only these sequences")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score, print both tables, write both CSVs. DataErrors propagate to the CLI's one-line handler."""
    from .scoring import format_tables, score_folder, write_csvs

    start = time.perf_counter()
    scores = score_folder(args.davis_root, args.predictions, args.split, args.sequences)
    global_path, sequence_path = write_csvs(scores, args.predictions)
    print(format_tables(scores))
    print(f"\nwrote {global_path} and {sequence_path} ({time.perf_counter() - start:.1f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m toto_eval.tasks.davis.score_cli ...`), same behaviour as the subcommand."""
    parser = argparse.ArgumentParser(prog="toto-eval")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["davis-score", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except TotoEvalError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
