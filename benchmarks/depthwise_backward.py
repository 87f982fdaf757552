"""What a depthwise convolution's forward + backward costs on this CPU, by memory format and
dilation, and as the fused DARTS cell runs it (strided dilated ones on parity phases,
small maps as per-channel matrices, the rest in channels-last).

The fused DARTS cell (:mod:`spaces.darts.fused`) spends most of a step in the backward of
depthwise convolutions; this prints, for the shapes of the DARTS side-by-side (C=8 at
16x16: 4 edges stacked, 32 channels; reduction cells at stride 2; the 8x8 and 4x4 maps
after the reductions), seconds per forward +
backward (both gradients) in the default memory format, in channels-last, and through
the fused cell's own routine:

    python benchmarks/depthwise_backward.py [--threads 2] [--repeats 20]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F

from spaces.darts.fused_convs import depthwise_conv

# (batch, channels, size, kernel, dilation, stride): sep/dil convs of the C=8 16x16 shape
SHAPES = [(64, 32, 16, 3, 1, 1), (64, 32, 16, 5, 1, 1), (64, 32, 16, 3, 2, 1),
          (64, 32, 16, 5, 2, 1), (64, 64, 16, 3, 2, 2), (64, 64, 16, 5, 2, 2),
          (64, 64, 8, 3, 1, 1), (64, 64, 8, 5, 1, 1), (64, 64, 8, 3, 2, 1), (64, 64, 8, 5, 2, 1),
          (64, 128, 4, 3, 1, 1), (64, 128, 4, 5, 1, 1), (64, 128, 4, 3, 2, 1),
          (64, 128, 4, 5, 2, 1)]  # fmt: skip


def seconds(run, repeats: int) -> float:
    run()  # warm-up
    began = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - began) / repeats


def time_shape(batch, channels, size, kernel, dilation, stride, repeats) -> list[float]:
    """Seconds per forward + backward: default format, channels-last, the fused routine."""
    padding = dilation * (kernel - 1) // 2
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch, channels, size, size, generator=generator)
    weight = torch.randn(channels, 1, kernel, kernel, generator=generator, requires_grad=True)

    def plain(memory_format):
        x = x0.contiguous(memory_format=memory_format).requires_grad_()

        def run():
            out = F.conv2d(x, weight, None, stride, padding, dilation, channels)
            out.backward(torch.ones_like(out))

        return run

    x = x0.clone().requires_grad_()

    def fused():
        out = depthwise_conv(x, weight, None, (stride,) * 2, (padding,) * 2, (dilation,) * 2,
                             channels)  # fmt: skip
        out.backward(torch.ones_like(out))

    runs = (plain(torch.contiguous_format), plain(torch.channels_last), fused)
    return [seconds(run, repeats) for run in runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch={torch.__version__} threads={torch.get_num_threads()} "
          f"cpu-capability={torch.backends.cpu.get_cpu_capability()} "
          f"python={platform.python_version()} repeats={args.repeats}")  # fmt: skip
    print("batch,channels,size,kernel,dilation,stride: ms per forward+backward "
          "(default format | channels-last | the fused cell's routine)")
    for shape in SHAPES:
        times = time_shape(*shape, args.repeats)
        print(",".join(map(str, shape)) + ": " + " | ".join(f"{1000 * t:7.2f}" for t in times))

if __name__ == "__main__":
    main()
