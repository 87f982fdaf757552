"""``harness select``: run selection methods on existing checkpoints and print the cells."""

from __future__ import annotations

import argparse
import math

from harness import api
from harness.cli.options import add_data_arguments, add_ground_truth_argument
from harness.errors import HarnessError
from harness.locations import resolve_results_dir
from harness.store import RunStore
from methods.selection import available_methods


def register(commands) -> None:
    parser = commands.add_parser(
        "select",
        help="run selection methods on existing checkpoints; print cells and accuracies",
        description="Run selection methods on a checkpoint (or every checkpoint of a run) and "
        "print the chosen cells with their NAS-Bench-201 accuracies. Results are stored next "
        "to the checkpoint and reused. Methods: " + ", ".join(available_methods()) + "; variants "
        "as NAME[alias] or NAME[option=value,...], e.g. ostr[taylor], darts-pt[fix-alpha].",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="PATH", help="one checkpoint file")
    source.add_argument("--run", metavar="KEY", help="every checkpoint of run KEY in the store")
    parser.add_argument("--methods", required=True, help="comma-separated methods, or all")
    parser.add_argument(
        "--results", metavar="DIR", help="store root for --run (default: ./results)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    add_ground_truth_argument(parser)
    add_data_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.checkpoint:
        checkpoints = [args.checkpoint]
    else:
        store = RunStore(resolve_results_dir(args.results), args.run)
        epochs = store.completed_epochs()
        if not epochs:
            raise HarnessError(f"run {args.run!r} has no checkpoints in {store.dir.parent}")
        checkpoints = [store.checkpoint_path(e) for e in epochs]
    chosen = api.select(
        checkpoints, args.methods, data=args.data, data_source=args.data_source,
        download=args.download, cache=args.cache, ground_truth=args.ground_truth,
        device=args.device,
    )  # fmt: skip
    print(f"{'seed':>4} {'epoch':>5}  {'method':24s} {'C10 test':>8} {'sec':>7} {'fwd':>6}  cell")
    for row in chosen.itertuples():
        # Cells of spaces without tabular ground truth have none: harness retrain judges them.
        accuracy = "—" if math.isnan(row.cifar10_test) else f"{row.cifar10_test:.2f}"
        print(
            f"{row.seed:>4} {row.epoch:>5}  {row.method:24s} {accuracy:>8} "
            f"{row.wall_seconds:7.2f} {row.forward_passes:6d}  {row.arch}"
        )
    return 0
