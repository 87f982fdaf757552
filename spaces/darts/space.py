"""The DARTS CNN space as a :class:`~spaces.base.SearchSpace`, and RobustDARTS's S1-S4.

28 edges (the normal cell's 14, then the reduction cell's 14), each choosing an op;
the topology rule keeps two inputs per intermediate node, so a cell is 16 kept edges and
12 ``none`` ones. Variants after RobustDARTS (Zela et al., ICLR 2020; pairs from its
``src/spaces.py``): ``darts-s1`` its published per-edge pairs, ``darts-s2`` {skip_connect,
sep_conv_3x3}, ``darts-s3`` {none, skip_connect, sep_conv_3x3}, ``darts-s4`` {noise,
sep_conv_3x3}. Where ``none`` is not a candidate it still marks the edges a cell drops.

A network's depth is ``3 * cells_per_stage + 2`` cells (the search supernet's 8 at
``cells_per_stage=2``, the evaluation network's 20 at 6). There is no tabular ground
truth here (``benchmark`` is None): a genotype is judged by retraining it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError
from spaces.base import Choices, SearchSpace, Topology
from spaces.darts.genotype import (
    CELL_EDGES,
    CONCAT,
    choices_to_genotype,
    genotype_to_choices,
    parse_genotype,
)
from spaces.darts.ops import EXTRA_OPS, OP_NAMES, PARAMETER_FREE_OPS

_S1_NORMAL = (
    ("skip_connect", "dil_conv_3x3"), ("skip_connect", "dil_conv_5x5"),
    ("skip_connect", "dil_conv_5x5"), ("skip_connect", "sep_conv_3x3"),
    ("skip_connect", "dil_conv_3x3"), ("max_pool_3x3", "skip_connect"),
    ("skip_connect", "sep_conv_3x3"), ("skip_connect", "sep_conv_3x3"),
    ("skip_connect", "dil_conv_3x3"), ("skip_connect", "sep_conv_3x3"),
    ("max_pool_3x3", "skip_connect"), ("skip_connect", "dil_conv_3x3"),
    ("dil_conv_3x3", "dil_conv_5x5"), ("dil_conv_3x3", "dil_conv_5x5"),
)  # fmt: skip
_S1_REDUCE = (
    ("max_pool_3x3", "avg_pool_3x3"), ("max_pool_3x3", "dil_conv_3x3"),
    ("max_pool_3x3", "avg_pool_3x3"), ("max_pool_3x3", "avg_pool_3x3"),
    ("skip_connect", "dil_conv_5x5"), ("max_pool_3x3", "avg_pool_3x3"),
    ("max_pool_3x3", "sep_conv_3x3"), ("skip_connect", "dil_conv_3x3"),
    ("skip_connect", "dil_conv_5x5"), ("max_pool_3x3", "avg_pool_3x3"),
    ("max_pool_3x3", "avg_pool_3x3"), ("skip_connect", "dil_conv_5x5"),
    ("skip_connect", "dil_conv_5x5"), ("skip_connect", "dil_conv_5x5"),
)  # fmt: skip
VARIANTS: dict[str, tuple[tuple[str, ...], ...] | None] = {
    "darts": None,
    "darts-s1": _S1_NORMAL + _S1_REDUCE,
    "darts-s2": (("skip_connect", "sep_conv_3x3"),) * 28,
    "darts-s3": (("none", "skip_connect", "sep_conv_3x3"),) * 28,
    "darts-s4": (("noise", "sep_conv_3x3"),) * 28,
}
NODES = {node: [e for e, (_, j) in enumerate(CELL_EDGES) if j == node] for node in CONCAT}


class DartsSpace(SearchSpace):
    edges = CELL_EDGES * 2
    parameter_free_ops = PARAMETER_FREE_OPS
    topology = Topology.TWO_INPUTS_PER_NODE
    benchmark = None
    # The search supernet runs in float32, uncompiled, in the default memory format. Its
    # cells are fused by default (each cell's work grouped by source node,
    # spaces/darts/fused.py, equal to the op-by-op cell to float tolerance,
    # tests/test_darts_fused.py); compute.cell=reference runs op by op, as the DARTS code
    # does. The cell is part of the run key. Channels-last is refused: the fused cell is
    # exact in it but no faster, its depthwise convolutions and pools already running in
    # channels-last locally; torch.compile made a step slower (graph breaks where the
    # cells read their mixing weights; docs/darts-space.md).
    compute_support = {"cell": ("fused", "reference"), "channels_last": (False,),
                       "autocast": ("none",), "compile": (False,)}  # fmt: skip

    def __init__(self, name: str = "darts") -> None:
        if name not in VARIANTS:
            raise HarnessError(f"unknown DARTS space {name!r}; available: {', '.join(VARIANTS)}")
        self.name = name
        groups = VARIANTS[name]
        self.op_names = OP_NAMES + (EXTRA_OPS if name == "darts-s4" else ())
        candidates = None
        if groups is not None:
            candidates = [[self.op_names.index(op) for op in group] for group in groups]
        else:
            candidates = [range(len(OP_NAMES))] * len(self.edges)
        super().__init__(candidates)
        self.none = self.op_names.index("none")

    @property
    def edge_names(self) -> tuple[str, ...]:
        return tuple(
            f"{'normal' if e < len(CELL_EDGES) else 'reduce'} {j}<-{i}"
            for e, (i, j) in enumerate(self.edges)
        )

    @property
    def edge_groups(self) -> tuple[tuple[int, ...], ...]:
        half = len(CELL_EDGES)
        return tuple(range(half)), tuple(range(half, 2 * half))

    @property
    def node_inputs(self) -> tuple[tuple[tuple[int, ...], ...], ...]:
        return tuple(
            tuple(tuple(offset + e for e in edges) for edges in NODES.values())
            for offset in (0, len(CELL_EDGES))
        )

    def _kept_ops(self, edge: int) -> list[int]:
        return [k for k in self.candidates[edge] if k != self.none]

    @property
    def num_cells(self) -> int:
        total = 1
        for offset in (0, len(CELL_EDGES)):
            for edges in NODES.values():
                sizes = [len(self._kept_ops(offset + e)) for e in edges]
                total *= sum(sizes[a] * sizes[b] for a in range(len(sizes))
                             for b in range(a + 1, len(sizes)))  # fmt: skip
        return total

    def contains(self, choices: Sequence[int]) -> bool:
        try:
            self.check_cell(choices)
        except HarnessError:
            return False
        return True

    def contains_many(self, choices: np.ndarray) -> np.ndarray:
        return np.array([self.contains(row) for row in np.asarray(choices).reshape(-1, 28)])

    def check_cell(self, choices: Sequence[int]) -> Choices:
        choices = tuple(int(k) for k in choices)
        if len(choices) != self.num_edges or any(not 0 <= k < self.num_ops for k in choices):
            raise HarnessError(f"a cell of space {self.name} is {self.num_edges} op indices in "
                               f"0..{self.num_ops - 1}")  # fmt: skip
        for offset in (0, len(CELL_EDGES)):
            for node, edges in NODES.items():
                kept = [offset + e for e in edges if choices[offset + e] != self.none]
                if len(kept) != 2:
                    cell = "normal" if offset == 0 else "reduce"
                    raise HarnessError(f"{cell} node {node} keeps {len(kept)} inputs; DARTS "
                                       "cells keep 2 per node")  # fmt: skip
                for e in kept:
                    if choices[e] not in self.candidates[e]:
                        raise HarnessError(
                            f"edge {self.edge_names[e]} holds {self.op_names[choices[e]]}, not "
                            f"one of its candidates in space {self.name}: "
                            f"{', '.join(self.candidate_names(e))}"
                        )
        return choices

    def cells(self) -> Iterator[Choices]:
        raise HarnessError(f"space {self.name} has {self.num_cells:.3g} cells: too many to list")

    def random_cell(self, generator: np.random.Generator) -> Choices:
        choices = [self.none] * self.num_edges
        for offset in (0, len(CELL_EDGES)):
            for edges in NODES.values():
                for e in sorted(generator.choice(edges, size=2, replace=False).tolist()):
                    ops = self._kept_ops(offset + e)
                    choices[offset + e] = int(ops[generator.integers(0, len(ops))])
        return tuple(choices)

    def discretise(self, scores: np.ndarray) -> Choices:
        """The DARTS rule: per edge its best candidate other than ``none``; per node the two
        edges whose best op scores highest (ties to the earlier edge / op)."""
        scores = np.array(scores, dtype=np.float64).reshape(self.num_edges, self.num_ops)
        scores[~self.candidate_mask | np.isnan(scores)] = -np.inf
        scores[:, self.none] = -np.inf
        choices = [self.none] * self.num_edges
        for offset in (0, len(CELL_EDGES)):
            for edges in NODES.values():
                rows = [offset + e for e in edges]
                best = {e: (int(np.argmax(scores[e])) if np.isfinite(scores[e]).any()
                            else self._kept_ops(e)[0]) for e in rows}  # fmt: skip
                strength = {e: scores[e, best[e]] for e in rows}
                for e in sorted(rows, key=lambda e: (-strength[e], e))[:2]:
                    choices[e] = best[e]
        return tuple(choices)

    def encode_unchecked(self, choices: Sequence[int]) -> str:
        return repr(choices_to_genotype(choices, self.op_names))

    def decode_unchecked(self, genotype: str) -> Choices:
        return genotype_to_choices(parse_genotype(genotype), self.op_names)

    def build_supernet(self, settings: Any, num_classes: int, compute: Any = None):
        from spaces.darts.search import DartsSupernet

        layers = 3 * settings.cells_per_stage + 2
        cell = "reference" if compute is None else compute.cell
        return DartsSupernet(self, settings.channels, layers, num_classes, cell_impl=cell)

    def build_network(self, choices: Sequence[int], settings: Any, num_classes: int):
        """DARTS's evaluation network of the cell pair: ``settings.layers`` cells of
        ``settings.channels``, the auxiliary head when ``settings.auxiliary_weight`` > 0, in
        channels-last memory when ``settings.channels_last``."""
        from spaces.darts.networks import DartsEvalNetwork

        genotype = choices_to_genotype(choices, self.op_names)
        return DartsEvalNetwork(genotype, settings.channels, settings.layers, num_classes,
                                auxiliary=settings.auxiliary_weight > 0,
                                channels_last=settings.channels_last)  # fmt: skip

    def retrain_key_fields(self) -> dict[str, Any]:
        # The genotype text names its ops, and every DARTS space retrains it as the same
        # evaluation network: one cell, one retrain, whichever variant selected it (and the
        # keys of retrains stored before spaces carried this member).
        return {}

    def draw_cell(self, genotype: str, path: str | Path, title: str | None = None) -> Path:
        """The normal and the reduction cell side by side, as the DARTS paper draws them."""
        from spaces.darts.diagram import draw_genotype

        return draw_genotype(parse_genotype(genotype), path, title)

    def discrete_from_supernet(self, supernet, choices: Sequence[int]):
        from spaces.darts.search import DiscreteSearchNetwork

        return DiscreteSearchNetwork(supernet, self.check_cell(choices))


def darts_space(name: str, ops: str | None = None, edge_ops: str | None = None) -> DartsSpace:
    """The space ``name``; DARTS spaces fix their candidates (S1-S4 are the narrowed ones)."""
    if ops is not None or edge_ops is not None:
        raise HarnessError(
            f"space {name} fixes its candidate ops: use one of the named variants "
            f"({', '.join(VARIANTS)}) instead of space.ops / space.edge_ops"
        )
    return DartsSpace(name)


SPACES = {
    "darts": (darts_space, "the DARTS CNN space (8 ops, normal + reduction cell, two inputs "
              "per node; no tabular ground truth: judged by harness retrain)"),
    "darts-s1": (darts_space, "RobustDARTS S1: its published two ops per edge"),
    "darts-s2": (darts_space, "RobustDARTS S2: {skip_connect, sep_conv_3x3}"),
    "darts-s3": (darts_space, "RobustDARTS S3: {none, skip_connect, sep_conv_3x3}"),
    "darts-s4": (darts_space, "RobustDARTS S4: {noise, sep_conv_3x3}"),
}  # fmt: skip
