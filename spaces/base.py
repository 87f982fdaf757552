"""The protocol every search space follows.

A space is a cell: nodes joined by edges, each edge choosing one op from its candidate
set (a subset of the space's op vocabulary), plus a topology rule saying which edges a
discrete cell keeps. Selection methods, supernet algorithms, training, records and the
report only ever talk to a space through this class, so adding a space is one package
under ``spaces/`` plus its tests (see ``docs/adding-a-space.md``).

Cells are *choices*: one op index (into :attr:`SearchSpace.op_names`) per edge, in
:attr:`SearchSpace.edges` order. Scores and mixing matrices are ``edges x ops`` over the
whole vocabulary; ops outside an edge's candidate set are never mixed, scored or chosen.

What a space must provide is abstract here: a class that leaves one out, or sets no
``name``, ``op_names``, ``edges`` or ``parameter_free_ops``, fails when it is built, with
one sentence naming what is missing. Spaces are registered by name in :mod:`spaces`
(built-ins in ``SPACE_MODULES``, others with :func:`spaces.register_space`).
"""

from __future__ import annotations

import abc
import enum
import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from harness.errors import HarnessError

Choices = tuple[int, ...]


class Topology(enum.StrEnum):
    """The rule a discrete cell follows. NB201 keeps every edge of the cell; the DARTS space
    keeps two inputs per intermediate node (the edges with the strongest ops).

    The values are what records hold (``describe()``, store keys): a member equals its
    value as a string, so stored records and keys read the same as before it was typed.
    """

    EVERY_EDGE = "every-edge"
    TWO_INPUTS_PER_NODE = "two-inputs-per-node"

    @property
    def prunes_inputs(self) -> bool:
        """Whether a discrete cell drops some edges (marked ``none``) by this rule."""
        return self is not Topology.EVERY_EDGE


# The class attributes every space sets (on the class or in ``__init__`` before calling
# ``SearchSpace.__init__``), checked once when a space is built.
DECLARED = ("name", "op_names", "edges", "parameter_free_ops")


