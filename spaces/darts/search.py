"""The DARTS CNN search supernet, and the discrete network of one cell pair with its weights.

As the reference's search network: a 3x3 stem to 3C channels; ``layers`` cells (8 at
C=16), reduction cells at 1/3 and 2/3 of the depth; every cell preprocesses the two
previous outputs with affine-free ReLU-conv-BN (a factorized reduce after a reduction),
mixes its 14 edges, and concatenates its four intermediate nodes. Ops are built with
affine-free BatchNorm, and pooling is followed by an affine-free BatchNorm, as the
reference's ``MixedOp`` does.

The architecture parameters are one ``alphas`` matrix of 28 x ops: rows 0..13 the normal
cell's edges, 14..27 the reduction cell's (the reference's ``alphas_normal`` and
``alphas_reduce`` stacked). Ops outside an edge's candidates are
:class:`~spaces.base.NotACandidate` and weigh 0.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spaces.base import AlphaMixing, NotACandidate
from spaces.darts.candidates import candidate_logits
from spaces.darts.fused import fused_cell_forward
from spaces.darts.genotype import CELL_EDGES, CONCAT, EDGES_PER_CELL, INPUTS
from spaces.darts.networks import cell_layout, make_stem
from spaces.darts.ops import FactorizedReduce, ReLUConvBN, Zero, build_op


def search_op(name: str, channels: int, stride: int) -> nn.Module:
    op = build_op(name, channels, stride, affine=False)
    if "pool" in name:
        return nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
    return op


def _preprocess(c_prev_prev: int, c_prev: int, c: int, reduction_prev: bool):
    first = (FactorizedReduce(c_prev_prev, c, affine=False) if reduction_prev
             else ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine=False))  # fmt: skip
    return first, ReLUConvBN(c_prev, c, 1, 1, 0, affine=False)


class MixedEdge(nn.Module):
    def __init__(self, op_names: Sequence[str], candidates: Sequence[int], channels: int,
                 stride: int) -> None:  # fmt: skip
        super().__init__()
        self.zero = Zero(stride)
        self.ops = nn.ModuleList(
            search_op(name, channels, stride) if k in candidates else NotACandidate(name)
            for k, name in enumerate(op_names)
        )
        self.none = op_names.index("none") if "none" in op_names else -1

    def forward(self, x: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        # Ops of weight exactly 0 are not computed, and none adds zeros whatever its weight.
        terms = [
            row[k] * op(x) for k, (op, w) in enumerate(zip(self.ops, row.tolist(), strict=True))
            if w != 0.0 and k != self.none
        ]  # fmt: skip
        return sum(terms[1:], terms[0]) if terms else self.zero(x)


class SearchCell(nn.Module):
    def __init__(self, op_names, candidates, c_prev_prev: int, c_prev: int, c: int,
                 reduction: bool, reduction_prev: bool) -> None:  # fmt: skip
        super().__init__()
        self.reduction = reduction
        self.preprocess0, self.preprocess1 = _preprocess(c_prev_prev, c_prev, c, reduction_prev)
        self.edges = nn.ModuleList(
            MixedEdge(op_names, candidates[e], c, 2 if reduction and i < INPUTS else 1)
            for e, (i, _) in enumerate(CELL_EDGES)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in CONCAT:
            total = None
            for e, (i, j) in enumerate(CELL_EDGES):
                if j == node:
                    out = self.edges[e](states[i], weights[e])
                    total = out if total is None else total + out
            states.append(total)
        return torch.cat([states[i] for i in CONCAT], dim=1)


class FusedSearchCell(SearchCell):
    """:class:`SearchCell` with its work grouped by source node (:mod:`spaces.darts.fused`):
    the same parameters and buffers, the same results to float tolerance."""

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor):
        return fused_cell_forward(self, s0, s1, weights)


CELL_IMPLEMENTATIONS = {"reference": SearchCell, "fused": FusedSearchCell}


class DartsSupernet(AlphaMixing, nn.Module):
    """The search supernet of a :class:`~spaces.darts.space.DartsSpace` (the Supernet
    protocol of :mod:`spaces.base`)."""

    def __init__(self, space, channels: int = 16, layers: int = 8, num_classes: int = 10,
                 stem_multiplier: int = 3, alpha_init_scale: float = 1e-3,
                 cell_impl: str = "reference") -> None:  # fmt: skip
        super().__init__()
        if cell_impl not in CELL_IMPLEMENTATIONS:
            raise ValueError(f"unknown cell implementation {cell_impl!r}; "
                             f"use one of {', '.join(CELL_IMPLEMENTATIONS)}")  # fmt: skip
        cell_class = CELL_IMPLEMENTATIONS[cell_impl]
        self.cell_impl = cell_impl
        self.space = space
        self.channels, self.layers, self.num_classes = channels, layers, num_classes
        self.stem_multiplier = stem_multiplier
        self.stem = make_stem(stem_multiplier * channels)
        self.cells = nn.ModuleList()
        for layout in cell_layout(channels, layers, stem_multiplier):
            rows = slice(EDGES_PER_CELL, None) if layout.reduction else slice(0, EDGES_PER_CELL)
            self.cells.append(cell_class(space.op_names, space.candidates[rows], *layout))
        self.classifier = nn.Linear(len(CONCAT) * layout.c, num_classes)
        self.alphas = nn.Parameter(alpha_init_scale * torch.randn(space.num_edges, space.num_ops))
        self.register_buffer("active_ops", torch.from_numpy(space.candidate_mask.copy()))

    @property
    def num_search_cells(self) -> int:
        return len(self.cells)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        weights = self.mixing_weights() if weights is None else weights
        s0 = s1 = self.stem(x)
        for index, cell in enumerate(self.cells):
            matrix = weights[index] if weights.dim() == 3 else weights
            rows = matrix[EDGES_PER_CELL:] if cell.reduction else matrix[:EDGES_PER_CELL]
            s0, s1 = s1, cell(s0, s1, rows)
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))

    def candidate_logits(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Logits under each of K matrices (K x 28 x ops): fused cells take them in one
        pass (:mod:`spaces.darts.candidates`)."""
        return candidate_logits(self, x, weights)

    def op_by_op(self) -> DartsSupernet:
        """This supernet, or (fused cells) an equal one with the op-by-op reference cells
        (the same parameters and buffers), whose every op is a module that runs, so hooks on
        its ReLUs see them (zero-cost proxies)."""
        if self.cell_impl == "reference":
            return self
        with torch.random.fork_rng(devices=[]):  # building draws initial weights
            copy = DartsSupernet(self.space, self.channels, self.layers, self.num_classes,
                                 self.stem_multiplier, cell_impl="reference")  # fmt: skip
        copy.load_state_dict(self.state_dict())
        return copy.to(self.alphas.device).train(self.training)

    def op_modules(self, op: int) -> list[nn.Module]:
        offset = {False: 0, True: EDGES_PER_CELL}
        return [
            edge.ops[op] for cell in self.cells for e, edge in enumerate(cell.edges)
            if op in self.space.candidates[offset[cell.reduction] + e]
        ]  # fmt: skip


