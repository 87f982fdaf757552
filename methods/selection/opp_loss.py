"""opp-loss: the OPP-DARTS admission criterion (Zhu et al.) applied as a selection rule.

OPP-DARTS grows the op set in stages. At each stage it builds one candidate supernet per op
not yet admitted (the current supernet plus that op), measures every candidate's loss on the
*training* split without gradients, and admits the op whose candidate has the largest loss.

As a selection rule on a trained supernet, precisely:

* candidates: for the edge being decided, ``e``, and each active op ``k``, the supernet one op
  away from the current mixing matrix ``W``: ``W[e,k] = 0``, every other entry unchanged, no
  renormalisation; decided edges are one-hot rows, undecided rows are ``softmax(alphas)``.
* criterion: cross-entropy on the training split the weights were fit on, unaugmented
  (``context.data.weight_eval``, so the criterion is deterministic), over ``num_batches``
  batches (None = all), BatchNorm in ``bn_mode``.
* rule: the edge is decided to the op whose candidate has the largest training loss, i.e. the
  op the supernet's fit to its training data relies on most. Score of ``k`` =
  ``L_train(W without k) - L_train(W)``; ties go to the earlier op.
* edges are decided progressively, in a seeded random order by default (``edge_order``:
  ``random`` | ``sequential``, or ``greedy`` | ``independent`` as for ostr); no fine-tuning
  unless ``finetune_epochs`` > 0.

Why removal rather than addition: OPP-DARTS compares supernets that differ from the current
one by a single op. After training, every op is already in, so the neighbours that differ by
one op are removals; the comparison (largest training loss, no gradients, training data) is
kept unchanged. The literal addition reading does not give a usable rule: adding ``k`` to an
edge that holds every op changes nothing, and "add ``k`` to an emptied edge" (row e :=
onehot(k)) with the largest loss is ostr on the training split with its sign flipped — it keeps
the op that fits worst, ``none`` or whatever severs the edge, wherever the edge matters.
Against darts-pt (removal too) the differences are the split and criterion (training loss, not
validation accuracy) and no fine-tuning by default; against the OPP-DARTS code, per-edge
decisions rather than one op for the whole space, and unaugmented data.

Topology (DARTS space): the same criterion on whole edges. Ops are decided without ``none``
(which edges become ``none`` is the topology step's decision); then per node the input
edge whose removal raises the training loss least is dropped until two remain, i.e. each
node keeps the inputs the fit relies on most (:mod:`methods.selection.topology`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from methods.selection.base import (
    SelectionContext,
    SelectionCost,
    SelectionMethod,
    working_copy,
)
from methods.selection.progressive import (
    PerturbationScorer,
    ProgressiveOptions,
    Scoring,
    decide_edges,
    remove_op,
)
from spaces.base import Supernet


@dataclass(frozen=True)
class OppLossOptions(ProgressiveOptions):
    method: ClassVar[str] = "opp-loss"


class OppLoss(SelectionMethod):
    name = "opp-loss"
    options_class = OppLossOptions
    topology_rule = (
        "training-loss criterion on whole edges: op phase without none, then per node "
        "(random order) the input edge whose zeroing raises the training loss least is "
        "dropped until two remain"
    )
    aliases = {"sequential": {"edge_order": "sequential"}}

    def choose(self, supernet: Supernet, context: SelectionContext, cost: SelectionCost):
        o = self.options
        scoring = Scoring(
            context.data.weight_eval,
            o.num_batches,
            o.bn_mode,
            cost,
            candidate_batch=o.candidate_batch,
        )
        names = supernet.space.op_names
        prunes = supernet.space.prunes_inputs
        excluded = (names.index("none"),) if prunes and "none" in names else ()
        # L(W without k) - L(W)
        score = PerturbationScorer(scoring, remove_op, sign=1.0, excluded_ops=excluded)
        net = working_copy(supernet)
        return decide_edges(
            net, context, cost, score, o.edge_order, o.finetune_epochs, o.finetune_lr
        )
