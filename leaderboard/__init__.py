"""Leaderboards: tables (Markdown, CSV, LaTeX, HTML), figures and a DataFrame, built only from stored result files.

collect.py reads and validates results, seeds.py pools runs that differ only in their seed, intervals.py reads,
formats and pools their 95% intervals, reference.py holds
the paper's reported numbers (Tables 7-12 and the ablation studies), specs.py says what each task's table looks
like, table.py is one table (numbers, intervals, marks), tables.py and ablations.py build them, render.py and
figures.py write them, frame.py is `load_results` (one DataFrame row per result file), cli.py is the
`toto-eval leaderboard` subcommand.
"""

__all__ = ["load_results"]


def __getattr__(name: str):  # `load_results` imports pandas: only when it is asked for, not for `--help`
    if name == "load_results":
        from .frame import load_results

        return load_results
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
