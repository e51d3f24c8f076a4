"""Leaderboards: tables (Markdown, CSV, LaTeX, HTML) and figures built only from stored result files.

collect.py reads and validates results, reference.py holds the paper's reported numbers, specs.py says what each
task's table looks like, tables.py builds pandas frames, render.py and figures.py write them, cli.py is the
`toto-eval leaderboard` subcommand.
"""
