"""The NAS-Bench-201 macro network, as a discrete network and as a weight-sharing supernet.

Macro skeleton (identical for both): 3x3 conv stem + BN; N cells at C channels; a
stride-2 residual block to 2C; N cells; the same block to 4C; N cells; BN -> ReLU ->
global average pool -> linear classifier. Both classes name their modules the same
way (``cells.<i>.edges.<e>``) so parameters transfer between them by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spaces.nb201.codec import EDGES, NUM_EDGES, NUM_NODES
from spaces.nb201.ops import (
    BENCHMARK_BN,
    OP_NAMES,
    SEARCH_BN,
    BatchNormSettings,
    ResNetReduction,
    build_op,
)


def stage_channels(channels: int, cells_per_stage: int) -> list[tuple[int, bool]]:
    """(channels, is_reduction) for every block after the stem."""
    layout: list[tuple[int, bool]] = []
    for stage, width in enumerate((channels, 2 * channels, 4 * channels)):
        if stage > 0:
            layout.append((width, True))
        layout.extend((width, False) for _ in range(cells_per_stage))
    return layout


def _sum_nodes(terms: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    if not terms:
        return torch.zeros_like(like)
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


class DiscreteCell(nn.Module):
    def __init__(self, channels: int, choices: Sequence[int], bn: BatchNormSettings) -> None:
        super().__init__()
        self.choices = tuple(choices)
        self.edges = nn.ModuleList(build_op(OP_NAMES[k], channels, bn) for k in self.choices)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in range(1, NUM_NODES):
            terms = [
                self.edges[e](nodes[i])
                for e, (i, target) in enumerate(EDGES)
                if target == j and OP_NAMES[self.choices[e]] != "none"
            ]
            nodes.append(_sum_nodes(terms, x))
        return nodes[-1]


class MixedEdge(nn.Module):
    """All candidate ops of one edge, mixed by an explicit row of weights.

    Ops whose weight is exactly zero are not computed (so a one-hot row costs one op);
    ``none`` never is, since it contributes zeros whatever its weight. The gradient
    with respect to an exactly-zero weight is therefore reported as zero.
    """

    def __init__(self, channels: int, bn: BatchNormSettings) -> None:
        super().__init__()
        self.ops = nn.ModuleList(build_op(name, channels, bn) for name in OP_NAMES)

    def forward(self, x: torch.Tensor, row: torch.Tensor) -> torch.Tensor | None:
        values = row.detach().tolist()
        terms = []
        for k, (op, value) in enumerate(zip(self.ops, values, strict=True)):
            if value == 0.0 or OP_NAMES[k] == "none":
                continue
            out = op(x)
            if value != 1.0 or row.requires_grad:
                out = row[k] * out
            terms.append(out)
        if not terms:
            return None
        return _sum_nodes(terms, x)


class SearchCell(nn.Module):
    def __init__(self, channels: int, bn: BatchNormSettings) -> None:
        super().__init__()
        self.edges = nn.ModuleList(MixedEdge(channels, bn) for _ in range(NUM_EDGES))

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in range(1, NUM_NODES):
            terms = []
            for e, (i, target) in enumerate(EDGES):
                if target != j:
                    continue
                out = self.edges[e](nodes[i], weights[e])
                if out is not None:
                    terms.append(out)
            nodes.append(_sum_nodes(terms, x))
        return nodes[-1]


class _MacroNetwork(nn.Module):
    def __init__(
        self,
        channels: int,
        cells_per_stage: int,
        num_classes: int,
        make_cell,
    ) -> None:
        super().__init__()
        if channels < 1 or cells_per_stage < 1 or num_classes < 2:
            raise ValueError(
                f"need channels >= 1, cells_per_stage >= 1, num_classes >= 2; got "
                f"{channels}, {cells_per_stage}, {num_classes}"
            )
        self.channels = channels
        self.cells_per_stage = cells_per_stage
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        blocks: list[nn.Module] = []
        previous = channels
        for width, is_reduction in stage_channels(channels, cells_per_stage):
            blocks.append(ResNetReduction(previous, width) if is_reduction else make_cell(width))
            previous = width
        self.cells = nn.ModuleList(blocks)
        self.lastact = nn.Sequential(nn.BatchNorm2d(previous), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(previous, num_classes)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(x)


class NB201Network(_MacroNetwork):
    """The discrete network of one cell: the network the benchmark's accuracies belong to."""

    def __init__(
        self,
        choices: Sequence[int],
        channels: int = 16,
        cells_per_stage: int = 5,
        num_classes: int = 10,
        cell_bn: BatchNormSettings = BENCHMARK_BN,
    ) -> None:
        fixed = tuple(choices)
        super().__init__(
            channels,
            cells_per_stage,
            num_classes,
            lambda width: DiscreteCell(width, fixed, cell_bn),
        )
        self.choices = fixed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.cells:
            x = block(x)
        return self._head(x)


