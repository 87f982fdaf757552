"""Where the time of a supernet step and of a scoring pass goes, by kind of kernel.

Profiles (``torch.profiler``, CPU self time) one DARTS first-order step (weight step +
alpha step, as ``official_side_by_side.py`` times it) and one scoring forward pass
(inference mode, batch statistics, as ``ostr`` and ``darts-pt`` measure candidates) of
the harness's supernet at a preset's shape, on random data, and prints the seconds per
step or pass in each kind of kernel:

    python benchmarks/step_profile.py [--preset proxy] [--compute cell=fused,channels_last=true]

"convolution" is the convolution kernels alone (forward, or forward and backward):
the part no regrouping of the cell's work removes, which bounds how fast a step can get
with these kernels. Profiling adds a little overhead to every kernel call; the totals
are read as shares, the seconds per step as ``official_side_by_side.py`` prints them.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import platform

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from harness.checkpoints import build_supernet
from harness.experiment import build_config
from harness.literals import parse_literal
from methods.selection.scoring import batch_statistics_only
from methods.supernet import get_algorithm

KINDS = (
    ("convolution", ("convolution_backward", "mkldnn_convolution", "slow_conv", "conv_depthwise")),
    ("batch norm", ("native_batch_norm", "batch_norm_backward")),
    ("elementwise", ("aten::add", "aten::mul", "aten::sub", "aten::div", "clamp_min",
                     "threshold_backward", "aten::relu", "aten::sum", "avg_pool2d")),
    ("copies", ("aten::cat", "aten::copy_", "aten::clone", "aten::index", "repeat_interleave",
                "aten::fill_", "aten::zero_")),
)  # fmt: skip


def kind_of(name: str) -> str:
    for kind, patterns in KINDS:
        if any(pattern in name for pattern in patterns):
            return kind
    return "other (dispatch, autograd, optimiser, small ops)"


def profile_seconds(run, repeats: int) -> dict[str, float]:
    for _ in range(3):
        run()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            run()
    seconds: dict[str, float] = collections.Counter()
    for event in prof.key_averages():
        seconds[kind_of(event.key)] += event.self_cpu_time_total / 1e6 / repeats
    return seconds


def print_table(title: str, seconds: dict[str, float]) -> None:
    total = sum(seconds.values())
    print(f"{title}: {total * 1e3:.1f} ms (profiled)")
    for kind, value in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"  {kind:50} {value * 1e3:8.1f} ms  {100 * value / total:5.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="proxy")
    parser.add_argument("--compute", default="", help="FIELD=VALUE,... of the compute settings")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    config = build_config(args.preset)
    if args.compute:
        changes = dict(item.split("=", 1) for item in args.compute.split(","))
        config = dataclasses.replace(
            config,
            compute=dataclasses.replace(
                config.compute, **{k: parse_literal(v) for k, v in changes.items()}
            ),
        )
    config.compute.validate()
    torch.manual_seed(0)
    supernet = build_supernet(config.space, 10, config.compute).train()
    size, batch = config.data.resolution, config.train.batch_size
    generator = torch.Generator().manual_seed(0)

    def batch_of_images():
        images = torch.randn(batch, 3, size, size, generator=generator)
        return images, torch.randint(0, 10, (batch,), generator=generator)

    weight_batch, alpha_batch = batch_of_images(), batch_of_images()
    print(
        f"preset={args.preset} C={config.space.channels} N={config.space.cells_per_stage} "
        f"{size}x{size} batch={batch} threads={torch.get_num_threads()} "
        f"torch={torch.__version__} python={platform.python_version()}\n"
        f"compute: {dataclasses.asdict(config.compute)}"
    )
    step = get_algorithm("darts")(supernet, config.train, {}).step
    step_seconds = profile_seconds(lambda: step(weight_batch, alpha_batch), args.repeats)
    print_table("one DARTS step", step_seconds)

    weights = supernet.mixing_weights().detach()

    @torch.inference_mode()
    def scoring_pass():
        with batch_statistics_only(supernet):
            F.cross_entropy(supernet(alpha_batch[0], weights), alpha_batch[1]).item()

    print_table("one scoring pass", profile_seconds(scoring_pass, 5 * args.repeats))


if __name__ == "__main__":
    main()
