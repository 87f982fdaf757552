"""Topology selection: which two inputs each intermediate node keeps (the DARTS space).

In a space whose topology rule is ``two-inputs-per-node`` the progressive methods first
decide an op for every edge (:func:`~methods.selection.progressive.decide_edges`), then
prune every node's inputs to two with :func:`prune_inputs`, after DARTS-PT's topology
projection (ruocwang/darts-pt ``sota/cnn/projection.py``, ``project_edge``):

* nodes are taken one per edge group (normal, then reduction cell) per step, in a seeded
  random order (``edge_order`` ``random``) or node order (``sequential``, ``greedy``);
  the working copy is fine-tuned between steps as between op decisions. With
  ``independent`` every node is pruned against the same op-decided matrix.
* per node, every remaining input edge is measured with its row zeroed (the method's own
  scorer: :meth:`~methods.selection.progressive.EdgeScorer.edge_importance`) and the least
  needed one is dropped, until two remain; among equals the later edge goes, as in the
  reference. As there, the matrix is not updated between those rounds (it only matters
  when every measurement reads fresh data, darts-pt's ``scoring_data=reshuffled``).
* an edge kept by the topology but decided to ``none`` by the op phase (darts-pt lets
  ``none`` compete, as its reference does) gets the edge's first other candidate: that is
  what the reference's genotype rule reads off the projected (one-hot ``none``) row.

The measurement is each method's own: darts-pt the validation accuracy drop, ostr the
validation loss rise (operation strength applied to a whole edge: the edge replaced by
nothing), opp-loss the training loss rise. Selections record the rule and the importance
of every measured edge (``Selection.topology``).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from methods.selection.base import SelectionContext, SelectionCost, edge_order, fixed_weights
from methods.selection.finetune import finetune
from spaces.base import SearchSpace, Supernet


class EdgeImportance(Protocol):
    """What pruning needs of a method's scorer (``progressive.EdgeScorer`` has it): how much
    the supernet needs each edge at ``W`` (higher = keep it)."""

    def edge_importance(
        self, net: Supernet, weights: torch.Tensor, edges: list[int]
    ) -> dict[int, float]: ...

# Streams of the seeded node order, apart from the edge orders' (seed, group) streams.
_NODE_ORDER_STREAM = 1000


def prune_inputs(
    net: Supernet,
    context: SelectionContext,
    cost: SelectionCost,
    score: EdgeImportance,
    decided: dict[int, int],
    order: str,
    steps: int,
    finetune_lr: float,
    train_alphas: bool,
) -> tuple[list[int], dict]:
    """The cell (op per edge, ``none`` on dropped edges) and what the pruning saw."""
    space = net.space
    none = space.op_names.index("none")
    queues = []
    for g, nodes in enumerate(space.node_inputs):
        pruned = [list(inputs) for inputs in nodes if len(inputs) > 2]
        if order == "random":
            picks = edge_order([context.seed, _NODE_ORDER_STREAM + g], list(range(len(pruned))))
            pruned = [pruned[i] for i in picks]
        queues.append(pruned)
    if order == "independent":
        queues = [[inputs for queue in queues for inputs in queue]]
    total = sum(len(queue) for queue in queues)
    importance = np.full(space.num_edges, np.nan)
    dropped: list[int] = []
    node_sequence: list[list[int]] = []
    base_rows = dict(decided)
    while len(node_sequence) < total:
        for queue in queues:
            if not queue:
                continue
            inputs = queue.pop(0)
            if order != "independent":
                base_rows = {**decided, **{e: none for e in dropped}}
            weights = fixed_weights(net.mixing_weights().detach(), base_rows)
            kept = list(inputs)
            while len(kept) > 2:
                values = score.edge_importance(net, weights, kept)
                for e, value in values.items():
                    if np.isnan(importance[e]):  # the first round's, before any drop
                        importance[e] = value
                least = min(values.values())
                drop = [e for e in kept if values[e] == least][-1]
                kept.remove(drop)
                dropped.append(drop)
            node_sequence.append(list(inputs))
        if steps and len(node_sequence) < total:
            finetune(
                net, context, {**decided, **{e: none for e in dropped}}, steps, finetune_lr,
                train_alphas, cost, stream=space.num_edges + len(node_sequence),
            )  # fmt: skip
            score.network_changed()
    return pruned_cell(space, decided, dropped, importance, node_sequence)


def pruned_cell(
    space: SearchSpace,
    decided: dict[int, int],
    dropped: list[int],
    importance: np.ndarray,
    node_order: list,
) -> tuple[list[int], dict]:
    """The cell after pruning (``none`` on dropped edges, each kept edge its decided op) and
    the record of what the pruning saw, as every topology rule stores it."""
    none = space.op_names.index("none")
    choices = [
        none if e in dropped else kept_op(space, e, decided[e]) for e in range(space.num_edges)
    ]
    record = {
        "importance": [None if np.isnan(v) else float(v) for v in importance],
        "dropped": sorted(dropped),
        "node_order": node_order,
    }
    return choices, record


def kept_op(space: SearchSpace, edge: int, op: int) -> int:
    """``op``, or for ``none`` on a kept edge the edge's first other candidate."""
    if space.op_names[op] != "none":
        return op
    return next(k for k in space.candidates[edge] if k != op)
