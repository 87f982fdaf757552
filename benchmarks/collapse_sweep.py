"""Which CPU-sized settings make DARTS supernets collapse like the paper protocol's?

Trains supernets (through the harness's own store, so a repeated sweep trains nothing)
for each candidate setting and seed, and reads only supernet-side quantities from each
run's ``metrics.csv``: magnitude's (argmax-alpha) cell per epoch, its parameter-free ops
(none, skip_connect, avg_pool_3x3) and NAS-Bench-201 accuracy, skip_connect's softmax
weight, validation accuracy and seconds per epoch. "Collapsed" means magnitude's cell has
at least four parameter-free ops; the table gives the epoch from which it stays so. No
selection method is run: a preset chosen by how darts-pt or ostr fare on it would make
the benchmark worthless.

    python benchmarks/collapse_sweep.py --seeds 0-4 --jobs 2 --results sweep-results \\
        --settings base,n2-e30,n3-e24,n5-e16 [--csv sweep.csv]

Each setting is a named set of overrides of BASE (see SETTINGS), or
``name:section.field=value;...`` for one of your own. Seconds per epoch are only
comparable between settings measured on an otherwise quiet machine with the same
``--jobs`` and threads.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import pandas as pd
import torch
from joblib import Parallel, delayed

from harness.cli.options import parse_seeds
from harness.experiment import build_config
from harness.ground_truth import load_ground_truth
from harness.literals import parse_literal
from harness.locations import resolve_data_location
from harness.training import train_supernet
from spaces.nb201 import EDGE_NAMES, PARAMETER_FREE_OPS, decode
from spaces.nb201.ops import OP_NAMES

# The base every setting overrides: the proxy preset as it was when this sweep was first
# run (spelled out, so that redefining the preset does not change what a name means).
BASE: dict[str, dict] = {
    "space": {"channels": 8, "cells_per_stage": 1},
    "data": {"resolution": 16, "images_per_split": 3000},
    "train": {"epochs": 20, "batch_size": 64, "checkpoint_every": 5},
}
# Candidate settings: overrides of BASE. Levers: depth (N), steps, images per split,
# input resolution (the paper's 32x32) and width (the paper's C=16).
SETTINGS: dict[str, dict[str, dict]] = {
    "base": {},
    "n2-e30": {"space": {"cells_per_stage": 2}, "train": {"epochs": 30}},
    "n3-e24": {"space": {"cells_per_stage": 3}, "train": {"epochs": 24}},
    "n5-e16": {"space": {"cells_per_stage": 5}, "train": {"epochs": 16}},
    "n2-10k-e12": {
        "space": {"cells_per_stage": 2},
        "data": {"images_per_split": 10000},
        "train": {"epochs": 12},
    },
    "r32-e16": {"data": {"resolution": 32}, "train": {"epochs": 16}},
    "c16-n2-e24": {"space": {"channels": 16, "cells_per_stage": 2}, "train": {"epochs": 24}},
}
COLLAPSED = 4  # parameter-free ops in magnitude's cell that count as collapse


def parse_setting(spec: str) -> tuple[str, dict[str, dict]]:
    if ":" not in spec:
        if spec not in SETTINGS:
            raise SystemExit(f"unknown setting {spec!r}; named ones: {', '.join(SETTINGS)}")
        return spec, SETTINGS[spec]
    name, _, body = spec.partition(":")
    overrides: dict[str, dict] = {}
    for item in filter(None, body.split(";")):
        field, _, raw = item.partition("=")
        section, _, key = field.partition(".")
        overrides.setdefault(section, {})[key] = parse_literal(raw)
    return name, overrides


def train_one(config, seed, results, location, threads):
    torch.set_num_threads(threads)
    outcome = train_supernet(config, seed, results, location.load(), progress=False)
    return outcome.run_key


def parameter_free(arch: str) -> int:
    return sum(OP_NAMES[k] in PARAMETER_FREE_OPS for k in decode(arch))


def summarise(name: str, seed: int, metrics: pd.DataFrame, truth) -> dict:
    counts = metrics["argmax_arch"].map(parameter_free)
    # Magnitude's cell (argmax alpha) is the supernet's own read-out, so its ground-truth
    # accuracy is a supernet-side quantity: the degeneration the preset must show.
    accuracy = metrics["argmax_arch"].map(lambda arch: truth.accuracy(arch))
    skip = [f"w[{edge}][skip_connect]" for edge in EDGE_NAMES]
    # From which epoch on the cell stays collapsed (early argmaxes are read off noise).
    stays = (counts >= COLLAPSED)[::-1].cummin()[::-1]
    first_collapsed = int(metrics.loc[stays, "epoch"].iloc[0]) if stays.any() else None
    final = metrics.iloc[-1]
    return {
        "setting": name,
        "seed": seed,
        "epochs": int(final["epoch"]),
        f">= {COLLAPSED} param-free from epoch": first_collapsed,
        "param-free at end": int(counts.iloc[-1]),
        "skip at end": sum(OP_NAMES[k] == "skip_connect" for k in decode(final["argmax_arch"])),
        "mean skip weight at end": float(final[skip].mean()),
        "valid acc at end": float(final["valid_acc"]),
        "argmax C10 best": float(accuracy.max()),
        "argmax C10 at end": float(accuracy.iloc[-1]),
        "s/epoch": float(metrics["seconds"].mean()),
        "cell at end": final["argmax_arch"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="base,n2-e30,n3-e24,n5-e16")
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--results", default="sweep-results")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--data", help="CIFAR-10 image folder (default: as harness train)")
    parser.add_argument("--ground-truth", help="NAS-Bench-201 table (default: as harness run)")
    parser.add_argument("--csv", help="also write the per-seed table here")
    args = parser.parse_args()
    settings = [parse_setting(s) for s in args.settings.split(",")]
    seeds = parse_seeds(args.seeds)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    location = resolve_data_location(args.data)
    truth = load_ground_truth(args.ground_truth)
    results = Path(args.results)
    configs = {
        name: build_config("proxy", {k: {**BASE.get(k, {}), **overrides.get(k, {})}
                                     for k in {*BASE, *overrides}})
        for name, overrides in settings
    }  # fmt: skip
    print(
        f"torch={torch.__version__} python={platform.python_version()} jobs={args.jobs} "
        f"threads/job={threads} seeds={seeds} results={results}"
    )
    for name, overrides in settings:
        print(f"  {name}: base + {overrides}")
    jobs = [(name, seed) for name in configs for seed in seeds]
    keys = Parallel(n_jobs=args.jobs, backend="loky")(
        delayed(train_one)(configs[name], seed, results, location, threads) for name, seed in jobs
    )
    rows = [
        summarise(name, seed, pd.read_csv(results / "runs" / key / "metrics.csv"), truth)
        for (name, seed), key in zip(jobs, keys, strict=True)
    ]
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(table.drop(columns="cell at end").to_string(index=False))
    by_setting = table.groupby("setting", sort=False).agg(
        seeds=("seed", "count"),
        collapsed=("param-free at end", lambda s: int((s >= COLLAPSED).sum())),
        param_free_mean=("param-free at end", "mean"),
        skip_mean=("skip at end", "mean"),
        c10_best=("argmax C10 best", "mean"),
        c10_end=("argmax C10 at end", "mean"),
        s_per_epoch=("s/epoch", "mean"),
    )
    print(by_setting.to_string())
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
