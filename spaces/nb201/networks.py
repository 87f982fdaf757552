"""The NAS-Bench-201 macro network, as a discrete network and as a weight-sharing supernet.

Macro skeleton (identical for both): 3x3 conv stem + BN; N cells at C channels; a
stride-2 residual block to 2C; N cells; the same block to 4C; N cells; BN -> ReLU ->
global average pool -> linear classifier. Both classes name their modules the same
way (``cells.<i>.edges.<e>``) so parameters transfer between them by name.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spaces.base import AlphaMixing, SearchSpace
from spaces.nb201.candidates import candidate_logits
from spaces.nb201.cells import DiscreteCell, MixedEdge, SearchCell
from spaces.nb201.codec import NUM_EDGES
from spaces.nb201.fused import FusedSearchCell, op_plan
from spaces.nb201.ops import (
    BENCHMARK_BN,
    OP_NAMES,
    SEARCH_BN,
    BatchNormSettings,
    ResNetReduction,
)

__all__ = [
    "CELL_IMPLEMENTATIONS",
    "DiscreteCell",
    "MixedEdge",
    "NB201Network",
    "NB201Supernet",
    "SearchCell",
    "discrete_from_supernet",
    "stage_channels",
]

# How a search cell computes its mixed edges; both hold the same parameters.
CELL_IMPLEMENTATIONS: dict[str, type[SearchCell]] = {
    "fused": FusedSearchCell,  # work grouped by source node (default)
    "reference": SearchCell,  # op by op, as the benchmark's code
}


def stage_channels(channels: int, cells_per_stage: int) -> list[tuple[int, bool]]:
    """(channels, is_reduction) for every block after the stem."""
    layout: list[tuple[int, bool]] = []
    for stage, width in enumerate((channels, 2 * channels, 4 * channels)):
        if stage > 0:
            layout.append((width, True))
        layout.extend((width, False) for _ in range(cells_per_stage))
    return layout


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
        channels_last: bool = False,
    ) -> None:
        fixed = tuple(choices)
        super().__init__(
            channels,
            cells_per_stage,
            num_classes,
            lambda width: DiscreteCell(width, fixed, cell_bn),
        )
        self.choices = fixed
        # Channels-last memory: the same sums, about 1.5x a training step on a CPU
        # (``harness retrain``'s default; parity in tests/test_nb201_space.py).
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.to(memory_format=self.memory_format)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x.contiguous(memory_format=self.memory_format))
        for block in self.cells:
            x = block(x)
        return self._head(x)


class NB201Supernet(AlphaMixing, _MacroNetwork):
    """Weight-sharing supernet with architecture parameters ``alphas`` (edges x ops).

    ``forward(x, weights)`` mixes each edge's ops with an explicit matrix: shape
    (edges, ops) shared by all cells, or (cells, edges, ops) with one matrix per
    searched cell (Lambda-DARTS). ``weights=None`` means :meth:`mixing_weights`.
    Ops outside ``active_ops`` (a boolean buffer, used by OPP-DARTS) get weight zero.

    How it computes (the parameters and ``state_dict`` are the same for every choice):
    ``cell_impl`` picks the cell (:data:`CELL_IMPLEMENTATIONS`); ``channels_last`` runs
    feature maps in channels-last memory format; ``autocast="bf16"`` runs the forward under
    bfloat16 autocast (logits come back as float32); ``compile_cells`` runs the forward
    through ``torch.compile`` (fused cells only).
    """

    def __init__(
        self,
        channels: int = 16,
        cells_per_stage: int = 5,
        num_classes: int = 10,
        cell_bn: BatchNormSettings = SEARCH_BN,
        space: SearchSpace | None = None,  # required: the NB201 space that builds it
        alpha_init_scale: float = 1e-3,
        cell_impl: str = "fused",
        channels_last: bool = False,
        autocast: str | None = None,
        compile_cells: bool = False,
    ) -> None:
        if cell_impl not in CELL_IMPLEMENTATIONS:
            raise ValueError(
                f"unknown cell implementation {cell_impl!r}; "
                f"use one of {', '.join(CELL_IMPLEMENTATIONS)}"
            )
        if autocast not in (None, "bf16"):
            raise ValueError(f"autocast must be None or 'bf16', got {autocast!r}")
        if compile_cells and cell_impl != "fused":
            raise ValueError("compile_cells needs the fused cell implementation")
        if space is None:
            # The space builds the supernet and the supernet holds its space; taking it as an
            # argument keeps this module below the space's (no import cycle).
            raise TypeError("NB201Supernet needs its space: space=NB201Space() for the full one")
        cell_class = CELL_IMPLEMENTATIONS[cell_impl]
        candidates = space.candidates
        super().__init__(
            channels,
            cells_per_stage,
            num_classes,
            lambda width: cell_class(width, cell_bn, candidates),
        )
        self.space = space
        self.cell_bn = cell_bn
        self.cell_impl = cell_impl
        self.channels_last = channels_last
        self.autocast = autocast
        self.compile_cells = compile_cells
        self.alphas = nn.Parameter(alpha_init_scale * torch.randn(NUM_EDGES, len(OP_NAMES)))
        # Ops outside the space's candidate sets are never active.
        self.register_buffer("active_ops", torch.from_numpy(space.candidate_mask.copy()))

    @property
    def num_search_cells(self) -> int:
        return sum(isinstance(block, SearchCell) for block in self.cells)

    def search_cells(self) -> list[SearchCell]:
        return [block for block in self.cells if isinstance(block, SearchCell)]

    def op_by_op(self) -> NB201Supernet:
        """This supernet, or (fused cells) an equal one with the op-by-op reference cells:
        the same parameters and buffers, float32, default layout, every op a module that
        runs, so hooks on its ReLUs see them (zero-cost proxies)."""
        if self.cell_impl == "reference":
            return self
        # Building draws initial weights from the global generator: keep the caller's stream.
        with torch.random.fork_rng(devices=[]):
            copy = NB201Supernet(
                channels=self.channels, cells_per_stage=self.cells_per_stage,
                num_classes=self.num_classes, cell_bn=self.cell_bn, space=self.space,
                cell_impl="reference",
            )  # fmt: skip
        copy.load_state_dict(self.state_dict())
        return copy.to(self.alphas.device).train(self.training)

    def op_modules(self, op: int) -> list[nn.Module]:
        """Op ``op``'s module on every edge of every search cell (candidates only)."""
        return [
            edge.ops[op]
            for cell in self.search_cells()
            for e, edge in enumerate(cell.edges)
            if op in self.space.candidates[e]
        ]

    def candidate_logits(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Logits (K x batch x classes) under each of K mixing matrices, in one pass."""
        return candidate_logits(self, x, weights)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        if weights is None:
            weights = self.mixing_weights()
        per_cell = weights.dim() == 3
        if per_cell and weights.shape[0] != self.num_search_cells:
            raise ValueError(
                f"per-cell weights need {self.num_search_cells} matrices, got {weights.shape[0]}"
            )
        plans = None
        if self.cell_impl == "fused":
            # Which ops run, decided once per forward as plain tuples.
            plans = tuple(op_plan(m) for m in (weights if per_cell else [weights]))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        forward = compiled_forward() if self.compile_cells else _supernet_forward
        if self.autocast is None:
            return forward(self, x, weights, plans)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return forward(self, x, weights, plans).float()


def _supernet_forward(net: NB201Supernet, x, weights, plans) -> torch.Tensor:
    per_cell = weights.dim() == 3
    x = net.stem(x)
    cell_index = 0
    for block in net.cells:
        if isinstance(block, SearchCell):
            cell_weights = weights[cell_index] if per_cell else weights
            if plans is None:
                x = block(x, cell_weights)
            else:
                x = block(x, cell_weights, plans[cell_index if per_cell else 0])
            cell_index += 1
        else:
            x = block(x)
    return net._head(x)


@functools.cache
def compiled_forward():
    """``torch.compile`` of the supernet forward, made on first use (one per process)."""
    return torch.compile(_supernet_forward)


def discrete_from_supernet(supernet: NB201Supernet, choices: Sequence[int]) -> NB201Network:
    """A discrete network for ``choices`` carrying the supernet's parameters and BN state."""
    supernet.space.check_cell(choices)
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