class SearchSpace(abc.ABC):
    """A cell search space. Subclasses set the class attributes and the builders.

    ``candidates[e]``: the op indices edge ``e`` may take (ascending); a space whose every
    edge takes every op is *full*. ``benchmark`` names the tabular benchmark whose ground
    truth covers every cell of the space (None when there is none).
    """

    name: str
    op_names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]  # (input node, output node)
    parameter_free_ops: frozenset[str]
    topology: Topology = Topology.EVERY_EDGE
    benchmark: str | None = None
    # The compute.* values the space's supernet can honour (field -> allowed values, the
    # first the space's default: a field the user did not set takes it); a field left out
    # takes any value.
    compute_support: dict[str, tuple[Any, ...]] = {}
    # Whether the space's reference search cells put a bias on a convolution before an
    # affine-free BatchNorm (``space.cell_conv_bias`` left unset), and whether the setting
    # can change it here.
    reference_conv_bias: bool = False
    conv_bias_settable: bool = False

    def __new__(cls, *args: Any, **kwargs: Any):
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise HarnessError(
                f"space class {cls.__name__} does not implement {', '.join(missing)}: every "
                "search space provides them (see spaces.base.SearchSpace and "
                "docs/adding-a-space.md)"
            )
        return super().__new__(cls)

    def __init__(self, candidates: Sequence[Sequence[int]] | None = None) -> None:
        self._check_declaration()
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

    def _check_declaration(self) -> None:
        """The class attributes, once, in one sentence each: what a space declares."""
        kind = type(self).__name__
        absent = [attr for attr in DECLARED if not hasattr(self, attr)]
        if absent:
            raise HarnessError(f"space class {kind} sets no {', '.join(absent)}: every search "
                               f"space declares {', '.join(DECLARED)}")  # fmt: skip
        if not (isinstance(self.name, str) and self.name):
            raise HarnessError(f"space class {kind}: name must be a non-empty string")
        ops = self.op_names
        if not (isinstance(ops, tuple) and ops and all(isinstance(o, str) and o for o in ops)
                and len(set(ops)) == len(ops)):  # fmt: skip
            raise HarnessError(f"space {self.name}: op_names must be a tuple of distinct op "
                               f"names, not {ops!r}")  # fmt: skip
        edges = self.edges
        if not (isinstance(edges, tuple) and edges and all(
                isinstance(e, tuple) and len(e) == 2 and all(type(n) is int for n in e)
                and 0 <= e[0] < e[1] for e in edges)):  # fmt: skip
            raise HarnessError(f"space {self.name}: edges must be a tuple of (input node, "
                               "output node) pairs, input smaller than output")  # fmt: skip
        if not (isinstance(self.parameter_free_ops, frozenset | set)
                and all(isinstance(o, str) for o in self.parameter_free_ops)):  # fmt: skip
            raise HarnessError(f"space {self.name}: parameter_free_ops must be a set of op "
                               "names")  # fmt: skip
        try:
            self.topology = Topology(self.topology)
        except ValueError:
            raise HarnessError(
                f"space {self.name}: unknown topology rule {self.topology!r}; one of "
                f"{', '.join(t.value for t in Topology)}"
            ) from None

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
    def prunes_inputs(self) -> bool:
        """Whether the topology rule drops edges of a discrete cell (marked ``none``)."""
        return self.topology.prunes_inputs

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
        for :attr:`Topology.TWO_INPUTS_PER_NODE`: each such node keeps two of them)."""
        return tuple(() for _ in self.edge_groups)

    def candidate_names(self, edge: int) -> list[str]:
        return [self.op_names[k] for k in self.candidates[edge]]

    def describe(self) -> dict[str, Any]:
        """What the space is, for records: its name and each edge's candidate ops."""
        return {
            "name": self.name,
            "topology": self.topology.value,
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
        if self.topology is not Topology.EVERY_EDGE:
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

    def canonical_key(self, genotype: str) -> str:
        """``genotype`` as this space prints it, so one cell has one key (retrain store keys,
        the records' join of retrains to selections) however its text was spelt.

        Read by the codec alone (:meth:`decode_unchecked`): a cell outside the candidate sets
        still has a key. One sentence when the codec cannot read it."""
        return self.encode_unchecked(self.decode_unchecked(genotype))

    def draw_cell(self, genotype: str, path: str | Path, title: str | None = None) -> Path:
        """A diagram of the cell into ``path`` (format by suffix: .png, .pdf or .svg).

        This default draws the cell's nodes left to right and every edge whose op is not
        ``none``, labelled with its op (:mod:`spaces.diagram`); a space with a diagram of its
        own (the DARTS space's two cells) overrides it."""
        from spaces.diagram import draw_edges

        choices = self.decode_unchecked(genotype)
        edges = [(i, j, self.op_names[k]) for (i, j), k in zip(self.edges, choices, strict=True)]
        return draw_edges(edges, path, title)

    def retrain_key_fields(self) -> dict[str, Any]:
        """What of the space, beside the canonical genotype, names a retrain in the store
        (``harness retrain``'s key): by default the space's name. A space family whose
        genotype text alone fixes the network it trains returns what that family shares (or
        nothing), so one cell is retrained once whichever of its spaces selected it."""
        return {"space": self.name}

    @abc.abstractmethod
    def encode_unchecked(self, choices: Sequence[int]) -> str:
        """Choices -> genotype string, without checking the candidate sets."""

    @abc.abstractmethod
    def decode_unchecked(self, genotype: str) -> Choices:
        """Genotype string -> choices, without checking the candidate sets; one sentence
        (a :class:`~harness.errors.HarnessError`) for text the codec cannot read."""

    @abc.abstractmethod
    def build_supernet(self, settings: Any, num_classes: int, compute: Any = None) -> Supernet:
        """The weight-sharing supernet (``settings``: :class:`harness.config.SpaceSettings`;
        ``compute``: :class:`harness.config.ComputeSettings` or None)."""

    @abc.abstractmethod
    def build_network(self, choices: Sequence[int], settings: Any, num_classes: int) -> nn.Module:
        """The discrete network of one cell that ``harness retrain`` trains from scratch.

        ``choices``: as :meth:`decode_unchecked` gives them (the candidate sets are not
        enforced: a cell is retrained whichever space selected it). ``settings``:
        :class:`harness.retrain_settings.RetrainSettings` (``channels``, ``layers``,
        ``auxiliary_weight``, ``resolution``, ...); refuse in one sentence what the network
        cannot honour. The network's ``forward(x)`` returns logits, or (logits, auxiliary
        logits or None); retraining sets its ``drop_prob`` (the drop-path probability) every
        epoch, which a network without drop-path ignores; an auxiliary head, if any, is the
        submodule ``auxiliary_head`` (left out of the parameter count)."""

    @abc.abstractmethod
    def discrete_from_supernet(self, supernet: Supernet, choices: Sequence[int]) -> nn.Module:
        """The discrete network of ``choices`` carrying the supernet's parameters."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.num_cells} cells)"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SearchSpace)
            and (self.name, self.candidates) == (other.name, other.candidates)
        )

    def __hash__(self) -> int:
        return hash((self.name, self.candidates))


def parameter_count(network: nn.Module, auxiliary: bool = False) -> int:
    """Parameters of ``network``; its auxiliary head's (the submodule ``auxiliary_head``)
    only when asked, as DARTS-family papers count them."""
    return sum(
        p.numel() for name, p in network.named_parameters()
        if auxiliary or not name.startswith("auxiliary_head.")
    )  # fmt: skip


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
        # Inactive ops get exactly 0 even when a diverged alpha is NaN (the softmax would
        # spread the NaN over the row): an op outside the candidates must never run, so
        # the NaN reaches the loss and the training loop's one-sentence stop.
        return torch.softmax(masked, dim=-1).masked_fill(~self.active_ops, 0.0)


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

    def op_by_op(self) -> Supernet:
        """Itself, or an equal supernet (same parameters and buffers) whose every op is a
        module that runs, when this one fuses ops inside its cells: zero-cost proxies hook
        the ReLU modules. A supernet that always runs op by op returns itself."""
        ...

