"""``harness report``: degeneration curves, rank correlations and paper tables."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.locations import resolve_results_dir, writable_folder


def register(commands) -> None:
    parser = commands.add_parser(
        "report",
        help="figures, rank correlations, paper tables (Markdown/LaTeX) and an HTML page",
        description="Read the tables `harness run` wrote and produce degeneration curves, "
        "collapse and rank-correlation figures (PNG and PDF), the paper table (Markdown and "
        "LaTeX, with paired significance against magnitude) and an offline index.html.",
    )
    parser.add_argument(
        "--results", metavar="DIR", help="results of `harness run` (default: ./results)"
    )
    parser.add_argument("--out", metavar="DIR", default="reports", help="output (default: reports)")
    parser.add_argument("--preset", help="only runs of this preset")
    parser.add_argument("--algorithm", help="only runs of this supernet algorithm")
    parser.add_argument(
        "--space", help="only runs in this search space (as the tables name it, e.g. nb201-s2)"
    )
    parser.add_argument("--config", metavar="KEY", help="only runs of this config key (prefix)")
    parser.add_argument(
        "--table", action="store_true", help="also print the paper table to the terminal"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.report import build_report, format_table_for_terminal

    summary = build_report(
        resolve_results_dir(args.results),
        writable_folder(Path(args.out).resolve(), "--out", create=False),
        preset=args.preset,
        algorithm=args.algorithm,
        config_key=args.config,
        space=args.space,
    )
    if args.table:
        print(format_table_for_terminal(summary))
    print(f"report: {summary.index_html}")
    return 0
