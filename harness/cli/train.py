"""``harness train``: train (or resume) one supernet per seed and cache its checkpoints."""

from __future__ import annotations

import argparse
import sys

import torch

from harness.cli.options import (
    add_data_arguments,
    add_experiment_arguments,
    add_seed_store_arguments,
    data_location,
    experiment_config,
    parse_seeds,
)
from harness.errors import HarnessError
from harness.locations import resolve_results_dir, writable_folder
from harness.presets import pixels_warning
from harness.search_data import split_indices
from harness.training import train_supernet


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
    seeds = parse_seeds(args.seeds)
    config = experiment_config(args)
    if warning := pixels_warning(config):
        print(warning, file=sys.stderr)
    location = data_location(args)
    store = writable_folder(resolve_results_dir(args.results), "--results", create=False)
    if args.threads is not None:
        if args.threads < 1:
            raise HarnessError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    data = location.load()
    split_indices(config.data, len(data.train_labels))
    writable_folder(store, "--results")
    for seed in seeds:
        outcome = train_supernet(config, seed, store, data, progress=not args.quiet)
        if outcome.epochs_trained == 0:
            state = "already trained, nothing to do"
        elif outcome.resumed_from:
            state = f"resumed at epoch {outcome.resumed_from}, trained {outcome.epochs_trained}"
        else:
            state = f"trained {outcome.epochs_trained} epochs"
        print(f"seed {seed}: {state}; checkpoints {outcome.checkpoint_epochs} in {outcome.run_dir}")
    return 0
