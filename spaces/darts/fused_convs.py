"""The convolutions and pools of the fused DARTS cell (:mod:`spaces.darts.fused`), run the
fastest way found on CPU while computing the same sums: 1x1 convolutions as matrix
products, grouped (depthwise) ones and the pools in channels-last memory, strided dilated
convolutions on the input's even phase (``benchmarks/depthwise_backward.py``,
``benchmarks/README.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def stacked_conv(x: torch.Tensor, convs: Sequence[nn.Conv2d], shared_input: bool):
    """The convolutions ``convs`` (one per edge) as one: on ``x`` stacked per edge along
    channels, or on one input ``x`` shared by every edge (then ``convs`` are dense)."""
    conv = convs[0]
    weight = torch.cat([c.weight for c in convs]) if len(convs) > 1 else conv.weight
    bias = None
    if conv.bias is not None:
        bias = torch.cat([c.bias for c in convs]) if len(convs) > 1 else conv.bias
    if is_pointwise(conv):
        return pointwise(x, weight, bias, conv.stride, 1 if shared_input else len(convs))
    groups = conv.groups if shared_input else conv.groups * len(convs)
    return depthwise_conv(x, weight, bias, conv.stride, conv.padding, conv.dilation, groups)


def depthwise_conv(x, weight, bias, stride, padding, dilation, groups: int) -> torch.Tensor:
    """``F.conv2d`` (2-tuples ``stride``, ``padding``, ``dilation``) as the fused cell runs
    a grouped convolution: a dilation-2 one at stride 2 with "same" padding on the input's
    even phase (:func:`dilated_as_phases`); a depthwise one at stride 1 on a small map as
    one matrix per channel (:func:`depthwise_as_matrices`); any other in channels-last
    memory (:func:`_grouped_conv`)."""
    (k, k2), (s, s2) = weight.shape[-2:], stride
    same = padding == (dilation[0] * (k - 1) // 2,) * 2 and k == k2
    even = x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0
    if dilation == (2, 2) and (s, s2) == (2, 2) and same and even:
        return dilated_as_phases(x, weight, bias, 2, padding[0] // 2, groups)
    depthwise = weight.shape[1] == 1 and groups == x.shape[1]
    reach = dilation[0] * (k - 1) + 1  # the kernel's extent on the map
    if (depthwise and (s, s2) == (1, 1) and same and dilation[0] == dilation[1]
            and reach > max(x.shape[-2:]) and x.shape[-2] * x.shape[-1] <= MATRIX_PIXELS):
        return depthwise_as_matrices(x, weight, bias, padding[0], dilation[0])
    return _grouped_conv(x, weight, bias, stride, padding, dilation, groups)


# Depthwise convolutions whose kernel reaches beyond the map (most taps on padding: 5x5
# and dilated 3x3 on 4x4 maps, dilated 5x5 on 8x8) run as per-channel matrices: there a
# forward and backward took 1.8-12x less time than in channels-last on CPU, elsewhere
# (3x3 on 4x4, dilated 3x3 on 8x8) up to 1.7x more (benchmarks/README.md). The matrices
# grow as the square of the map: never above this many pixels.
MATRIX_PIXELS = 64


def depthwise_as_matrices(x, weight, bias, padding: int, dilation: int) -> torch.Tensor:
    """A stride-1 depthwise convolution as one (pixels x pixels) matrix per channel.

    On a map of h x w pixels a channel's convolution is a linear map of its h*w inputs
    whose matrix holds the kernel's taps (zero where a tap falls into the padding): the
    same sums (plus exact zeros), as one batched matrix product, whose speed does not
    depend on dilation and which wastes nothing on padding."""
    batch, channels, height, width = x.shape
    taps = _tap_index(height, width, weight.shape[-1], padding, dilation, x.device)
    taps_and_zero = torch.cat([weight.reshape(channels, -1), weight.new_zeros(channels, 1)], 1)
    matrices = taps_and_zero[:, taps]  # channels x output pixels x input pixels
    rows = x.reshape(batch, channels, height * width).transpose(0, 1)  # channels x batch x in
    out = torch.bmm(rows, matrices.transpose(1, 2)).transpose(0, 1)
    out = out.reshape(batch, channels, height, width)
    return out if bias is None else out + bias[:, None, None]


def _tap_index(height: int, width: int, kernel: int, padding: int, dilation: int,
               device: torch.device) -> torch.Tensor:  # fmt: skip
    """(output pixel, input pixel) -> the kernel tap joining them, or kernel**2 (none), for
    a stride-1 convolution on a height x width map; made once per shape."""

    def make() -> torch.Tensor:
        out_y, out_x, tap_y, tap_x = torch.meshgrid(
            torch.arange(height), torch.arange(width), torch.arange(kernel),
            torch.arange(kernel), indexing="ij",
        )  # fmt: skip
        in_y = out_y + tap_y * dilation - padding
        in_x = out_x + tap_x * dilation - padding
        inside = (in_y >= 0) & (in_y < height) & (in_x >= 0) & (in_x < width)
        index = torch.full((height * width, height * width), kernel * kernel)
        output_pixel, input_pixel = out_y * width + out_x, in_y * width + in_x
        index[output_pixel[inside], input_pixel[inside]] = (tap_y * kernel + tap_x)[inside]
        return index.to(device)

    return made_once(("taps", height, width, kernel, padding, dilation, device), make)


_MADE: dict[tuple, torch.Tensor] = {}


def made_once(key: tuple, make) -> torch.Tensor:
    """``make()``, computed on the first call with ``key`` and kept. Made outside inference
    mode, so that a tensor first asked for by a scoring pass serves later passes with
    autograd (training, fine-tuning) too."""
    if key not in _MADE:
        with torch.inference_mode(False):
            _MADE[key] = make()
    return _MADE[key]


def pool(module: nn.MaxPool2d | nn.AvgPool2d, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` computed in channels-last memory and handed back in the default format.

    The same values; on CPU a 3x3 max pool's forward is 2-8x faster so, an average pool's
    1.5-4x, copies included (``benchmarks/README.md``)."""
    return _ToDefaultFormat.apply(module(x.contiguous(memory_format=torch.channels_last)))


