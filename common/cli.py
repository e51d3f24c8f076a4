"""What `toto-eval` and `toto-pretrain` share as command lines: help that shows defaults, -v/-q, and one way
to turn an error into an exit code.

Exit codes (the same for every command):
    0    success
    1    the command ran but found failures (a task failed, `cache verify` found a bad entry)
    2    bad input: a usage error, an unknown name, a missing or corrupt file (one line on stderr)
    130  interrupted (Ctrl-C); finished results and cached work are kept
A traceback means a bug in toto-eval, never bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .errors import TotoEvalError
from .log import setup_logging

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default; descriptions keep their line breaks (they hold examples).

    On/off flags and options without a default (None) say nothing: "(default: False)" would be noise."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or default is argparse.SUPPRESS or default == [] or action.const is True:
            return action.help
        return super()._get_help_string(action)


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    """-v / -q: DEBUG or WARNING instead of the default INFO messages on stderr."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", help="debug messages (module names, details)")
    group.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def run_command(prog: str, parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse, set up logging, run `args.func(args)`; map user errors and Ctrl-C to the documented exit codes."""
    args = parser.parse_args(argv)
    verbosity = int(getattr(args, "verbose", False)) - int(getattr(args, "quiet", False))
    setup_logging(verbosity, prog, bars=not getattr(args, "no_progress", False))
    func: Callable[[argparse.Namespace], int | None] | None = getattr(args, "func", None)
    if func is None:  # a command group called without its subcommand
        parser.parse_args([*(argv if argv is not None else sys.argv[1:]), "--help"])
        return EXIT_USAGE
    try:
        return int(func(args) or EXIT_OK)
    except TotoEvalError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; finished results and cached work are kept", file=sys.stderr)
        return EXIT_INTERRUPTED
