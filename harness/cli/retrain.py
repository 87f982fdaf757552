"""``harness retrain``: train genotypes' evaluation networks from scratch (cached, resumable)."""

from __future__ import annotations

import argparse
import dataclasses

from harness import api
from harness.api_requests import RetrainRequest, request_from_arguments
from harness.cli.options import add_data_arguments, add_ground_truth_argument, print_note
from harness.errors import HarnessError
from harness.retrain_settings import PROTOCOLS, RetrainSettings

PROTOCOL_DESCRIPTIONS = {
    "paper": "DARTS's evaluation: 20 cells, C=36, 600 epochs, batch 96, cutout 16, auxiliary "
    "0.4, drop-path 0.2, SGD 0.025 cosine, wd 3e-4, all 50k/10k images; GPU",
    "proxy": "CPU: 8 cells, C=16, 16x16, 10 epochs, 5000 train / 2000 test images, no "
    "auxiliary head; minutes",
    "robustdarts": "RobustDARTS's evaluation (DARTS's recipe at 8 cells, C=16), which "
    "DARTS-PT used on CIFAR-100 and SVHN; GPU",
    "smoke": "tiny, for tests; seconds",
}
# What --set may name: every retrain value but the protocol's label (that is --protocol).
FIELDS = sorted(f.name for f in dataclasses.fields(RetrainSettings) if f.name != "protocol")


def register(commands) -> None:
    parser = commands.add_parser(
        "retrain",
        help="retrain selected genotypes from scratch (the ground truth of spaces without a table)",
        description="Train the evaluation network of genotypes from scratch (each built by its "
        "space) and record test accuracy, parameter count and multiply-adds. Without "
        "--genotype, every genotype the store's selections chose in a space without tabular "
        "ground truth (darts, darts-s1..s4, a space you registered) is retrained; the "
        "records table gains them at fidelity retrain-<protocol>, so `harness report` shows "
        "them. Each (genotype, settings, seed) is trained once, checkpointed every epoch "
        "and resumed after an interruption.",
    )
    parser.add_argument(
        "--genotype", action="append", metavar="TEXT",
        help="a genotype as DARTS prints it: \"Genotype(normal=[('sep_conv_3x3', 0), ...], "
        "normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])\"; repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--protocol", choices=tuple(PROTOCOLS), default="proxy",
        help="; ".join(f"{name}: {text}" for name, text in PROTOCOL_DESCRIPTIONS.items())
        + " (default: proxy)",
    )  # fmt: skip
    parser.add_argument("--seeds", default="0", help="retrain seeds: 0-4, 0,2 or 3 (default: 0)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="retrain.FIELD=VALUE",
        help="override a protocol value, e.g. --set retrain.epochs=20 (the fidelity then says "
        "custom); repeatable",
    )  # fmt: skip
    parser.add_argument("--space", help="only selections in this space (from the store)")
    parser.add_argument(
        "--methods", help="only these methods' selections, comma-separated display names"
    )
    parser.add_argument(
        "--epoch", default="final",
        help="selections at this supernet epoch: final (default), a number, or all",
    )  # fmt: skip
    parser.add_argument(
        "--dataset", default="cifar10", choices=("cifar10", "cifar100", "svhn"),
        help="dataset for --genotype (store genotypes use their run's dataset)",
    )  # fmt: skip
    parser.add_argument(
        "--results", metavar="DIR", help="store root (default: $HARNESS_RESULTS or ./results)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default: 1)")
    parser.add_argument("--cluster", help="Dask scheduler address, or 'local'")
    parser.add_argument("--threads", type=int, help="torch threads per job")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_ground_truth_argument(parser)
    add_data_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    for item in args.set:
        _check_setting(item)
    epoch = args.epoch if args.epoch in ("final", "all") else _epoch(args.epoch)
    request = request_from_arguments(RetrainRequest, args, epoch=epoch, notes=print_note)
    rows = api.retrain(request)
    print(f"{'seed':>4} {'test %':>7} {'params':>9} {'MAdds':>11} {'sec':>7}  fidelity / genotype")
    for row in rows.itertuples():
        state = "stored" if row.cached else f"{row.wall_seconds:7.0f}"
        print(f"{row.seed:>4} {row.test_acc:7.2f} {row.params:9d} {row.madds:11d} {state:>7}  "
              f"{row.fidelity} {row.genotype}")  # fmt: skip
    return 0


def _check_setting(item: str) -> None:
    """``harness retrain`` takes retrain values only; say so, and which, for anything else
    (the generic message lists the sections of ``harness run``, which this command refuses)."""
    name, equals, _ = item.partition("=")
    section, dot, field = name.partition(".")
    if not (equals and dot and section == "retrain" and field in FIELDS):
        raise HarnessError(f"cannot read --set {item!r}: write --set retrain.FIELD=VALUE with "
                           f"FIELD one of {', '.join(FIELDS)}")  # fmt: skip


def _epoch(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise HarnessError(f"--epoch {text!r}: use final, all or an epoch number") from None