class DiscreteSearchCell(nn.Module):
    """A searched cell with only its chosen ops (module names as the supernet's)."""

    def __init__(self, op_names, chosen: Sequence[int], c_prev_prev: int, c_prev: int, c: int,
                 reduction: bool, reduction_prev: bool) -> None:  # fmt: skip
        super().__init__()
        self.reduction = reduction
        self.chosen = tuple(chosen)
        self.preprocess0, self.preprocess1 = _preprocess(c_prev_prev, c_prev, c, reduction_prev)
        none = op_names.index("none") if "none" in op_names else -1
        self.edges = nn.ModuleList()
        for e, (i, _) in enumerate(CELL_EDGES):
            stride = 2 if reduction and i < INPUTS else 1
            edge = nn.Module()
            edge.ops = nn.ModuleList(
                search_op(name, c, stride) if k == chosen[e] and k != none
                else NotACandidate(name) for k, name in enumerate(op_names)
            )  # fmt: skip
            self.edges.append(edge)
        self.none = none

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in CONCAT:
            kept = [self.edges[e].ops[self.chosen[e]](states[i])
                    for e, (i, j) in enumerate(CELL_EDGES)
                    if j == node and self.chosen[e] != self.none]  # fmt: skip
            states.append(kept[0] + kept[1])
        return torch.cat([states[i] for i in CONCAT], dim=1)


class DiscreteSearchNetwork(nn.Module):
    """The supernet's skeleton with one cell pair fixed (two inputs per node)."""

    def __init__(self, supernet: DartsSupernet, choices: Sequence[int]) -> None:
        super().__init__()
        self.stem = copy.deepcopy(supernet.stem)
        self.cells = nn.ModuleList()
        for layout in cell_layout(supernet.channels, supernet.layers, supernet.stem_multiplier):
            rows = slice(EDGES_PER_CELL, None) if layout.reduction else slice(0, EDGES_PER_CELL)
            chosen = list(choices)[rows]
            self.cells.append(DiscreteSearchCell(supernet.space.op_names, chosen, *layout))
        self.classifier = copy.deepcopy(supernet.classifier)
        state = supernet.state_dict()
        self.load_state_dict({k: state[k] for k in self.state_dict()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))
