"""The DARTS CNN space's ops (Liu et al., ICLR 2019), built as its reference code builds them.

Every op maps C channels to C channels; with stride 2 (edges from a reduction cell's two
inputs) it halves height and width. Separable convolutions are two stacked
ReLU -> depthwise -> pointwise -> BatchNorm blocks; dilated ones a single block with
dilation 2; ``skip_connect`` at stride 2 is a factorized reduce (two offset 1x1
convolutions, concatenated); pooling excludes padding from the average; convolutions
carry no bias. ``noise`` is RobustDARTS's S4 op: standard Gaussian noise of the
(strided) input's shape, in training and evaluation alike, as its reference code.
"""

from __future__ import annotations

import torch
from torch import nn

OP_NAMES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
# Besides OP_NAMES, only in RobustDARTS's S4.
EXTRA_OPS: tuple[str, ...] = ("noise",)
PARAMETER_FREE_OPS: frozenset[str] = frozenset(
    {"none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "noise"}
)


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool) -> None:  # fmt: skip
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


def _depthwise_block(c: int, kernel: int, stride: int, padding: int, dilation: int,
                     affine: bool) -> list[nn.Module]:  # fmt: skip
    return [
        nn.ReLU(inplace=False),
        nn.Conv2d(
            c, c, kernel, stride=stride, padding=padding, dilation=dilation, groups=c, bias=False
        ),  # fmt: skip
        nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c, affine=affine),
    ]


class DilConv(nn.Sequential):
    def __init__(self, c: int, kernel: int, stride: int, affine: bool) -> None:
        padding = kernel - 1  # dilation 2 keeps the size: 2 * (kernel - 1) // 2
        super().__init__(*_depthwise_block(c, kernel, stride, padding, 2, affine))


class SepConv(nn.Sequential):
    def __init__(self, c: int, kernel: int, stride: int, affine: bool) -> None:
        padding = kernel // 2
        super().__init__(
            *_depthwise_block(c, kernel, stride, padding, 1, affine),
            *_depthwise_block(c, kernel, 1, padding, 1, affine),
        )


class FactorizedReduce(nn.Module):
    """Halves the size with two 1x1 stride-2 convolutions, the second offset by one pixel."""

    def __init__(self, c_in: int, c_out: int, affine: bool) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"factorized reduce needs an even channel count, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class Zero(nn.Module):
    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x[:, :, :: self.stride, :: self.stride])


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Noise(nn.Module):
    """S4's op: standard Gaussian noise of the (strided) input's shape."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(x[:, :, :: self.stride, :: self.stride])


def build_op(name: str, channels: int, stride: int, affine: bool) -> nn.Module:
    """One op of the space (``channels`` in and out, ``stride`` 1 or 2)."""
    if name == "none":
        return Zero(stride)
    if name == "noise":
        return Noise(stride)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if name == "skip_connect":
        return Identity() if stride == 1 else FactorizedReduce(channels, channels, affine)
    if name.startswith(("sep_conv_", "dil_conv_")):
        kernel = int(name[-1])
        conv = SepConv if name.startswith("sep") else DilConv
        return conv(channels, kernel, stride, affine)
    raise ValueError(
        f"unknown DARTS op {name!r}; expected one of {', '.join(OP_NAMES + EXTRA_OPS)}"
    )
