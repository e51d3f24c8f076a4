"""`toto-eval ego4d-score`: score an official-format STA results file against an annotation file.

Prints the four top-5 mAPs the challenge reports (Overall ranks it) and, with `--output`, writes them as JSON at
full precision. Works on any results file in the challenge format, ours or anybody's, and on any annotation file
the official evaluator scores (boxes past the frame included: they are kept, counted and warned about, never
clipped, so the numbers are the official ones). Also runnable alone:
`python -m toto_eval.tasks.ego4d_sta.score_cli --annotations A --predictions P`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from toto_eval.common.errors import TotoEvalError

LABELS = {
    "noun": "Box + Noun mAP",
    "noun_verb": "Box + Noun + Verb mAP",
    "noun_ttc": "Box + Noun + TTC mAP",
    "overall": "Box + Noun + Verb + TTC mAP (Overall)",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `ego4d-score` on the toto-eval CLI."""
    p = subparsers.add_parser("ego4d-score", help="score an Ego4D STA results JSON (official top-5 mAP)")
    configure(p)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--annotations", required=True, type=Path, help="fho_sta_val.json (or another annotated split)")
    p.add_argument("--predictions", required=True, type=Path, help="results JSON in the official challenge format")
    p.add_argument("--output", type=Path, help="also write the metrics here as JSON")
    p.add_argument(
        "--no-official-quirks",
        dest="official_quirks",
        action="store_false",
        help="count the ground truth of examples with no predictions (the reference drops it)",
    )
    p.add_argument("--agnostic", action="store_true", help="also report the class-agnostic box APs")
    p.set_defaults(func=run)


def score_files(annotations: Path, predictions: Path, official_quirks: bool = True, agnostic: bool = False) -> dict:
    """The metrics of a results file against an annotation file, both read as the official evaluator reads them."""
    from .data import load_ground_truth
    from .results import load_results, score

    split = load_ground_truth(annotations)
    return score(split, load_results(predictions, split), official_quirks=official_quirks, agnostic=agnostic)


def run(args: argparse.Namespace) -> int:
    metrics = score_files(args.annotations, args.predictions, args.official_quirks, args.agnostic)
    for key, label in LABELS.items():
        print(f"{label}: {metrics[key]:.2f}")
    for key, value in metrics.items():
        if key.startswith("ap_"):
            print(f"{key}: {value:.2f}")
    empty = int(metrics["num_empty_predictions"])
    if empty:
        note = "dropped from" if args.official_quirks else "counted in"
        print(
            f"note: {empty} of {int(metrics['num_examples'])} examples have no predictions; their ground truth "
            f"is {note} the recall denominator",
            file=sys.stderr,
        )
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "annotations": str(args.annotations),
            "predictions": str(args.predictions),
            "official_quirks": args.official_quirks,
            "metrics": metrics,
        }
        args.output.write_text(json.dumps(record, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ego4d-score", description=__doc__.splitlines()[0])
    configure(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except TotoEvalError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
