"""One DARTS step: the official NAS-Bench-201 search model beside the harness's supernet.

Runs, in one process on the same random data, xautodl's ``TinyNetworkDarts`` (the search
model of the NAS-Bench-201 authors' DARTS-V1 code) and the harness's supernet in each
compute setting asked for, interleaved round by round so that drifts of the machine hit
all of them alike. A step is what DARTS first order does per batch pair: a weight step (SGD
with momentum, weight decay and gradient clipping, training batch) and an alpha step
(Adam, validation batch); each side runs its own code for it (the harness: its ``darts``
algorithm). Both models use affine-free BatchNorm with
running statistics in their cells, as the harness's presets do.

    pip install --no-deps xautodl     # its pinned numpy does not build everywhere
    python benchmarks/official_side_by_side.py [--presets proxy,paper] [--rounds 5]

Prints seconds per step (median over rounds) and the official/harness ratio per shape.
Without xautodl it says so and measures the harness alone.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from harness.checkpoints import build_supernet
from harness.config import ComputeSettings
from harness.experiment import build_config
from methods.supernet import get_algorithm
from spaces.nb201 import OP_NAMES

VARIANTS = {
    "reference": ComputeSettings(cell="reference", channels_last=False),
    "fused": ComputeSettings(cell="fused", channels_last=False),
    "fused+cl": ComputeSettings(cell="fused", channels_last=True),
    "fused+cl+bf16": ComputeSettings(cell="fused", channels_last=True, autocast="bf16"),
    "fused+cl+compile": ComputeSettings(cell="fused", channels_last=True, compile=True),
}


def official_model(channels: int, cells: int):
    try:
        from xautodl.models.cell_searchs.search_model_darts import TinyNetworkDarts
    except ImportError:
        return None
    return TinyNetworkDarts(channels, cells, 4, 10, list(OP_NAMES), False, True)


class OfficialStep:
    """One iteration of the official DARTS-V1 search loop (NAS-Bench-201 authors' code):
    weight step (gradient clipped over all parameters), then alpha step."""

    def __init__(self, model, train) -> None:
        self.model = model
        self.weights = torch.optim.SGD(
            model.get_weights(), train.lr, momentum=train.momentum, weight_decay=train.weight_decay
        )
        self.alphas = torch.optim.Adam(
            model.get_alphas(), train.arch_lr, betas=train.arch_betas,
            weight_decay=train.arch_weight_decay,
        )  # fmt: skip
        self.clip = train.grad_clip

    def __call__(self, weight_batch, alpha_batch) -> None:
        self.weights.zero_grad()
        _, logits = self.model(weight_batch[0])
        F.cross_entropy(logits, weight_batch[1]).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.weights.step()
        self.alphas.zero_grad()
        _, logits = self.model(alpha_batch[0])
        F.cross_entropy(logits, alpha_batch[1]).backward()
        self.alphas.step()


def harness_step(preset: str, compute: ComputeSettings, device: str):
    config = build_config(preset, device=device)
    torch.manual_seed(0)
    supernet = build_supernet(config.space, 10, compute).to(device).train()
    trainer = get_algorithm("darts")(supernet, config.train, {})
    return trainer.step


def measure(preset: str, variants: list[str], rounds: int, steps: int, device: str) -> None:
    config = build_config(preset, device=device)
    size, batch = config.data.resolution, config.train.batch_size
    generator = torch.Generator().manual_seed(0)

    def batch_pair():
        def one():
            images = torch.randn(batch, 3, size, size, generator=generator)
            return images.to(device), torch.randint(0, 10, (batch,), generator=generator).to(device)

        return one(), one()

    runners = {}
    torch.manual_seed(0)
    official = official_model(config.space.channels, config.space.cells_per_stage)
    if official is not None:
        runners["official"] = OfficialStep(official.to(device).train(), config.train)
    for name in variants:
        runners[name] = harness_step(preset, VARIANTS[name], device)
    pairs = [batch_pair() for _ in range(steps)]
    for run in runners.values():  # warm-up (and, with compile, compilation)
        run(*pairs[0])
        run(*pairs[0])
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            began = time.perf_counter()
            for pair in pairs:
                run(*pair)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - began) / steps)
    shape = (
        f"{preset}: C={config.space.channels} N={config.space.cells_per_stage} "
        f"{size}x{size} batch={batch}"
    )
    print(shape)
    base = statistics.median(times["official"]) if "official" in times else None
    for name, values in times.items():
        median = statistics.median(values)
        ratio = f"{base / median:6.2f}x" if base else "     -"
        print(f"  {name:18} {median:8.4f} s/step  (min {min(values):.4f})  vs official {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="proxy,paper")
    parser.add_argument(
        "--variants",
        default="reference,fused,fused+cl",
        help=f"harness compute settings to measure: {', '.join(VARIANTS)}",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="steps per round and runner")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; use {', '.join(VARIANTS)}")
    print(
        f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
        f"python={platform.python_version()} cpu={platform.processor() or platform.machine()} "
        f"rounds={args.rounds} steps/round={args.steps} (median of rounds)"
    )
    if official_model(4, 1) is None:
        print("xautodl is not installed (pip install --no-deps xautodl): harness only")
    for preset in args.presets.split(","):
        measure(preset, variants, args.rounds, args.steps, args.device)


if __name__ == "__main__":
    main()
