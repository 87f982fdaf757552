"""Seconds and forward passes per selection, for every method, at a preset's shape.

Trains nothing: it builds a supernet of the preset's shape with the given seed (or
loads --checkpoint) and random data of the preset's size, then runs each method once.

    python benchmarks/selection_cost.py [--preset proxy] [--methods all] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import platform

import torch

from harness.checkpoints import build_supernet, load_supernet
from harness.data import CIFAR10Arrays
from harness.presets import SELECTION_DEFAULTS, build_config
from harness.search_data import make_search_data
from methods.selection import SelectionContext, parse_method_list


def random_arrays(per_split: int, size: int = 32) -> CIFAR10Arrays:
    generator = torch.Generator().manual_seed(0)
    count = 2 * per_split
    return CIFAR10Arrays(
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
    parser.add_argument("--methods", default="all")
    parser.add_argument("--checkpoint")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.checkpoint:
        loaded = load_supernet(args.checkpoint, args.device)
        config, supernet = loaded.config, loaded.supernet
    else:
        config = build_config(args.preset, device=args.device)
        torch.manual_seed(0)
        supernet = build_supernet(config.space, 10).to(args.device)
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
        f"python={platform.python_version()} checkpoint={args.checkpoint or 'untrained'}"
    )
    header = f"{'method':28} {'seconds':>8} {'forwards':>9} {'backwards':>9} {'ft steps':>8}"
    print(header + "  settings")
    for method in methods:
        if method.upper_bound:
            continue  # the oracle reads a table; there is nothing to time
        selection = method.select(supernet, context)
        cost = selection.cost
        print(
            f"{selection.method:28} {cost.wall_seconds:8.2f} {cost.forward_passes:9d} "
            f"{cost.backward_passes:9d} {cost.finetune_steps:8d}  {selection.settings}"
        )


if __name__ == "__main__":
    main()
