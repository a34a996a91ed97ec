"""The ``twoview`` command.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.

Exit status (every command): 0 a pose was found (or the command did its work), 1 no pose
(the reason is printed), 2 bad input (one line naming the argument or file: a
:class:`~twoview.errors.TwoViewError`), 3 an internal error, i.e. a bug (one line; set
``TWOVIEW_DEBUG=1`` for the traceback), 130 interrupted (Ctrl-C), 141 the reader of its
output went away (``twoview ... | head -1``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings

from twoview.errors import TwoViewError, format_warning

# Subcommand modules, in the order `twoview --help` lists them.
COMMANDS = ["estimate", "refine", "demo", "bench", "train"]

#: exit statuses (see the module docstring)
EXIT_OK, EXIT_NO_POSE, EXIT_BAD_INPUT, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: the reader of standard output went away (as the shell reports a process ended by SIGPIPE)
EXIT_BROKEN_PIPE = 141
#: the sentence the descriptions of the commands that estimate a pose end with
EXIT_STATUS_HELP = "Exit status: 0 pose found, 1 no pose, 2 bad input, 3 internal error (a bug), 130 interrupted."
#: the same for the commands that do not (bench, train)
EXIT_STATUS_HELP_NO_POSE = "Exit status: 0 done, 2 bad input, 3 internal error (a bug), 130 interrupted."


def build_parser() -> argparse.ArgumentParser:
    from twoview import __version__

    parser = argparse.ArgumentParser(prog="twoview", description="Metric relative pose between two photos. "
                                     "Exit status of every command: 0 pose found (or done), 1 no pose, 2 bad input, "
                                     "3 internal error (a bug), 130 interrupted.")
    parser.add_argument("--version", action="version", version=f"twoview {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"twoview.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"twoview.cli.{name}":
                continue  # subcommand not part of this build
            raise
        mod.register(sub)
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@contextlib.contextmanager
def _warnings_formatted():
    """The command's warning format while it runs, the caller's again after (tests and
    notebooks call :func:`main` in-process)."""
    previous, warnings.formatwarning = warnings.formatwarning, format_warning
    try:
        yield
    finally:
        warnings.formatwarning = previous


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv``; returns the exit status (see the module docstring).
    No exception escapes but ``SystemExit`` (argparse's usage errors, exit 2)."""
    command = "twoview"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_BAD_INPUT
        command = f"twoview {args.command}"
        from twoview.cli.common import json_to_stdout

        with _warnings_formatted(), json_to_stdout(args):
            return int(args.func(args) or 0)
    except TwoViewError as e:
        print(f"{command}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of our output went away (`| head`): nothing left to say
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as e:  # the last resort: a bug, reported in one line, never a traceback
        if os.environ.get("TWOVIEW_DEBUG", "") not in ("", "0"):
            raise
        print(f"twoview: internal error (a bug, please report): {type(e).__name__}: {_one_line(e)}"
              f" (set TWOVIEW_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_BUG


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
