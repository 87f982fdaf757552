"""NAS-Bench-201 as a :class:`~spaces.base.SearchSpace`, and its op-subset spaces.

Every cell of an op subset is a NAS-Bench-201 cell, so every subset has exact ground
truth. The named subsets follow RobustDARTS's failure-mode spaces (Zela et al., ICLR 2020,
"Understanding and Robustifying Differentiable Architecture Search", Sec. 3), carried over
from the DARTS space's ops to NAS-Bench-201's (``sep_conv_3x3`` -> ``nor_conv_3x3``):

* ``nb201-s2``: {skip_connect, nor_conv_3x3} on every edge (RobustDARTS S2);
* ``nb201-s3``: {none, skip_connect, nor_conv_3x3} on every edge (S3);
* ``nb201-s1``: two ops per edge (S1). RobustDARTS took, per edge, the strongest ops of a
  DARTS search (its released pairs never include ``none``). The rule here, applied once
  and frozen in :data:`S1_PAIRS` so the space never drifts: per edge, the two ops other
  than ``none`` with the largest softmax weight, averaged over seeds 0-4, at the last
  epoch of first-order DARTS on the ``proxy`` preset (supernet alphas only; no
  selection result and no ground truth enters). :func:`strongest_pairs` is that rule.

S4 (noise against sep_conv_3x3) has no NAS-Bench-201 counterpart: its noise op is not a
benchmark op, so its cells have no ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.errors import HarnessError
from spaces.base import SearchSpace, Topology
from spaces.nb201.codec import EDGE_NAMES, EDGES, decode, encode
from spaces.nb201.networks import NB201Network, NB201Supernet, discrete_from_supernet
from spaces.nb201.ops import OP_NAMES, PARAMETER_FREE_OPS, BatchNormSettings

# The proxy darts runs of seeds 0-4 (30 epochs) gave, at epoch 30, mean softmax weights
# (skip, conv1x1, conv3x3, pool) per edge of 1<-0 .1986 .1995 .2199 .1783,
# 2<-0 .2048 .2033 .2129 .1881, 2<-1 .2008 .1976 .2068 .1918, 3<-0 .2204 .1983 .2012 .1993,
# 3<-1 .2065 .2015 .1965 .1952, 3<-2 .2148 .1937 .1909 .2002.
S1_PAIRS: tuple[tuple[str, str], ...] = (
    ("nor_conv_1x1", "nor_conv_3x3"),  # 1<-0
    ("skip_connect", "nor_conv_3x3"),  # 2<-0
    ("skip_connect", "nor_conv_3x3"),  # 2<-1
    ("skip_connect", "nor_conv_3x3"),  # 3<-0
    ("skip_connect", "nor_conv_1x1"),  # 3<-1
    ("skip_connect", "avg_pool_3x3"),  # 3<-2
)

NAMED_SUBSETS: dict[str, tuple[tuple[str, ...], ...]] = {
    "nb201-s1": S1_PAIRS,
    "nb201-s2": (("skip_connect", "nor_conv_3x3"),) * len(EDGES),
    "nb201-s3": (("none", "skip_connect", "nor_conv_3x3"),) * len(EDGES),
}


class NB201Space(SearchSpace):
    """NAS-Bench-201's cell: 4 nodes, 6 edges, every edge kept; ops chosen per edge."""

    op_names = OP_NAMES
    edges = EDGES
    parameter_free_ops = PARAMETER_FREE_OPS
    topology = Topology.EVERY_EDGE
    benchmark = "nas-bench-201"
    # xautodl's NB201 search cells (``bias=not affine``); DARTS-PT's have none
    # (``space.cell_conv_bias=false``, the paper preset).
    reference_conv_bias = True
    conv_bias_settable = True

    def __init__(
        self, candidates: Sequence[Sequence[int]] | None = None, name: str = "nb201"
    ) -> None:
        self.name = name
        super().__init__(candidates)

    @property
    def label(self) -> str:
        ops, edge_ops = canonical_ops(self)
        narrowed = ops or edge_ops
        return f"{self.name}[{narrowed}]" if narrowed else self.name

    def canonical_settings(self) -> dict[str, Any]:
        ops, edge_ops = canonical_ops(self)
        return {"ops": ops, "edge_ops": edge_ops}

    def encode_unchecked(self, choices: Sequence[int]) -> str:
        return encode(choices)

    def decode_unchecked(self, genotype: str) -> tuple[int, ...]:
        return decode(genotype)

    def output_reachable(self, choices: Sequence[int]) -> bool:
        """Whether node 0 (the cell's input) reaches node 3 (its output) along edges whose op
        is not ``none``. A cell that does not is *disconnected*: it passes nothing of its
        input on, and the benchmark scores it at chance (10.00 % on CIFAR-10).

        Ops are judged by name, so any candidate subset of the vocabulary gives the same
        answer for the same cell.
        """
        choices = self.check_cell(choices)
        output = max(target for _, target in self.edges)
        reached = {0}
        # EDGES lists edges by output node, and every input node is smaller than its output:
        # a node's reachability is final before any of its outgoing edges is read.
        for (source, target), op in zip(self.edges, choices, strict=True):
            if source in reached and self.op_names[op] != "none":
                reached.add(target)
        return output in reached

    def build_supernet(self, settings: Any, num_classes: int, compute: Any = None):
        from harness.config import ComputeSettings

        compute = compute or ComputeSettings()
        return NB201Supernet(
            channels=settings.channels,
            cells_per_stage=settings.cells_per_stage,
            num_classes=num_classes,
            cell_bn=BatchNormSettings(
                affine=settings.cell_bn_affine,
                track_running_stats=settings.cell_bn_track_stats,
                conv_bias=self.reference_conv_bias
                if settings.cell_conv_bias is None
                else settings.cell_conv_bias,
            ),
            space=self,
            cell_impl=compute.cell,
            channels_last=compute.channels_last,
            autocast=None if compute.autocast == "none" else compute.autocast,
            compile_cells=compute.compile,
        )

    def build_network(self, choices: Sequence[int], settings: Any, num_classes: int):
        """The benchmark's network of the cell: ``settings.layers`` = 3 N + 2 (N cells per
        stage, two residual reductions), ``settings.channels`` in the first stage, in
        channels-last memory when ``settings.channels_last``. It has no auxiliary head and
        no drop-path."""
        layers, stages = settings.layers, 3
        if (layers - 2) % stages or layers < stages + 2:
            raise HarnessError(
                f"a NAS-Bench-201 network has 3 N + 2 cells (N per stage, two reductions); "
                f"retrain.layers={layers} is not one: use {stages + 2}, {2 * stages + 2}, ..."
            )
        if settings.auxiliary_weight > 0:
            raise HarnessError(f"the NAS-Bench-201 network has no auxiliary head: set "
                               f"retrain.auxiliary_weight=0 for space {self.name}")  # fmt: skip
        choices = tuple(int(k) for k in choices)
        if len(choices) != self.num_edges or any(not 0 <= k < self.num_ops for k in choices):
            self.check_cell(choices)  # one sentence on what the choices lack
        return NB201Network(
            choices,
            channels=settings.channels,
            cells_per_stage=(layers - 2) // stages,
            num_classes=num_classes,
            channels_last=settings.channels_last,
        )

    def retrain_key_fields(self) -> dict[str, Any]:
        # every NAS-Bench-201 space (subsets included) retrains a cell as one network
        return {"space": "nb201"}

    def discrete_from_supernet(self, supernet, choices: Sequence[int]):
        return discrete_from_supernet(supernet, choices)


