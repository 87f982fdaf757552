"""Arguments shared by several sub-commands, parsed once into validated settings."""

from __future__ import annotations

import argparse
import re
from typing import Any

from harness.config import ExperimentConfig, parse_literal
from harness.errors import HarnessError
from harness.locations import DataLocation, resolve_data_location
from harness.presets import PRESET_DESCRIPTIONS, PRESETS, build_config
from methods.supernet import ALGORITHMS, get_algorithm
from methods.supernet.base import parse_options
from spaces import space_names

_RANGE = re.compile(r"^([0-9]+)-([0-9]+)$")
MAX_SEED = 2**63 - 1  # torch.manual_seed takes a signed 64-bit integer
MAX_SEEDS = 1000


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0..4]; '0,2,5' -> [0, 2, 5]; '3' -> [3]; ranges and lists may mix."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        match = _RANGE.match(part)
        if match:
            low, high = int(match.group(1)), int(match.group(2))
            if low > high:
                raise HarnessError(f"seed range {part!r} runs backwards; write it as {high}-{low}")
            seeds.extend(range(low, high + 1))
        elif part.isascii() and part.isdigit():
            seeds.append(int(part))
        else:
            raise HarnessError(
                f"cannot read seeds {text!r}: use a range like 0-4, a list like 0,2,5, or one seed"
            )
    if len(set(seeds)) != len(seeds):
        raise HarnessError(f"seeds {text!r} name a seed twice")
    if seeds and max(seeds) > MAX_SEED:
        raise HarnessError(f"seed {max(seeds)} is too large: seeds go up to {MAX_SEED}")
    if len(seeds) > MAX_SEEDS:
        raise HarnessError(
            f"--seeds {text!r} asks for {len(seeds)} seeds, more than {MAX_SEEDS} at once: "
            "run them in chunks (the store keeps what each finished)"
        )
    return seeds


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
        "(default: $HARNESS_CIFAR10, else ../shared/data/cifar10-jpeg)",
    )
    group.add_argument(
        "--data-source",
        choices=("folder", "torchvision"),
        default="folder",
        help="format of --data (default: folder)",
    )
    group.add_argument(
        "--download", action="store_true", help="download official CIFAR-10 (torchvision source)"
    )
    group.add_argument(
        "--cache",
        metavar="DIR",
        help="decoded-data cache (default: $HARNESS_CACHE or ~/.cache/nas-harness)",
    )


def data_location(args: argparse.Namespace) -> DataLocation:
    return resolve_data_location(args.data, args.data_source, args.cache, args.download)


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
        help=f"supernet algorithm: {', '.join(ALGORITHMS)} (default: darts); "
        "`harness run` also takes a comma-separated list",
    )
    group.add_argument(
        "--space",
        help="search space (part of the run key): "
        + "; ".join(f"{name}: {text}" for name, text in space_names().items())
        + " (default: nb201). Narrow nb201 with --set space.ops=OP,OP (every edge) or "
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


def experiment_config(args: argparse.Namespace, algorithm: str | None = None) -> ExperimentConfig:
    overrides: dict[str, dict[str, Any]] = {"space": {}, "data": {}, "train": {}, "compute": {}}
    algorithm_options: dict[str, Any] = {}
    if getattr(args, "space", None) is not None:
        overrides["space"]["name"] = args.space
    if args.epochs is not None:
        overrides["train"]["epochs"] = args.epochs
    if args.checkpoint_every is not None:
        overrides["train"]["checkpoint_every"] = args.checkpoint_every
    overrides["data"]["source"] = args.data_source
    for item in args.set:
        name, sep, raw = item.partition("=")
        section, dot, field = name.partition(".")
        if not sep or not dot or section not in (*overrides, "algorithm"):
            raise HarnessError(
                f"cannot read --set {item!r}: write SECTION.FIELD=VALUE with SECTION one of "
                "space, data, train, compute, algorithm"
            )
        target = algorithm_options if section == "algorithm" else overrides[section]
        target[field] = parse_literal(raw)
    name = algorithm or args.algorithm
    # Fail on a bad algorithm or option now, not after data loading and training.
    cls = get_algorithm(name)
    parse_options(cls.options_class, algorithm_options, name)
    return build_config(
        args.preset,
        overrides,
        algorithm=name,
        algorithm_options=algorithm_options,
        device=args.device,
    )
