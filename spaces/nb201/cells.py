"""NAS-Bench-201 cells: the discrete cell of one architecture and the reference search cell.

The search cell here is the reference implementation, written op by op as the benchmark's
code does; :mod:`spaces.nb201.fused` holds a faster cell with the same parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from spaces.base import NotACandidate
from spaces.nb201.codec import EDGES, NUM_EDGES, NUM_NODES
from spaces.nb201.ops import OP_NAMES, BatchNormSettings, build_op


def sum_nodes(terms: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
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
            nodes.append(sum_nodes(terms, x))
        return nodes[-1]


class MixedEdge(nn.Module):
    """The candidate ops of one edge, mixed by an explicit row of weights.

    Ops whose weight is exactly zero are not computed (so a one-hot row costs one op);
    ``none`` never is, since it contributes zeros whatever its weight. The gradient
    with respect to an exactly-zero weight is therefore reported as zero. ``candidates``
    (op indices; default all) are built, the other ops are :class:`NotACandidate`.
    """

    def __init__(
        self, channels: int, bn: BatchNormSettings, candidates: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        wanted = range(len(OP_NAMES)) if candidates is None else set(candidates)
        self.ops = nn.ModuleList(
            build_op(name, channels, bn) if k in wanted else NotACandidate(name)
            for k, name in enumerate(OP_NAMES)
        )

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
        return sum_nodes(terms, x)


class SearchCell(nn.Module):
    def __init__(
        self,
        channels: int,
        bn: BatchNormSettings,
        candidates: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        per_edge = [None] * NUM_EDGES if candidates is None else list(candidates)
        self.edges = nn.ModuleList(MixedEdge(channels, bn, ops) for ops in per_edge)

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
            nodes.append(sum_nodes(terms, x))
        return nodes[-1]
