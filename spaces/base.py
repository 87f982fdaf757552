"""The protocol every search space follows.

A space is a cell: nodes joined by edges, each edge choosing one op from its candidate
set (a subset of the space's op vocabulary), plus a topology rule saying which edges a
discrete cell keeps. Selection methods, supernet algorithms, training, records and the
report only ever talk to a space through this class, so adding a space is one package
under ``spaces/`` plus its tests (see ``docs/adding-a-space.md``).

Cells are *choices*: one op index (into :attr:`SearchSpace.op_names`) per edge, in
:attr:`SearchSpace.edges` order. Scores and mixing matrices are ``edges x ops`` over the
whole vocabulary; ops outside an edge's candidate set are never mixed, scored or chosen.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from harness.errors import HarnessError

Choices = tuple[int, ...]

# The topology rules a space can have: NB201 keeps every edge of the cell; the DARTS
# space keeps two inputs per intermediate node (the edges with the strongest ops).
TOPOLOGY_RULES = ("every-edge", "two-inputs-per-node")


class SearchSpace:
    """A cell search space. Subclasses set the class attributes and the builders.

    ``candidates[e]``: the op indices edge ``e`` may take (ascending); a space whose every
    edge takes every op is *full*. ``benchmark`` names the tabular benchmark whose ground
    truth covers every cell of the space (None when there is none).
    """

    name: str
    op_names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]  # (input node, output node)
    parameter_free_ops: frozenset[str]
    topology: str = "every-edge"
    benchmark: str | None = None
    # The compute.* values the space's supernet can honour (field -> allowed values, the
    # first the one a default falls back to); a field left out takes any value.
    compute_support: dict[str, tuple[Any, ...]] = {}
    # Whether the space's reference search cells put a bias on a convolution before an
    # affine-free BatchNorm (``space.cell_conv_bias`` left unset), and whether the setting
    # can change it here.
    reference_conv_bias: bool = False
    conv_bias_settable: bool = False

    def __init__(self, candidates: Sequence[Sequence[int]] | None = None) -> None:
        every = tuple(range(len(self.op_names)))
        chosen = tuple(every for _ in self.edges) if candidates is None else candidates
        self.candidates: tuple[tuple[int, ...], ...] = tuple(
            tuple(sorted({int(k) for k in ops})) for ops in chosen
        )
        if len(self.candidates) != len(self.edges):
            raise HarnessError(
                f"space {self.name} has {len(self.edges)} edges; {len(self.candidates)} "
                "candidate sets were given"
            )
        for edge, ops in zip(self.edge_names, self.candidates, strict=True):
            if not ops or any(not 0 <= k < len(self.op_names) for k in ops):
                raise HarnessError(
                    f"space {self.name}: edge {edge} needs at least one candidate op from "
                    f"{', '.join(self.op_names)}"
                )
        if self.topology not in TOPOLOGY_RULES:
            raise HarnessError(f"space {self.name}: unknown topology rule {self.topology!r}")

    # -- shape -------------------------------------------------------------------------
    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def num_ops(self) -> int:
        return len(self.op_names)

    @property
    def edge_names(self) -> tuple[str, ...]:
        return tuple(f"{j}<-{i}" for i, j in self.edges)

    @property
    def label(self) -> str:
        """The name shown in tables: the name, plus the candidates when settings narrow it."""
        return self.name

    @property
    def is_full(self) -> bool:
        return all(len(ops) == self.num_ops for ops in self.candidates)

    @property
    def candidate_mask(self) -> np.ndarray:
        """Edges x ops, True where the op is a candidate of the edge."""
        mask = np.zeros((self.num_edges, self.num_ops), dtype=bool)
        for e, ops in enumerate(self.candidates):
            mask[e, list(ops)] = True
        return mask

    @property
    def num_cells(self) -> int:
        return int(np.prod([len(ops) for ops in self.candidates]))

    @property
    def edge_groups(self) -> tuple[tuple[int, ...], ...]:
        """Edges of each kind of cell the space searches (DARTS: normal, reduction).
        Progressive methods decide one edge of every group per step, as DARTS-PT does."""
        return (tuple(range(self.num_edges)),)

    @property
    def node_inputs(self) -> tuple[tuple[tuple[int, ...], ...], ...]:
        """Per edge group, the input edges of every node the topology rule prunes (only
        for ``two-inputs-per-node``: each such node keeps two of them)."""
        return tuple(() for _ in self.edge_groups)

    def candidate_names(self, edge: int) -> list[str]:
        return [self.op_names[k] for k in self.candidates[edge]]

    def describe(self) -> dict[str, Any]:
        """What the space is, for records: its name and each edge's candidate ops."""
        return {
            "name": self.name,
            "topology": self.topology,
            "cells": self.num_cells,
            "candidates": {
                edge: self.candidate_names(e) for e, edge in enumerate(self.edge_names)
            },
        }

    # -- cells -------------------------------------------------------------------------
    def contains(self, choices: Sequence[int]) -> bool:
        choices = tuple(choices)
        return len(choices) == self.num_edges and all(
            int(k) in ops for k, ops in zip(choices, self.candidates, strict=True)
        )

    def contains_many(self, choices: np.ndarray) -> np.ndarray:
        """Rows of a cells x edges array of op indices that are cells of this space."""
        choices = np.asarray(choices, dtype=np.int64).reshape(-1, self.num_edges)
        mask = self.candidate_mask
        inside = np.ones(len(choices), dtype=bool)
        for e in range(self.num_edges):
            inside &= mask[e, choices[:, e]]
        return inside

    def check_cell(self, choices: Sequence[int]) -> Choices:
        """``choices`` as a tuple, or one sentence on why it is not a cell of this space."""
        choices = tuple(int(k) for k in choices)
        if len(choices) != self.num_edges or any(not 0 <= k < self.num_ops for k in choices):
            raise HarnessError(
                f"{list(choices)} is not a cell of space {self.name}: it needs "
                f"{self.num_edges} op indices in 0..{self.num_ops - 1}"
            )
        for e, (k, ops) in enumerate(zip(choices, self.candidates, strict=True)):
            if k not in ops:
                raise HarnessError(
                    f"cell {self.encode_unchecked(choices)} is not in space {self.name}: edge "
                    f"{self.edge_names[e]} holds {self.op_names[k]}, but its candidates are "
                    f"{', '.join(self.candidate_names(e))}"
                )
        return choices

    def output_reachable(self, choices: Sequence[int]) -> bool:
        """Whether the cell's input reaches its output through ops other than ``none``.

        This default says True: it is right for spaces whose topology rule always connects
        input and output (the DARTS space keeps two inputs other than ``none`` per node and
        concatenates every node). A space whose cells can route only through ``none``
        overrides it: such a cell outputs nothing of its input (NAS-Bench-201 scores it at
        chance, 10 % on CIFAR-10), and the report counts those selections apart.
        """
        return True

    def cells(self) -> Iterator[Choices]:
        """Every cell of the space, the last edge changing fastest."""
        return itertools.product(*self.candidates)

    def random_cell(self, generator: np.random.Generator) -> Choices:
        """A uniformly random cell of the space."""
        sizes = [len(ops) for ops in self.candidates]
        if len(set(sizes)) == 1:
            positions = generator.integers(0, sizes[0], size=self.num_edges)
        else:
            positions = generator.integers(0, sizes)
        return tuple(
            int(ops[p]) for ops, p in zip(self.candidates, positions.tolist(), strict=True)
        )

    def discretise(self, scores: np.ndarray) -> Choices:
        """The topology rule: a cell from per-edge, per-op scores (higher = better); here
        ``every-edge`` (a space with another rule overrides this).

        Ops that are not candidates, and NaN scores, never win; ties go to the earlier op.
        """
        scores = np.array(scores, dtype=np.float64).reshape(self.num_edges, self.num_ops)
        scores[~self.candidate_mask | np.isnan(scores)] = -np.inf
        if self.topology != "every-edge":
            raise NotImplementedError(f"topology rule {self.topology} of space {self.name}")
        # An edge with no finite score keeps its first candidate: it must be decided somehow.
        return tuple(
            int(np.argmax(row)) if np.isfinite(row).any() else self.candidates[e][0]
            for e, row in enumerate(scores)
        )

    def empty_scores(self) -> np.ndarray:
        return np.full((self.num_edges, self.num_ops), np.nan)

    # -- what a space package provides --------------------------------------------------
    def canonical_settings(self) -> dict[str, Any]:
        """Space settings (field -> value) that name this space in one canonical spelling,
        so that one space never gets two store keys."""
        return {}

    def encode(self, choices: Sequence[int]) -> str:
        """Choices -> the space's genotype string (the cell must be in the space)."""
        return self.encode_unchecked(self.check_cell(choices))

    def decode(self, genotype: str) -> Choices:
        """Genotype string -> choices (the cell must be in the space)."""
        return self.check_cell(self.decode_unchecked(genotype))

    def encode_unchecked(self, choices: Sequence[int]) -> str:
        raise NotImplementedError

    def decode_unchecked(self, genotype: str) -> Choices:
        raise NotImplementedError

    def build_supernet(self, settings: Any, num_classes: int, compute: Any = None):
        """The weight-sharing supernet (``settings``: :class:`harness.config.SpaceSettings`)."""
        raise NotImplementedError

    def build_network(self, choices: Sequence[int], settings: Any, num_classes: int):
        """The discrete network of one cell."""
        raise NotImplementedError

    def discrete_from_supernet(self, supernet, choices: Sequence[int]):
        """The discrete network of ``choices`` carrying the supernet's parameters."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.num_cells} cells)"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SearchSpace)
            and (self.name, self.candidates) == (other.name, other.candidates)
        )

    def __hash__(self) -> int:
        return hash((self.name, self.candidates))


class NotACandidate(nn.Module):
    """Stands in for an op outside an edge's candidate set: no parameters, never run.

    Keeping its place in an edge's ``ops`` keeps module names (``ops.<op index>``) the same
    in every subset of a space, so their checkpoints name ops alike.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(f"{self.name} is not a candidate op of this edge; its weight must be 0")


