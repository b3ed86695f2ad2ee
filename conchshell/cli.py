"""The ``conchshell`` command line.

Each subcommand's arguments are declared here; the work is imported only
when the subcommand runs, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from conchshell._version import __version__

__all__ = ["build_parser", "main"]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _cmd_data_build(args: argparse.Namespace) -> int:
    from conchshell.data.build import build_standin

    summary = build_standin(args.out, seed=args.seed, force=args.force)
    print(summary.describe())
    return 0


def _cmd_data_summary(args: argparse.Namespace) -> int:
    from conchshell.datasets import load_bop

    for split in ("train", "val"):
        ds = load_bop(args.root, split=split)
        print(f"{split}: {ds.describe()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="conchshell",
        description="Turn a picture into an 8-second piano piece (ConchShell).",
    )
    parser.add_argument("--version", action="version", version=f"conchshell {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    data = sub.add_parser("data", help="build or inspect datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data_sub.required = True
    build = data_sub.add_parser(
        "build",
        help="write the offline stand-in dataset (real photos, rendered piano) in the BOP layout",
    )
    build.add_argument("--out", type=Path, required=True, help="output folder")
    build.add_argument("--seed", type=int, default=0, help="seed for splits and excerpts")
    build.add_argument(
        "--force", action="store_true", help="rebuild even if OUT already holds the dataset"
    )
    build.set_defaults(func=_cmd_data_build)
    summary = data_sub.add_parser("summary", help="print the counts of a BOP-layout folder")
    summary.add_argument("root", type=Path, help="dataset folder (BOP layout)")
    summary.set_defaults(func=_cmd_data_summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (CLIError, ValueError, FileNotFoundError, PermissionError) as exc:
        print(f"conchshell: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("conchshell: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