def _grouped_conv(x, weight, bias, stride, padding, dilation, groups: int) -> torch.Tensor:
    """``F.conv2d`` of a grouped (depthwise) convolution, run in channels-last memory and
    handed back in the default format.

    On CPU (oneDNN) a depthwise convolution's backward is 3-10x faster in channels-last
    than in the default format (benchmarks/README.md); the two copies cost far less. Only
    the convolution runs so: the whole fused cell in channels-last gave wrong gradients
    (docs/darts-space.md)."""
    if groups == 1:
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    x = x.contiguous(memory_format=torch.channels_last)
    out = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    return _ToDefaultFormat.apply(out)


class _ToDefaultFormat(torch.autograd.Function):
    """``x.contiguous()`` whose backward hands the gradient on in channels-last memory, the
    format of the convolution or pool before it (a convolution's backward is slow on a
    default-format gradient)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous()

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:
        return gradient.contiguous(memory_format=torch.channels_last)


def dilated_as_phases(x, weight, bias, stride: int, padding: int, groups: int) -> torch.Tensor:
    """A dilation-2 convolution with "same" padding as undilated ones (the same sums).

    Output (i, j) reads only inputs of its own row and column parity, so the convolution
    is four undilated convolutions, one per parity phase of ``x`` (stride 2: the even phase
    alone). On CPU the backward of a dilated depthwise convolution is 5-10x slower than an
    undilated one of the same size (benchmarks/README.md)."""
    if stride == 2:
        return depthwise_conv(x[:, :, ::2, ::2], weight, bias, (1, 1), (padding, padding),
                              (1, 1), groups)  # fmt: skip
    batch, channels, height, width = x.shape
    phases = torch.cat([x[:, :, p::2, q::2] for p in (0, 1) for q in (0, 1)])
    out = _grouped_conv(phases, weight, bias, 1, padding, 1, groups)  # (p, q, n) x C x H/2 x W/2
    out = out.unflatten(0, (2, 2, batch))  # out[p, q, n, c, i, j] is output (n, c, 2i+p, 2j+q)
    return out.permute(2, 3, 4, 0, 5, 1).reshape(batch, -1, height, width)


def is_pointwise(conv: nn.Conv2d) -> bool:
    return (conv.kernel_size == (1, 1) and conv.padding in ((0, 0), "valid")
            and conv.groups == 1 and conv.stride[0] == conv.stride[1])  # fmt: skip


def pointwise(x, weight, bias, stride: tuple[int, int], groups: int) -> torch.Tensor:
    """A 1x1 convolution of ``groups`` dense groups as a matrix product: the same sums, and
    a backward much faster than a convolution's on CPU."""
    step = stride[0]
    if step != 1:
        x = x[:, :, ::step, ::step]
    batch, _, height, width = x.shape
    matrices = weight.reshape(groups, weight.shape[0] // groups, weight.shape[1])
    out = torch.matmul(matrices, x.reshape(batch, groups, -1, height * width))
    out = out.reshape(batch, weight.shape[0], height, width)
    return out if bias is None else out + bias[:, None, None]