class AlphaMixing:
    """What every supernet does with its ``alphas`` and ``active_ops`` (a mixin for
    ``nn.Module`` supernets): the parameter groups and the masked softmax."""

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "alphas"]

    def mixing_weights(self, alphas: torch.Tensor | None = None) -> torch.Tensor:
        alphas = self.alphas if alphas is None else alphas
        masked = alphas.masked_fill(~self.active_ops, float("-inf"))
        return torch.softmax(masked, dim=-1)


class Supernet(Protocol):
    """What methods and algorithms use of a space's weight-sharing supernet.

    ``alphas`` and every mixing matrix are ``edges x ops`` over :attr:`space`'s vocabulary;
    ops outside ``active_ops`` (never outside the space's candidates) get weight 0.
    """

    space: SearchSpace
    alphas: nn.Parameter
    active_ops: torch.Tensor  # edges x ops, bool
    training: bool

    @property
    def num_search_cells(self) -> int: ...

    def mixing_weights(self, alphas: torch.Tensor | None = None) -> torch.Tensor: ...

    def arch_parameters(self) -> list[nn.Parameter]: ...

    def weight_parameters(self) -> list[nn.Parameter]: ...

    def __call__(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Logits with the ops mixed by ``weights`` (edges x ops, or one matrix per
        search cell); None: :meth:`mixing_weights`."""
        ...

    def candidate_logits(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Logits (K x batch x classes) under each of K matrices, as K calls would give."""
        ...

    def op_modules(self, op: int) -> list[nn.Module]:
        """Op ``op``'s module on every edge (that has it) of every search cell."""
        ...

