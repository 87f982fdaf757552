"""Arguments shared by several sub-commands, parsed once into validated settings."""

from __future__ import annotations

import argparse
import sys

from harness.api_arguments import MAX_SEED, MAX_SEEDS, parse_seeds  # noqa: F401 (the CLI's names)
from harness.config import SOURCES
from harness.presets import PRESET_DESCRIPTIONS, PRESETS
from methods.supernet import available_algorithms
from spaces import space_names


def add_ground_truth_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ground-truth",
        metavar="CSV",
        help="NAS-Bench-201 ground-truth table (default: $HARNESS_GROUND_TRUTH, else "
        "../shared/data/nasbench201/nb201_accuracy.csv)",
    )


def add_seed_store_arguments(parser: argparse.ArgumentParser) -> None:
    """--seeds, --results and --quiet, as `harness train` and `harness run` take them."""
    parser.add_argument("--seeds", default="0", help="seeds: 0-4, 0,2,5 or 3 (default: 0)")
    parser.add_argument(
        "--results", metavar="DIR", help="store root (default: $HARNESS_RESULTS or ./results)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars; log lines only")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        metavar="PATH",
        help="CIFAR-10 location: an image folder (train/<class>/, test/<class>/) or, with "
        "--data-source torchvision, the folder holding cifar-10-batches-py "
        "(default: $HARNESS_CIFAR10, else ../shared/data/cifar10-jpeg); for "
        "--set data.dataset=cifar100 or svhn, the folder holding their official files",
    )
    group.add_argument(
        "--data-source",
        choices=SOURCES,
        default="folder",
        help="format of --data (default: folder)",
    )
    group.add_argument(
        "--download",
        action="store_true",
        help="download the official files of the data set (torchvision source)",
    )
    group.add_argument(
        "--cache",
        metavar="DIR",
        help="decoded-data cache (default: $HARNESS_CACHE or ~/.cache/nas-harness)",
    )


def add_experiment_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("experiment")
    group.add_argument(
        "--preset",
        default="proxy",
        choices=tuple(PRESETS),
        help="; ".join(f"{name}: {text}" for name, text in PRESET_DESCRIPTIONS.items())
        + " (default: proxy)",
    )
    group.add_argument(
        "--algorithm",
        default="darts",
        help=f"supernet algorithm: {', '.join(available_algorithms())} or module.path:Class "
        "(default: darts; `harness algorithms` lists them with their options); "
        "`harness run` also takes a comma-separated list",
    )
    group.add_argument(
        "--space",
        help="search space (part of the run key): "
        + "; ".join(f"{name}: {text}" for name, text in space_names().items())
        + " (default: the preset's; nb201 but for the darts-* presets). Narrow nb201 with "
        "--set space.ops=OP,OP (every edge) or "
        "--set 'space.edge_ops=OP,OP;OP;...' (one set per edge, 1<-0 first)",
    )
    group.add_argument("--epochs", type=int, help="override the preset's epoch count")
    group.add_argument(
        "--checkpoint-every", type=int, metavar="K", help="checkpoint every K epochs"
    )
    group.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override any setting, e.g. --set space.channels=8 --set train.lr=0.05 "
        "--set algorithm.hessian_radius=0.02; how the supernet computes: compute.cell="
        "fused|reference, compute.channels_last=true|false, compute.autocast=none|bf16, "
        "compute.compile=true|false (all part of the run key); repeatable",
    )


def print_note(text: str) -> None:
    """Warnings the API hands the command line go to stderr."""
    print(text, file=sys.stderr)