class NB201Supernet(_MacroNetwork):
    """Weight-sharing supernet with architecture parameters ``alphas`` (edges x ops).

    ``forward(x, weights)`` mixes each edge's ops with an explicit matrix: shape
    (edges, ops) shared by all cells, or (cells, edges, ops) with one matrix per
    searched cell (Lambda-DARTS). ``weights=None`` means :meth:`mixing_weights`.
    Ops outside ``active_ops`` (a boolean buffer, used by OPP-DARTS) get weight zero.
    """

    def __init__(
        self,
        channels: int = 16,
        cells_per_stage: int = 5,
        num_classes: int = 10,
        cell_bn: BatchNormSettings = SEARCH_BN,
        alpha_init_scale: float = 1e-3,
    ) -> None:
        super().__init__(
            channels, cells_per_stage, num_classes, lambda width: SearchCell(width, cell_bn)
        )
        self.cell_bn = cell_bn
        self.alphas = nn.Parameter(alpha_init_scale * torch.randn(NUM_EDGES, len(OP_NAMES)))
        self.register_buffer("active_ops", torch.ones(NUM_EDGES, len(OP_NAMES), dtype=torch.bool))

    @property
    def num_search_cells(self) -> int:
        return sum(isinstance(block, SearchCell) for block in self.cells)

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "alphas"]

    def mixing_weights(self, alphas: torch.Tensor | None = None) -> torch.Tensor:
        alphas = self.alphas if alphas is None else alphas
        masked = alphas.masked_fill(~self.active_ops, float("-inf"))
        return torch.softmax(masked, dim=-1)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        if weights is None:
            weights = self.mixing_weights()
        per_cell = weights.dim() == 3
        if per_cell and weights.shape[0] != self.num_search_cells:
            raise ValueError(
                f"per-cell weights need {self.num_search_cells} matrices, got {weights.shape[0]}"
            )
        x = self.stem(x)
        cell_index = 0
        for block in self.cells:
            if isinstance(block, SearchCell):
                x = block(x, weights[cell_index] if per_cell else weights)
                cell_index += 1
            else:
                x = block(x)
        return self._head(x)


def discrete_from_supernet(supernet: NB201Supernet, choices: Sequence[int]) -> NB201Network:
    """A discrete network for ``choices`` carrying the supernet's parameters and BN state."""
    network = NB201Network(
        choices,
        channels=supernet.channels,
        cells_per_stage=supernet.cells_per_stage,
        num_classes=supernet.num_classes,
        cell_bn=supernet.cell_bn,
    )
    source = supernet.state_dict()
    target = {}
    for name in network.state_dict():
        parts = name.split(".")
        if parts[0] == "cells" and isinstance(network.cells[int(parts[1])], DiscreteCell):
            edge = int(parts[3])
            supernet_name = ".".join(parts[:4] + ["ops", str(choices[edge])] + parts[4:])
            target[name] = source[supernet_name]
        else:
            target[name] = source[name]
    network.load_state_dict(target)
    return network.to(next(supernet.parameters()).device)
