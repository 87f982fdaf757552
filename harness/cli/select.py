"""``harness select``: run selection methods on existing checkpoints and print the cells."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.options import add_data_arguments, add_ground_truth_argument, data_location
from harness.config import check_device
from harness.errors import HarnessError
from harness.ground_truth import load_ground_truth
from harness.locations import resolve_results_dir
from harness.presets import SELECTION_DEFAULTS
from harness.selecting import select_at_checkpoint
from harness.store import RunStore, load_checkpoint_file
from methods.selection import SELECTION_METHODS, parse_method_list


def register(commands) -> None:
    parser = commands.add_parser(
        "select",
        help="run selection methods on existing checkpoints; print cells and accuracies",
        description="Run selection methods on a checkpoint (or every checkpoint of a run) and "
        "print the chosen cells with their NAS-Bench-201 accuracies. Results are stored next "
        "to the checkpoint and reused. Methods: " + ", ".join(SELECTION_METHODS) + "; variants "
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
    check_device(args.device)
    if args.checkpoint:
        checkpoint = Path(args.checkpoint).resolve()
        if not checkpoint.is_file():
            raise HarnessError(f"checkpoint {args.checkpoint} does not exist")
        if checkpoint.parent.name != "checkpoints" or len(checkpoint.parents) < 4:
            raise HarnessError(
                f"{args.checkpoint} is not inside a results store: pass a checkpoint "
                "<results>/runs/<key>/checkpoints/epoch_NNNN.pt"
            )
        load_checkpoint_file(checkpoint)  # one sentence if it is not a supernet checkpoint
        checkpoints = [checkpoint]
        store = RunStore(checkpoint.parents[3], checkpoint.parents[1].name)
    else:
        store = RunStore(resolve_results_dir(args.results), args.run)
        epochs = store.completed_epochs()
        if not epochs:
            raise HarnessError(f"run {args.run!r} has no checkpoints in {store.dir.parent}")
        checkpoints = [store.checkpoint_path(e) for e in epochs]
    # Method names are relative to the preset that trained the run, as in `harness run`.
    preset = store.read_settings()["config"]["preset"] if store.settings_path.exists() else ""
    methods = parse_method_list(args.methods, SELECTION_DEFAULTS.get(preset, {}))
    truth = load_ground_truth(args.ground_truth)
    data = data_location(args).load()
    print(f"{'seed':>4} {'epoch':>5}  {'method':24s} {'C10 test':>8} {'sec':>7} {'fwd':>6}  cell")
    for path in checkpoints:
        for stored in select_at_checkpoint(path, methods, data, truth, args.device):
            s = stored.selection
            print(
                f"{stored.seed:>4} {stored.epoch:>5}  {s.method:24s} "
                f"{truth.accuracy(s.arch):8.2f} {s.cost.wall_seconds:7.2f} "
                f"{s.cost.forward_passes:6d}  {s.arch}"
            )
    return 0
