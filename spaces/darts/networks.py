"""The DARTS CNN evaluation network of one genotype (the network a genotype is retrained as).

Macro skeleton as the reference's CIFAR network: a 3x3 stem to 3C channels; ``layers``
cells, the ones at 1/3 and 2/3 of the depth reduction cells (channels doubled, size
halved); each cell reads the two previous cells' outputs (through a 1x1 ReLU-conv-BN, or a
factorized reduce when the previous cell reduced) and concatenates its four intermediate
nodes; global average pooling and a linear classifier. An auxiliary head on the output
of the 2/3 reduction (weight 0.4 in the paper's training) and drop-path on every
non-identity op are training-time options. ``channels_last`` keeps the weights and every
feature map in channels-last memory: the same sums (float64 parity in
``tests/test_darts_eval_network.py``), and on a CPU 1.4-1.9x faster a training step, most
of it in the depthwise convolutions' backward (``benchmarks/retrain_step.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from spaces.base import parameter_count as parameter_count  # re-exported
from spaces.darts.genotype import CONCAT, INPUTS, STEPS, Genotype, check_genotype
from spaces.darts.ops import EXTRA_OPS, OP_NAMES, FactorizedReduce, Identity, ReLUConvBN, build_op


class CellLayout(NamedTuple):
    c_prev_prev: int  # channels of the cell two back
    c_prev: int  # of the previous cell
    c: int  # of each of this cell's nodes
    reduction: bool
    reduction_prev: bool


def cell_layout(channels: int, layers: int, stem_multiplier: int = 3) -> list[CellLayout]:
    """Channels and reductions of every cell: reductions at 1/3 and 2/3 of the depth double
    the channels; a cell outputs its four nodes concatenated."""
    out = []
    c_prev_prev = c_prev = stem_multiplier * channels
    c, reduction_prev = channels, False
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        c *= 2 if reduction else 1
        out.append(CellLayout(c_prev_prev, c_prev, c, reduction, reduction_prev))
        c_prev_prev, c_prev, reduction_prev = c_prev, len(CONCAT) * c, reduction
    return out


def make_stem(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(channels))  # fmt: skip


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability ``drop_prob``, rescaling the rest."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


class GenotypeCell(nn.Module):
    def __init__(self, pairs, c_prev_prev: int, c_prev: int, c: int, reduction: bool,
                 reduction_prev: bool) -> None:  # fmt: skip
        super().__init__()
        self.preprocess0 = (FactorizedReduce(c_prev_prev, c, affine=True) if reduction_prev
                            else ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine=True))  # fmt: skip
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0, affine=True)
        self.inputs = [source for _, source in pairs]
        self.ops = nn.ModuleList(
            build_op(op, c, 2 if reduction and source < INPUTS else 1, affine=True)
            for op, source in pairs
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for step in range(STEPS):
            total = 0
            for k in (2 * step, 2 * step + 1):
                h = self.ops[k](states[self.inputs[k]])
                if self.training and drop_prob > 0 and not isinstance(self.ops[k], Identity):
                    h = drop_path(h, drop_prob)
                total = total + h
            states.append(total)
        return torch.cat([states[i] for i in CONCAT], dim=1)


class AuxiliaryHead(nn.Module):
    """The reference's CIFAR auxiliary classifier (for 8x8 inputs)."""

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class DartsEvalNetwork(nn.Module):
    """``forward`` returns (logits, auxiliary logits or None); drop-path via ``drop_prob``."""

    def __init__(self, genotype: Genotype, channels: int = 36, layers: int = 20,
                 num_classes: int = 10, auxiliary: bool = True, stem_multiplier: int = 3,
                 channels_last: bool = False) -> None:  # fmt: skip
        super().__init__()
        check_genotype(genotype, OP_NAMES + EXTRA_OPS)
        self.drop_prob = 0.0
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.stem = make_stem(stem_multiplier * channels)
        self.cells = nn.ModuleList()
        self.auxiliary_after = 2 * layers // 3 if auxiliary else None
        self.auxiliary_head = None
        for i, layout in enumerate(cell_layout(channels, layers, stem_multiplier)):
            pairs = genotype.reduce if layout.reduction else genotype.normal
            self.cells.append(GenotypeCell(pairs, *layout))
            if i == self.auxiliary_after:
                self.auxiliary_head = AuxiliaryHead(len(CONCAT) * layout.c, num_classes)
        self.classifier = nn.Linear(len(CONCAT) * layout.c, num_classes)
        self.to(memory_format=self.memory_format)  # the convolutions' weights

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        aux = None
        s0 = s1 = self.stem(x.contiguous(memory_format=self.memory_format))
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_prob)
            if i == self.auxiliary_after and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))
        return logits, aux
