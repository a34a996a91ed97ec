"""The ``twoview`` command.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
Errors a user can fix (:class:`~twoview.errors.TwoViewError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from twoview.errors import TwoViewError

# Subcommand modules, in the order `twoview --help` lists them.
COMMANDS = ["estimate", "refine", "demo", "bench", "train"]


def build_parser() -> argparse.ArgumentParser:
    from twoview import __version__

    parser = argparse.ArgumentParser(prog="twoview", description="Metric relative pose between two photos.")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, cat, *a, **k: f"twoview: warning: {msg}\n"
    try:
        return int(args.func(args) or 0)
    except TwoViewError as e:
        print(f"twoview {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"twoview {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
