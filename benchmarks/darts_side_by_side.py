"""The DARTS space: xautodl's search model beside the harness's supernet, reference and fused.

Runs, in one process on the same random data, xautodl's ``NASNetworkDARTS`` (the DARTS
CNN space's search model in the NAS-Bench-201 authors' package; N=2: 6 cells, reductions
at cells 2 and 4) and the harness's DARTS supernet at 6 cells with the reference cell (op
by op) and with the fused cell (:mod:`spaces.darts.fused`), interleaved round by round so
that drifts of the machine hit all of them alike. Two measurements per shape:

* a DARTS first-order step: an alpha step (Adam, validation batch) then a weight step
  (SGD with momentum and weight decay, gradient norm clipped at 5, training batch), with
  DARTS's hyper-parameters (the harness's ``TrainSettings`` defaults); xautodl's model runs
  a loop written here, the harness its ``darts`` algorithm;
* a scoring pass: one forward in evaluation mode without gradients (what selection rules
  that score the supernet do).

Both use affine-free BatchNorm with running statistics in their cells. The models differ
a little beyond the code (xautodl's pools have no BatchNorm after them, its head adds
BatchNorm + ReLU; see :mod:`spaces.darts.official`), so the ratios compare code on the
same job, not identical computations.

    pip install --no-deps xautodl     # its pinned numpy does not build everywhere
    python benchmarks/darts_side_by_side.py [--shape 8x16,16x32] [--rounds 5] [--steps 2]

Prints seconds per step and per scoring pass (median over rounds) and each one's ratio to
xautodl's (above 1: faster than xautodl) and to the reference cell. Without xautodl it says
so and measures the harness alone.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from harness.config import TrainSettings
from methods.supernet import get_algorithm
from spaces.darts.search import DartsSupernet
from spaces.darts.space import DartsSpace

LAYERS, CELLS_PER_STAGE = 6, 2  # 6 cells at N=2: reductions at cells 2 and 4
# The harness's supernet in each compute setting timed (--variants picks some).
VARIANTS = {
    "reference": {"cell_impl": "reference"},
    "fused": {"cell_impl": "fused"},
}


def official_model(channels: int):
    try:
        from xautodl.models.cell_operations import DARTS_SPACE
        from xautodl.models.cell_searchs.search_model_darts_nasnet import NASNetworkDARTS
    except ImportError:
        return None
    # C, N, steps, multiplier, stem multiplier, classes, ops, affine, track_running_stats
    return NASNetworkDARTS(channels, CELLS_PER_STAGE, 4, 4, 3, 10, DARTS_SPACE, False, True)


class OfficialStep:
    """One first-order DARTS iteration on xautodl's model: alpha step, then weight step
    (clipped over the weights), DARTS's optimisers and hyper-parameters."""

    def __init__(self, model, train: TrainSettings) -> None:
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
        self.alphas.zero_grad()
        _, logits = self.model(alpha_batch[0])
        F.cross_entropy(logits, alpha_batch[1]).backward()
        self.alphas.step()
        self.weights.zero_grad()
        _, logits = self.model(weight_batch[0])
        F.cross_entropy(logits, weight_batch[1]).backward()
        torch.nn.utils.clip_grad_norm_(self.model.get_weights(), self.clip)
        self.weights.step()


def synchronized(step):
    """``step`` that returns once a GPU has done its work (timing)."""

    def run(weight_batch, alpha_batch) -> None:
        step(weight_batch, alpha_batch)
        _synchronize(weight_batch[0].device)

    return run


def harness_supernet(channels: int, variant: str) -> DartsSupernet:
    torch.manual_seed(0)  # the same weights in every variant
    return DartsSupernet(DartsSpace("darts"), channels, LAYERS, 10, **VARIANTS[variant])