def nb201_space(name: str, ops: str | None = None, edge_ops: str | None = None) -> NB201Space:
    """The space ``name`` (``nb201`` or a named subset), narrowed by ``ops`` / ``edge_ops``.

    ``ops``: one candidate set for every edge, ops separated by commas. ``edge_ops``: one
    set per edge in the order 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2, sets separated by ``;``.
    Only ``nb201`` takes them: a named subset fixes its own ops.
    """
    if name in NAMED_SUBSETS:
        if ops is not None or edge_ops is not None:
            raise HarnessError(
                f"space {name} fixes its candidate ops; to choose ops use space.name=nb201 "
                "with space.ops or space.edge_ops"
            )
        return NB201Space([_op_indices(group, name) for group in NAMED_SUBSETS[name]], name)
    if name != "nb201":
        raise HarnessError(f"unknown NAS-Bench-201 space {name!r}")
    if ops is not None and edge_ops is not None:
        raise HarnessError("give space.ops (every edge) or space.edge_ops (per edge), not both")
    if ops is not None:
        return NB201Space([_op_indices(ops.split(","), "space.ops")] * len(EDGES))
    if edge_ops is not None:
        groups = edge_ops.split(";")
        if len(groups) != len(EDGES):
            raise HarnessError(
                f"space.edge_ops has {len(groups)} set(s) separated by ';'; NAS-Bench-201 has "
                f"{len(EDGES)} edges ({', '.join(EDGE_NAMES)}), one set each"
            )
        return NB201Space(
            [_op_indices(group.split(","), f"space.edge_ops ({edge})")
             for group, edge in zip(groups, EDGE_NAMES, strict=True)]
        )  # fmt: skip
    return NB201Space()


