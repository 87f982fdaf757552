"""darts-pt (perturbation-based selection, Wang et al. ICLR 2021).

Edges are decided one at a time. For each active op k of the next undecided edge e,
``W[e, k]`` is zeroed (the other weights keep their values, no renormalisation) and
the supernet is measured on the validation split; the edge is fixed to the op whose
removal hurts most. Between decisions the working copy is fine-tuned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from harness.errors import HarnessError
from methods.selection.base import (
    SelectionContext,
    SelectionCost,
    SelectionMethod,
    edge_order,
    empty_scores,
    fixed_weights,
    working_copy,
)
from methods.selection.finetune import finetune, steps_for
from methods.selection.scoring import measure
from spaces.nb201 import NUM_EDGES, NB201Supernet

EDGE_ORDERS = ("random", "sequential")
CRITERIA = ("accuracy", "loss")
BN_MODES = ("train", "eval")


@dataclass(frozen=True)
class DartsPTOptions:
    edge_order: str = "random"  # "random" (seeded by the run's seed) or "sequential" (0..5)
    criterion: str = "accuracy"  # "accuracy": lowest accuracy after removal; "loss": highest loss
    num_batches: int | None = None  # validation batches per measurement; None = all
    bn_mode: str = "train"  # batch statistics while scoring, as the reference code does
    finetune_epochs: float = 5.0  # between consecutive decisions; fractions for CPU presets
    finetune_lr: float = 0.0025  # constant
    fix_alpha: bool = False  # the paper's "fixed alpha" variant: alphas frozen while tuning


class DartsPT(SelectionMethod):
    """Progressive perturbation-based selection on a fine-tuned working copy.

    Scores (higher = more important): with the accuracy criterion
    ``scores[e, k] = Acc(W) - Acc(W with W[e, k] = 0)``, with the loss criterion
    ``L(W with W[e, k] = 0) - L(W)``, where ``W`` is the mixing matrix at the time edge
    e is decided (earlier decisions one-hot). Inactive ops are NaN. The decision uses
    the raw measurements (first minimum accuracy / first maximum loss), so ties go to
    the earlier op.

    Fine-tuning schedule: DESIGN.md says the supernet is fine-tuned *between*
    decisions (NB201 reference: 5 epochs between decisions, 25 in all for 6 edges).
    So there is no fine-tuning before the first decision (the trained supernet is
    scored as it is) and none after the last (it could not change the selection):
    ``finetune_epochs`` after each of the first five decisions.
    """

    name = "darts-pt"
    options_class = DartsPTOptions
    aliases = {"fix-alpha": {"fix_alpha": True}}

    def __init__(self, **options) -> None:
        super().__init__(**options)
        o = self.options
        if o.edge_order not in EDGE_ORDERS:
            raise HarnessError(
                f"darts-pt edge_order must be one of {EDGE_ORDERS}, not {o.edge_order!r}."
            )
        if o.criterion not in CRITERIA:
            raise HarnessError(
                f"darts-pt criterion must be one of {CRITERIA}, not {o.criterion!r}."
            )
        if o.bn_mode not in BN_MODES:
            raise HarnessError(f"darts-pt bn_mode must be one of {BN_MODES}, not {o.bn_mode!r}.")
        if o.num_batches is not None and (
            isinstance(o.num_batches, bool)
            or not isinstance(o.num_batches, int)
            or o.num_batches < 1
        ):
            raise HarnessError(
                f"darts-pt num_batches must be a positive integer or None, not {o.num_batches!r}."
            )
        if not (math.isfinite(o.finetune_epochs) and o.finetune_epochs >= 0):
            raise HarnessError(
                f"darts-pt finetune_epochs must be a finite number >= 0, not {o.finetune_epochs!r}."
            )
        if not (math.isfinite(o.finetune_lr) and o.finetune_lr > 0):
            raise HarnessError(
                f"darts-pt finetune_lr must be a finite number > 0, not {o.finetune_lr!r}."
            )

    def choose(self, supernet: NB201Supernet, context: SelectionContext, cost: SelectionCost):
        o = self.options
        net = working_copy(supernet)
        edges = list(range(NUM_EDGES))
        order = edges if o.edge_order == "sequential" else edge_order(context.seed, edges)
        steps = steps_for(o.finetune_epochs, context.data.weight_batches)
        active = net.active_ops.cpu().numpy()
        scores = empty_scores()
        decided: dict[int, int] = {}
        # Inactive ops can never win: +inf for argmin (accuracy), -inf for argmax (loss).
        sentinel = math.inf if o.criterion == "accuracy" else -math.inf
        for position, edge in enumerate(order):
            if position > 0:
                # A fresh stream per phase, so no phase replays another's batches.
                finetune(
                    net, context, decided, steps, o.finetune_lr, not o.fix_alpha, cost, position
                )
            with torch.no_grad():
                current = fixed_weights(net.mixing_weights().detach(), decided)
            base = self._criterion(net, current, context, cost)
            ops = active[edge]
            values = np.full(len(ops), sentinel)
            for op in np.flatnonzero(ops):
                removed = current.clone()
                removed[edge, int(op)] = 0.0
                values[op] = self._criterion(net, removed, context, cost)
            if o.criterion == "accuracy":
                scores[edge, ops] = base - values[ops]
                choice = int(np.argmin(values))  # first minimum: ties go to the earlier op
            else:
                scores[edge, ops] = values[ops] - base
                choice = int(np.argmax(values))
            decided[edge] = choice
        return [decided[e] for e in edges], scores, order

    def _criterion(
        self,
        net: NB201Supernet,
        weights: torch.Tensor,
        context: SelectionContext,
        cost: SelectionCost,
    ) -> float:
        data, o = context.data, self.options
        result = measure(net, weights, data.alpha_eval, o.num_batches, cost, bn_mode=o.bn_mode)
        return result.accuracy if o.criterion == "accuracy" else result.loss
