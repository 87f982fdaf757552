"""``harness bench``: the NAS-Bench-201 ground truth (import official benchmarks, look cells up)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.options import add_ground_truth_argument
from harness.errors import HarnessError


def register(commands) -> None:
    parser = commands.add_parser(
        "bench",
        help="NAS-Bench-201 ground truth: import an official benchmark, look up cells",
        description="Work with the compact NAS-Bench-201 ground-truth table the harness reads.",
    )
    actions = parser.add_subparsers(dest="bench_command", metavar="ACTION", required=True)

    importer = actions.add_parser(
        "import",
        help="convert an official NAS-Bench-201 (.pth) or NATS-Bench topology benchmark "
        "into the compact table",
        description="Read an official benchmark through its official API and write the "
        "compact CSV table: 200-epoch accuracies averaged over seeds, plus the 12-epoch "
        "schedule when the benchmark has it. Accepts a NAS-Bench-201 .pth file "
        "(pip install nas-bench-201) or the NATS-Bench topology benchmark (pip install "
        "nats_bench), either as a single .pickle.pbz2 file or as an extracted fast-mode "
        "directory.",
    )
    importer.add_argument(
        "path",
        help="NAS-Bench-201-v1_1-096897.pth, NATS-tss-v1_0-3ffb9-full.pickle.pbz2 or a "
        "directory like NATS-tss-v1_0-3ffb9-simple/",
    )
    importer.add_argument("--out", required=True, help="CSV to write")
    importer.add_argument(
        "--trust-file",
        action="store_true",
        help="allow full unpickling of a .pth file (only for files from a source you trust; "
        "needed when torch's safe loader refuses it); NATS-Bench files are always "
        "unpickled in full by their API",
    )
    importer.set_defaults(handler=run_import)

    lookup = actions.add_parser(
        "lookup",
        help="print the ground-truth accuracies of a cell (arch string or index)",
        description="Print every ground-truth column for one cell.",
    )
    lookup.add_argument("cell", help="arch string '|op~0|+|op~0|op~1|+|...|' or benchmark index")
    add_ground_truth_argument(lookup)
    lookup.set_defaults(handler=run_lookup)


def run_import(args: argparse.Namespace) -> int:
    from harness.bench_import import import_benchmark

    table = import_benchmark(Path(args.path), Path(args.out), trust_file=args.trust_file)
    print(f"wrote {len(table)} cells to {args.out}")
    return 0


def run_lookup(args: argparse.Namespace) -> int:
    from harness.ground_truth import GroundTruth, resolve_ground_truth_path

    truth = GroundTruth.from_csv(resolve_ground_truth_path(args.ground_truth))
    cell: str | int = args.cell
    if args.cell.strip().isascii() and args.cell.strip().isdigit():
        cell = int(args.cell)
    elif "|" not in args.cell:
        raise HarnessError(
            f"{args.cell!r} is neither a benchmark index nor an arch string like "
            "'|nor_conv_3x3~0|+|...|'"
        )
    index = truth.index_of(cell) if isinstance(cell, str) else cell
    print(f"index {index}: {truth.arch_of(index)}")
    for column, value in truth.accuracies(cell).items():
        print(f"  {column:24s} {value:.2f}")
    return 0