def scoring_pass(model):
    def run(images: torch.Tensor) -> None:
        with torch.no_grad():
            model(images)
        _synchronize(images.device)

    model.eval()
    return run


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """``"8x16,16x32"``: (channels, resolution) pairs."""
    shapes = []
    for part in text.split(","):
        channels, _, size = part.strip().partition("x")
        shapes.append((int(channels), int(size)))
    return shapes


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(runners: dict, inputs: list, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of every runner, per round; runners interleaved within a round."""
    for run in runners.values():  # warm-up
        run(*inputs[0])
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            began = time.perf_counter()
            for item in inputs:
                run(*item)
            times[name].append((time.perf_counter() - began) / len(inputs))
    return times


def report(title: str, times: dict[str, list[float]], unit: str) -> None:
    print(f"  {title}")
    medians = {name: statistics.median(values) for name, values in times.items()}
    official, reference = medians.get("xautodl"), medians.get("reference")
    for name, median in medians.items():
        versus = f"{official / median:6.2f}x" if official else "     -"
        versus_ref = f"{reference / median:6.2f}x" if reference else "     -"
        print(
            f"    {name:10} {median:8.4f} s/{unit}  (min {min(times[name]):.4f})  "
            f"vs xautodl {versus}  vs reference {versus_ref}"
        )


def measure(channels: int, size: int, batch: int, rounds: int, steps: int,
            variants: list[str], device: str = "cpu") -> None:  # fmt: skip
    generator = torch.Generator().manual_seed(0)

    def one():
        images = torch.randn(batch, 3, size, size, generator=generator)
        return images.to(device), torch.randint(0, 10, (batch,), generator=generator).to(device)

    pairs = [(one(), one()) for _ in range(steps)]
    train = TrainSettings()
    supernets = {v: harness_supernet(channels, v).to(device) for v in variants}
    with torch.no_grad():  # every variant computes the reference's logits
        probe = pairs[0][0][0][:8]
        expected = harness_supernet(channels, "reference").to(device)(probe)
        difference = max((net(probe) - expected).abs().max().item() for net in supernets.values())
    torch.manual_seed(0)
    official = official_model(channels)
    steppers = {}
    if official is not None:
        official = official.to(device)
        steppers["xautodl"] = synchronized(OfficialStep(official.train(), train))
    for variant, net in supernets.items():
        steppers[variant] = synchronized(get_algorithm("darts")(net.train(), train, {}).step)
    print(f"C={channels} {size}x{size} batch={batch} cells={LAYERS} "
          f"(variants vs reference: max |logit difference| {difference:.1e})")  # fmt: skip
    report("DARTS first-order step (alpha step + weight step)",
           timed(steppers, pairs, rounds), "step")  # fmt: skip
    scorers = {}
    if official is not None:
        scorers["xautodl"] = scoring_pass(official)
    for variant, net in supernets.items():
        scorers[variant] = scoring_pass(net)
    images = [(weight_batch[0],) for weight_batch, _ in pairs]
    report("scoring pass (eval, no grad)", timed(scorers, images, rounds), "pass")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="8x16,16x32",
                        help="CxS pairs: C channels at SxS pixels, comma-separated")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="steps per round and runner")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--variants", default="reference,fused",
                        help=f"harness variants to time, of {', '.join(VARIANTS)}")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own choice)")  # fmt: skip
    args = parser.parse_args()
    try:
        shapes = parse_shapes(args.shape)
    except ValueError:
        parser.error(f"--shape takes CxS pairs such as 8x16,16x32, not {args.shape!r}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        parser.error(f"--variants takes some of {', '.join(VARIANTS)}, not {args.variants!r}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"torch={torch.__version__} threads={torch.get_num_threads()} "
        f"cpu-capability={torch.backends.cpu.get_cpu_capability()} "
        f"python={platform.python_version()} cpu={platform.processor() or platform.machine()} "
        f"device={args.device} rounds={args.rounds} steps/round={args.steps} (median of rounds)"
    )
    if official_model(4) is None:
        print("xautodl is not installed (pip install --no-deps xautodl): harness only")
    for channels, size in shapes:
        measure(channels, size, args.batch, args.rounds, args.steps, variants, args.device)


if __name__ == "__main__":
    main()
