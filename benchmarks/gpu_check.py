"""The GPU check: both side-by-sides and a one-epoch run of every compute setting on CUDA.

One command, a few minutes on a datacenter GPU; prints figures and ends non-zero if a
compute setting failed to run:

    python benchmarks/gpu_check.py [--device cuda] [--images 4096] [--skip-side-by-side]

1. ``official_side_by_side.py`` (NAS-Bench-201: xautodl's search model against the
   harness's supernet in each compute setting, ``proxy`` and ``paper`` shapes),
   ``darts_side_by_side.py`` (the DARTS space, C=8 16x16 and C=16 32x32) and
   ``retrain_step.py`` (``harness retrain``'s network at the ``robustdarts`` and ``paper``
   shapes, default memory format and channels-last), on the device.
2. One supernet epoch of the ``paper`` preset in every NB201 compute setting (the
   reference cell; fused; fused + channels-last; + bf16 autocast; + ``torch.compile``) and
   of ``darts-paper`` in every DARTS one (fused, reference), on random images of the
   preset's resolution (``--images`` per split: the device machine has no data sets), with
   a checkpoint written to a temporary store: seconds, final training loss, and whether
   every parameter stayed finite.

Needs xautodl for the official models (``pip install --no-deps xautodl``; without it the
side-by-sides time the harness alone).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from selection_cost import random_arrays  # a sibling script: benchmarks/ is on the path

from harness.checkpoints import load_supernet
from harness.experiment import build_config
from harness.training import train_supernet

HERE = Path(__file__).resolve().parent
NB201_SETTINGS = {
    "reference": {"cell": "reference", "channels_last": False},
    "fused": {"cell": "fused", "channels_last": False},
    "fused+cl": {"cell": "fused", "channels_last": True},
    "fused+cl+bf16": {"cell": "fused", "channels_last": True, "autocast": "bf16"},
    "fused+cl+compile": {"cell": "fused", "channels_last": True, "compile": True},
}
DARTS_SETTINGS = {"fused": {"cell": "fused"}, "reference": {"cell": "reference"}}


def one_epoch(preset: str, compute: dict, images: int, device: str, store: Path) -> str:
    """Train one epoch of ``preset`` with ``compute``; a line saying how it went."""
    overrides = {
        "train": {"epochs": 1, "checkpoint_every": 1},
        "data": {"images_per_split": images},
        "compute": compute,
    }
    config = build_config(preset, overrides, device=device)
    arrays = random_arrays(images, config.data.resolution)
    began = time.perf_counter()
    outcome = train_supernet(config, 0, store, arrays, progress=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    path = outcome.run_dir / "checkpoints" / f"epoch_{outcome.checkpoint_epochs[-1]:04d}.pt"
    supernet = load_supernet(path, "cpu").supernet
    finite = all(torch.isfinite(p).all() for p in supernet.parameters())
    if not finite:
        raise FloatingPointError("a parameter is not finite after one epoch")
    return f"{seconds:8.1f} s  checkpoint {path.name} written, every parameter finite"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", type=int, default=4096, help="random images per split")
    parser.add_argument("--skip-side-by-side", action="store_true")
    parser.add_argument("--only", default=None,
                        help="comma-separated setting labels to train (default: all)")  # fmt: skip
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device here: this check is for a GPU machine (--device cpu to try it)")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device={args.device} ({name}) torch={torch.__version__} images/split={args.images}")
    if not args.skip_side_by_side:
        for command in (
            ["official_side_by_side.py", "--presets", "proxy,paper", "--variants",
             ",".join(NB201_SETTINGS), "--rounds", "3", "--steps", "3"],
            ["darts_side_by_side.py", "--shape", "8x16,16x32", "--rounds", "3", "--steps", "2"],
            ["retrain_step.py", "--protocols", "robustdarts,paper", "--rounds", "3"],
        ):  # fmt: skip
            print(f"\n$ python benchmarks/{' '.join(command)} --device {args.device}", flush=True)
            subprocess.run([sys.executable, str(HERE / command[0]), *command[1:],
                            "--device", args.device], check=False)  # fmt: skip
    failed = []
    with tempfile.TemporaryDirectory() as store:
        for preset, settings in (("paper", NB201_SETTINGS), ("darts-paper", DARTS_SETTINGS)):
            print(f"\none epoch of {preset} on {args.images} random images per split:")
            for label, compute in settings.items():
                if args.only and label not in args.only.split(","):
                    continue
                try:
                    line = one_epoch(preset, compute, args.images, args.device, Path(store))
                except Exception as error:  # report every setting, then fail at the end
                    failed.append(f"{preset} {label}")
                    line = f"FAILED: {type(error).__name__}: {error}"
                print(f"  {label:18} {line}", flush=True)
    if failed:
        sys.exit(f"compute settings that did not run: {', '.join(failed)}")


if __name__ == "__main__":
    main()