def canonical_ops(space: NB201Space) -> tuple[str | None, str | None]:
    """(ops, edge_ops) settings that name ``space``'s candidates in one canonical spelling,
    so equal spaces share a store key: the full space is (None, None)."""
    if space.name != "nb201" or space.is_full:
        return None, None
    names = [",".join(space.candidate_names(e)) for e in range(space.num_edges)]
    if len(set(names)) == 1:
        return names[0], None
    return None, ";".join(names)


def _summary(groups: tuple[tuple[str, ...], ...]) -> str:
    return "per-edge pairs" if len(set(groups)) > 1 else "{" + ", ".join(groups[0]) + "}"


# What spaces/__init__.py registers: name -> (builder, one line for --help).
SPACES = {
    "nb201": (nb201_space, "NAS-Bench-201 (5 ops on 6 edges; space.ops / space.edge_ops "
              "narrow it)"),
    **{name: (nb201_space, f"NAS-Bench-201 subset, RobustDARTS-style: {_summary(groups)}")
       for name, groups in NAMED_SUBSETS.items()},
}  # fmt: skip


def strongest_pairs(mean_weights: np.ndarray) -> tuple[tuple[str, str], ...]:
    """The S1 rule: per edge, the two ops other than ``none`` with the largest weight
    (``mean_weights``: edges x ops softmax weights; ties go to the earlier op)."""
    weights = np.asarray(mean_weights, dtype=np.float64).copy()
    weights[:, OP_NAMES.index("none")] = -np.inf
    pairs = []
    for row in weights:
        order = sorted(range(len(OP_NAMES)), key=lambda k: (-row[k], k))[:2]
        pairs.append(tuple(OP_NAMES[k] for k in sorted(order)))
    return tuple(pairs)


def _op_indices(names: Sequence[str], where: str) -> list[int]:
    cleaned = [n.strip() for n in names]
    unknown = [n for n in cleaned if n not in OP_NAMES]
    if unknown or not cleaned:
        raise HarnessError(
            f"{where}: {', '.join(repr(n) for n in unknown) or 'no op'} is not a NAS-Bench-201 "
            f"op; choose from {', '.join(OP_NAMES)}"
        )
    if len(set(cleaned)) != len(cleaned):
        raise HarnessError(f"{where} names an op twice: {','.join(cleaned)}")
    return [OP_NAMES.index(n) for n in cleaned]
