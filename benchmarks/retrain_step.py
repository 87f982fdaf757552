"""`harness retrain`'s network: a training step and a test pass, default memory format
beside channels-last.

Builds a genotype's evaluation network (DARTS-V2 unless --genotype) as `harness retrain`
does (the space's ``build_network`` with a retrain protocol's settings), once with
``retrain.channels_last=false`` and once with the default ``true``, and times, in one
process on the same random images, interleaved round by round:

* a training step as ``harness/retraining.py`` runs it: forward in training mode with the
  protocol's drop-path (at its final value) and auxiliary head, cross-entropy (+ weight x
  the auxiliary loss), backward, gradient norm clipped, SGD with momentum and weight decay;
  a batch of the protocol's size at its resolution;
* a test pass: a forward of 256 images in evaluation mode without gradients.

    python benchmarks/retrain_step.py [--protocols proxy,robustdarts,paper] [--rounds 3]
                                      [--device cuda]

Prints seconds per step and per test pass (median over rounds, and every round) and the
channels-last speed-up (above 1: faster).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from harness.retrain_settings import PROTOCOLS, RetrainSettings
from spaces.darts.genotype import DARTS_V2, genotype_to_choices, parse_genotype
from spaces.darts.space import DartsSpace

TEST_BATCH = 256  # the retraining's test loader


class Timed:
    """One variant's network, optimiser and data, timed step by step."""

    def __init__(self, space: DartsSpace, choices, settings: RetrainSettings, seed: int,
                 device: str) -> None:  # fmt: skip
        torch.manual_seed(seed)
        self.settings = settings
        self.net = space.build_network(choices, settings, 10).to(device)
        self.net.drop_prob = settings.drop_path
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=settings.lr,
                                         momentum=settings.momentum,
                                         weight_decay=settings.weight_decay)  # fmt: skip

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.net.train()
        logits, aux = self.net(x)
        loss = F.cross_entropy(logits, y)
        if aux is not None:
            loss = loss + self.settings.auxiliary_weight * F.cross_entropy(aux, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.settings.grad_clip)
        self.optimizer.step()

    @torch.no_grad()
    def test_pass(self, x: torch.Tensor) -> None:
        self.net.eval()
        self.net(x)


def seconds(work, repeats: int, device: str) -> float:
    work()  # warm: first-call allocations, oneDNN primitive creation, cuDNN's choices
    synchronize(device)
    began = time.perf_counter()
    for _ in range(repeats):
        work()
    synchronize(device)
    return (time.perf_counter() - began) / repeats


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def measure(protocol: str, choices, args) -> None:
    space = DartsSpace()
    base = PROTOCOLS[protocol]
    variants = {
        name: Timed(space, choices, dataclasses.replace(base, channels_last=last), 0, args.device)
        for name, last in (("default format", False), ("channels-last", True))
    }
    size = base.resolution
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(base.batch_size, 3, size, size, generator=generator).to(args.device)
    y = torch.randint(0, 10, (base.batch_size,), generator=generator).to(args.device)
    test_x = torch.randn(TEST_BATCH, 3, size, size, generator=generator).to(args.device)
    steps = {name: [] for name in variants}
    tests = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, timed in variants.items():
            steps[name].append(seconds(lambda t=timed: t.step(x, y), args.steps, args.device))
            tests[name].append(seconds(lambda t=timed: t.test_pass(test_x), args.steps,
                                       args.device))  # fmt: skip
    print(f"\n{protocol}: {base.layers} cells, C={base.channels}, {size}x{size}, batch "
          f"{base.batch_size}, auxiliary head {'on' if base.auxiliary_weight else 'off'}, "
          f"drop-path {base.drop_path}")  # fmt: skip
    print(f"{'':16} {'step s':>8} {'speed-up':>8} {'test s':>8} {'speed-up':>8}  rounds (step)")
    step_base = statistics.median(steps["default format"])
    test_base = statistics.median(tests["default format"])
    for name in variants:
        step, test = statistics.median(steps[name]), statistics.median(tests[name])
        rounds = " ".join(f"{t:.3f}" for t in steps[name])
        print(f"{name:16} {step:8.3f} {step_base / step:7.2f}x {test:8.3f} "
              f"{test_base / test:7.2f}x  {rounds}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", default="proxy,robustdarts",
                        help="retrain protocols whose shape to time (default: proxy,robustdarts; "
                        "paper takes about 10 s a step on 2 cores)")  # fmt: skip
    parser.add_argument("--genotype", help="a DARTS genotype (default: DARTS-V2)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per round")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    genotype = parse_genotype(args.genotype) if args.genotype else DARTS_V2
    choices = genotype_to_choices(genotype, DartsSpace().op_names)
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else (
        platform.processor() or platform.machine())
    print(f"torch {torch.__version__}, {args.device} ({where}), "
          f"{args.threads} threads, genotype {'DARTS-V2' if not args.genotype else args.genotype}, "
          f"{args.rounds} rounds of {args.steps} steps (after one warm step)")  # fmt: skip
    for protocol in args.protocols.split(","):
        if protocol not in PROTOCOLS:
            parser.error(f"unknown protocol {protocol!r}; available: {', '.join(PROTOCOLS)}")
        measure(protocol, choices, args)


if __name__ == "__main__":
    main()
