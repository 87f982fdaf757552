"""The ``harness`` command line. Each sub-command lives in its own module."""

from __future__ import annotations

import argparse
import logging
import sys

from harness import __version__
from harness.cli import bench, catalogue, report, retrain, run, select, train
from harness.errors import HarnessError

COMMANDS = (run, report, train, select, retrain, bench, catalogue)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description=(
            "Benchmark architecture-selection methods for differentiable NAS: train "
            "DARTS-style supernets once per seed, run every selection method on every "
            "checkpoint, and look the chosen cells up in NAS-Bench-201's ground truth "
            "(or, in the DARTS space and S1-S4, retrain them: harness retrain)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG
        if args.verbose
        else logging.INFO
        if getattr(args, "quiet", False)
        else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except HarnessError as error:
        print(f"harness: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted; completed results are kept in the store", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
