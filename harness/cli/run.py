"""``harness run``: the whole pipeline (train -> select at every checkpoint -> records)."""

from __future__ import annotations

import argparse

from harness import api
from harness.api_requests import RunRequest, request_from_arguments
from harness.cli.options import (
    add_data_arguments,
    add_experiment_arguments,
    add_ground_truth_argument,
    add_seed_store_arguments,
    print_note,
)
from methods.selection import METHOD_GROUPS, available_methods


def register(commands) -> None:
    parser = commands.add_parser(
        "run",
        help="the whole pipeline: train per seed, select at every checkpoint, write records",
        description="Train one supernet per seed (cached), run every selection method on "
        "every checkpoint (cached), join the NAS-Bench-201 ground truth and write tidy "
        "tables (records, selections, runs and the per-epoch mixing weights, as .parquet) to the "
        "results "
        "directory. Whatever the store already holds is not recomputed. Methods: "
        + ", ".join(available_methods())
        + "; variants as NAME[alias] or NAME[option=value,...]; your own as "
        "module.path:ClassName or an installed plugin (`harness methods` lists them).",
    )
    parser.add_argument(
        "--methods",
        default="all",
        help="comma-separated selection methods, or all (default: every method the space "
        "allows; the oracle only where it has a tabular benchmark); "
        + ", ".join(f"{g} = {','.join(m)}" for g, m in METHOD_GROUPS.items()),
    )
    add_seed_store_arguments(parser)
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes for independent jobs (default: 1)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads per job (default: cores / jobs); CPU results are bit-identical "
        "for the same settings, seed and thread count",
    )
    parser.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run jobs on a Dask cluster: a scheduler address (tcp://host:8786) or 'local' "
        "for a LocalCluster of --jobs workers",
    )
    add_ground_truth_argument(parser)
    add_experiment_arguments(parser)
    add_data_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    study = api.run(request_from_arguments(RunRequest, args, notes=print_note))
    for algorithm, outcome in study.summaries.items():
        print(
            f"{algorithm}: trained seeds {outcome.trained_seeds or 'none (cached)'}; "
            f"selections computed {outcome.selections_computed}, reused "
            f"{outcome.selections_reused}; {outcome.seconds:.1f} s{_ran_on(outcome.executors)}"
        )
    print(f"records: {study.results / 'records.parquet'}")
    return 0


def _ran_on(executors: set[str]) -> str:
    dask = sorted(e.split(" ", 1)[1] for e in executors if e.startswith("dask "))
    if dask:
        return f"; jobs ran on {len(dask)} Dask worker(s): {', '.join(dask)}"
    processes = [e for e in executors if e.startswith("process ")]
    return f"; jobs ran in {len(processes)} worker process(es)" if processes else ""
