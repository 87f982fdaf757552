"""``harness train``: train (or resume) one supernet per seed and cache its checkpoints."""

from __future__ import annotations

import argparse

from harness import api
from harness.api_requests import TrainRequest, request_from_arguments
from harness.cli.options import (
    add_data_arguments,
    add_experiment_arguments,
    add_seed_store_arguments,
    print_note,
)


def register(commands) -> None:
    parser = commands.add_parser(
        "train",
        help="train supernets (one per seed), cached and resumable",
        description="Train one supernet per seed and keep a checkpoint every K epochs in the "
        "store. Re-running the same command does no training; an interrupted run resumes "
        "from its last complete checkpoint.",
    )
    add_seed_store_arguments(parser)
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads (default: torch's choice); CPU results are bit-identical for the "
        "same settings, seed and thread count",
    )
    add_experiment_arguments(parser)
    add_data_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    outcomes = api.train(request_from_arguments(TrainRequest, args, notes=print_note))
    for outcome in outcomes:
        if outcome.epochs_trained == 0:
            state = "already trained, nothing to do"
        elif outcome.resumed_from:
            state = f"resumed at epoch {outcome.resumed_from}, trained {outcome.epochs_trained}"
        else:
            state = f"trained {outcome.epochs_trained} epochs"
        print(f"seed {outcome.seed}: {state}; checkpoints {outcome.checkpoint_epochs} in "
              f"{outcome.run_dir}")  # fmt: skip
    return 0
