"""Seconds and forward passes per selection, for every method, at a preset's shape.

Trains nothing: it builds a supernet of the preset's shape with the given seed (or
loads --checkpoint) and random data of the preset's size, then runs each method once and
prints its cost and the cell it chose. ``--compute`` rebuilds the supernet with other
compute settings (same parameters), e.g. to time the fused cell on a checkpoint that
the reference cell trained:

    python benchmarks/selection_cost.py [--preset proxy] [--space darts] [--methods all]
        [--checkpoint PATH] [--compute cell=fused,channels_last=true]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform

import torch

from harness.checkpoints import build_supernet, load_supernet
from harness.data import ImageArrays
from harness.experiment import build_config
from harness.literals import parse_literal
from harness.presets import SELECTION_DEFAULTS
from harness.search_data import make_search_data
from methods.selection import SelectionContext, parse_method_list


def random_arrays(per_split: int, size: int = 32) -> ImageArrays:
    generator = torch.Generator().manual_seed(0)
    count = 2 * per_split
    return ImageArrays(
        train_images=torch.randint(0, 256, (count, 3, size, size), generator=generator).byte(),
        train_labels=torch.randint(0, 10, (count,), generator=generator),
        test_images=torch.zeros(0, 3, size, size, dtype=torch.uint8),
        test_labels=torch.zeros(0, dtype=torch.long),
        classes=[str(c) for c in range(10)],
        fingerprint="random",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="proxy")
    parser.add_argument("--space", default=None, help="search space (default: the preset's)")
    parser.add_argument("--methods", default="all")
    parser.add_argument("--checkpoint")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compute", default="", help="FIELD=VALUE,... of the compute settings")
    args = parser.parse_args()
    if args.checkpoint:
        loaded = load_supernet(args.checkpoint, args.device)
        config, supernet = loaded.config, loaded.supernet
    else:
        overrides = {"space": {"name": args.space}} if args.space else {}
        config = build_config(args.preset, overrides, device=args.device)
        torch.manual_seed(0)
        supernet = build_supernet(config.space, 10, config.compute).to(args.device)
    if args.compute:
        changes = dict(item.split("=", 1) for item in args.compute.split(","))
        compute = dataclasses.replace(
            config.compute, **{k: parse_literal(v) for k, v in changes.items()}
        )
        compute.validate()
        rebuilt = build_supernet(config.space, supernet.num_classes, compute).to(args.device)
        rebuilt.load_state_dict(supernet.state_dict())
        config, supernet = dataclasses.replace(config, compute=compute), rebuilt
    per_split = config.data.images_per_split or 25_000
    data = make_search_data(
        config.data, random_arrays(per_split), 0, config.train.batch_size, args.device
    )
    context = SelectionContext(
        data=data, seed=0, device=torch.device(args.device), train_settings=config.train
    )
    methods = parse_method_list(args.methods, SELECTION_DEFAULTS.get(config.preset, {}))
    print(
        f"preset={config.preset} C={config.space.channels} N={config.space.cells_per_stage} "
        f"res={config.data.resolution} images/split={per_split} batch={config.train.batch_size} "
        f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__} "
        f"python={platform.python_version()} checkpoint={args.checkpoint or 'untrained'}\n"
        f"compute: {dataclasses.asdict(config.compute)}"
    )
    header = f"{'method':28} {'seconds':>8} {'forwards':>9} {'backwards':>9} {'ft steps':>8}"
    print(header + "  cell")
    for method in methods:
        if method.upper_bound:
            continue  # the oracle reads a table; there is nothing to time
        selection = method.select(supernet, context)
        cost = selection.cost
        print(
            f"{selection.method:28} {cost.wall_seconds:8.2f} {cost.forward_passes:9d} "
            f"{cost.backward_passes:9d} {cost.finetune_steps:8d}  {selection.arch}"
        )


if __name__ == "__main__":
    main()
