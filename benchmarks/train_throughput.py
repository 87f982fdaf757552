"""Supernet training throughput: images/s for one weight step + one alpha step.

Prints the figure for each preset shape (proxy and paper by default) and each
algorithm on the chosen device, with the settings that produced it. Data are
random tensors of the preset's shape: this measures compute, not data loading.

    python benchmarks/train_throughput.py [--device cpu] [--steps 5] [--presets proxy,paper]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from harness.checkpoints import build_supernet
from harness.data import Batches
from harness.experiment import build_config
from methods.supernet import ALGORITHMS, get_algorithm


def measure(preset: str, algorithm: str, device: str, steps: int, warmup: int) -> dict:
    config = build_config(preset, algorithm=algorithm, device=device)
    torch.manual_seed(0)
    supernet = build_supernet(config.space, num_classes=10, compute=config.compute).to(device)
    trainer = get_algorithm(algorithm)(supernet, config.train, config.algorithm_options)
    size, batch = config.data.resolution, config.train.batch_size

    def batch_pair():
        make = lambda: (  # noqa: E731
            torch.randn(batch, 3, size, size, device=device),
            torch.randint(0, 10, (batch,), device=device),
        )
        return make(), make()

    # Measure the algorithm in its last epoch: Lambda-DARTS at full lambda, OPP-DARTS with
    # every op admitted (its early stages are cheaper).
    images = torch.randint(0, 256, (4 * batch, 3, size, size), dtype=torch.uint8)
    stream = Batches(images, torch.randint(0, 10, (4 * batch,)), batch, 0, False, device)
    trainer.begin_epoch(config.train.epochs - 1, stream, stream)
    supernet.train()
    for _ in range(warmup):
        trainer.step(*batch_pair())
    pairs = [batch_pair() for _ in range(steps)]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    began = time.perf_counter()
    for weight_batch, alpha_batch in pairs:
        trainer.step(weight_batch, alpha_batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - began) / steps
    per_split = config.data.images_per_split or 25_000
    return {
        "preset": preset,
        "algorithm": algorithm,
        "C": config.space.channels,
        "N": config.space.cells_per_stage,
        "res": size,
        "batch": batch,
        "s/step": seconds,
        "img/s": batch / seconds,
        "est. s/epoch": seconds * (per_split // batch),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--presets", default="proxy,paper")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS))
    args = parser.parse_args()
    print(
        f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
        f"python={platform.python_version()} cpu={platform.processor() or platform.machine()} "
        f"steps={args.steps} warmup={args.warmup}"
    )
    header = f"{'preset':7} {'algorithm':13} {'C':>3} {'N':>2} {'res':>3} {'batch':>5} "
    print(header + f"{'s/step':>8} {'img/s':>8} {'est. s/epoch':>12}")
    for preset in args.presets.split(","):
        for algorithm in args.algorithms.split(","):
            r = measure(preset, algorithm, args.device, args.steps, args.warmup)
            print(
                f"{r['preset']:7} {r['algorithm']:13} {r['C']:>3} {r['N']:>2} {r['res']:>3} "
                f"{r['batch']:>5} {r['s/step']:8.3f} {r['img/s']:8.1f} {r['est. s/epoch']:12.1f}"
            )


if __name__ == "__main__":
    main()
