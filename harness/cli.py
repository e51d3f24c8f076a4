"""`toto-eval`: the command line, a thin shell over the Python API.

Commands are registered, not listed here: each is an entry point of the `toto_eval.commands` group
(pyproject.toml) naming a function `add_parser(subparsers)` that adds its subparser and sets `func`; an installed
plugin package adds commands the same way. Command modules import nothing heavy at module level, so
`toto-eval --help` answers at once and `run` loads only the tasks it runs. Every option's help shows its
default. Exit codes (0 ok, 1 failures found, 2 bad input, 130 interrupted) are documented in
`toto_eval.common.cli`; bad input prints one line, `toto-eval: error: ...`, on stderr.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from ..common.cli import EXIT_USAGE, HelpFormatter, add_verbosity, run_command
from ..common.errors import TotoEvalError

GROUP = "toto_eval.commands"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["run"], ["plan"]):  # commands that describe a run accept --config FILE
        from .run_config import expand_config

        try:
            argv = expand_config(argv)
        except TotoEvalError as err:
            print(f"toto-eval: error: {err}", file=sys.stderr)
            return EXIT_USAGE
    return run_command("toto-eval", build_parser(), argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toto-eval",
        description="Evaluate visual backbones the way the Toto paper does; `toto-eval COMMAND --help` for more.",
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        ep.load()(sub)
    _finish(sub)
    return parser


def _finish(sub: argparse._SubParsersAction) -> None:
    """Give every (nested) subcommand the defaults-showing help and -v/-q, whoever registered it."""
    for parser in set(sub.choices.values()):
        parser.formatter_class = HelpFormatter
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            for action in nested:
                _finish(action)
        elif not any(a.dest == "verbose" for a in parser._actions):
            add_verbosity(parser)


if __name__ == "__main__":
    sys.exit(main())
