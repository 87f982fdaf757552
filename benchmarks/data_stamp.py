"""What checking a CIFAR-10 source for changes costs on every data load.

The decoded cache is reused only while every source file keeps its size and modification
time (`harness.data.source_signature`); this prints how long that check and a cached load
take for one source, with the settings that produced the figures.

    python benchmarks/data_stamp.py --data ../shared/data/cifar10-jpeg --repeats 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

from harness.data import load_cifar10, source_signature
from harness.locations import resolve_cache_dir, resolve_data_location


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="CIFAR-10 location (default: the offline folder)")
    parser.add_argument("--data-source", default="folder", choices=("folder", "torchvision"))
    parser.add_argument("--cache", help="decoded-data cache folder (default: the harness's)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    location = resolve_data_location(args.data, args.data_source, args.cache)
    cache = resolve_cache_dir(args.cache)
    load_cifar10(location.source, location.root, cache)  # make the cache (and its stamp)
    stamp, load = [], []
    for _ in range(args.repeats):
        began = time.perf_counter()
        source_signature(location.source, location.root)
        stamp.append(time.perf_counter() - began)
        began = time.perf_counter()
        load_cifar10(location.source, location.root, cache)
        load.append(time.perf_counter() - began)
    files = sum(len(names) for _, _, names in os.walk(location.root))
    print(f"source {location.source} at {location.root} ({files} files); cache {cache}")
    print(f"python {platform.python_version()}, torch {torch.__version__}, "
          f"{os.cpu_count()} cores, {args.repeats} repeats (median)")  # fmt: skip
    print(f"source check: {statistics.median(stamp):.3f} s")
    print(f"cached load including the check: {statistics.median(load):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
