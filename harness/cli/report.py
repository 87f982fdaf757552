"""``harness report``: degeneration curves, rank correlations and paper tables."""

from __future__ import annotations

import argparse

from harness import api


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
    summary = api.report(
        args.results, args.out, preset=args.preset, algorithm=args.algorithm,
        space=args.space, config=args.config,
    )  # fmt: skip
    if args.table:
        print(summary.paper_table_markdown)
    print(f"report: {summary.index_html}")
    return 0
