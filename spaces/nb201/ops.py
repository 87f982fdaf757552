"""Primitive operations of NAS-Bench-201, built exactly like the benchmark's network.

Convolutions are ReLU -> Conv -> BatchNorm with size-preserving padding; the conv
carries a bias only when its BatchNorm is affine-free (the official code does
``bias=not affine``), and in search cells only when ``BatchNormSettings.conv_bias`` says so
(DARTS-PT's search cells have none). Average pooling excludes padding from the average.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

OP_NAMES: tuple[str, ...] = (
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
)
PARAMETER_FREE_OPS: frozenset[str] = frozenset({"none", "skip_connect", "avg_pool_3x3"})


@dataclass(frozen=True)
class BatchNormSettings:
    """How BatchNorm layers inside cells behave.

    The benchmark's trained networks use ``affine=True, track_running_stats=True``;
    search supernets in the reference code use affine-free BatchNorm in cells, with
    running statistics off (xautodl) or on (DARTS-PT).
    """

    affine: bool = True
    track_running_stats: bool = True
    # Only with affine-free BatchNorm: whether the convolution before it carries a bias
    # (xautodl's search cells: yes; DARTS-PT's and Lambda-DARTS's: no).
    conv_bias: bool = True


BENCHMARK_BN = BatchNormSettings(affine=True, track_running_stats=True)
SEARCH_BN = BatchNormSettings(affine=False, track_running_stats=True)  # DARTS-PT's supernet


class ReLUConvBN(nn.Module):
    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        bn: BatchNormSettings,
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                c_in, c_out, kernel_size, stride, padding, bias=bn.conv_bias and not bn.affine
            ),
            nn.BatchNorm2d(c_out, affine=bn.affine, track_running_stats=bn.track_running_stats),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class AvgPool3x3(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.op = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def build_op(name: str, channels: int, bn: BatchNormSettings) -> nn.Module:
    """Build one cell op (stride 1, ``channels`` in and out)."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0, bn)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1, bn)
    if name == "avg_pool_3x3":
        return AvgPool3x3()
    raise ValueError(f"unknown NAS-Bench-201 op {name!r}; expected one of {', '.join(OP_NAMES)}")


class ResNetReduction(nn.Module):
    """The stride-2 residual block joining stages (always affine BN with running stats).

    Both the benchmark's networks and the reference search supernets build these
    blocks with default BatchNorm, whatever the cells use.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1, BENCHMARK_BN)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, BENCHMARK_BN)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))
