"""ostr (operation strength, OStr-DARTS, Yang et al. 2024): keep the op that does best alone.

The strength of op k on edge e is ``S(e,k) = L(W) - L(W with row e := onehot(k))``: op k
*replaces* the mixed edge while the rest of the supernet stays as it is (darts-pt instead
*removes* one op). Each edge keeps its strongest op (lowest loss after replacement), even when
its alpha is not the largest; ties go to the earlier op; inactive ops are never candidates.

What the paper states, as far as it is known here: the full OStr-DARTS paper is not
reachable from this project; its abstract and figure captions say that an op's strength is
the change of the final loss when that op replaces the mixed operation on an edge, and that
the procedure is repeated edge by edge. That is all this module takes from the paper.
Everything below is **the harness's choice** (not something "the text leaves open": the
text is simply not known), each a recorded option:

* ``replacement``: ``one-hot`` (default) puts op k on the edge at weight one; ``kept-weight``
  keeps op k at its trained mixing weight ``W[e,k]`` with the edge's other ops removed (no
  renormalisation, as DARTS-PT masks ops). The captions allow both readings of "replace".
  Either way a decided edge is then fixed one-hot for later edges.

* ``edge_order``: ``random`` (default; seeded by ``context.seed``), ``sequential`` and
  ``greedy`` decide edges one at a time with decided rows fixed one-hot for later edges;
  ``greedy`` rescores every undecided edge after each decision and decides the edge whose best
  strength is largest. ``independent`` scores all edges against the same undecided ``W``.
* ``split`` ``valid`` (``alpha_eval``) or ``train`` (``weight_eval``); ``num_batches`` (None =
  all); ``bn_mode`` ``train`` (batch statistics) or ``eval``.
* ``finetune_epochs`` between progressive decisions (default 0: OStr claims no change to the
  supernet optimisation), run as DARTS-PT's projection phase (:func:`finetune`).
* ``estimate`` ``exact`` (a forward pass per batch for the baseline and every candidate) or
  ``taylor``: ``S(e,k) ~ -g_e . (r_k - W_e)`` with ``g = dL/dW`` from one forward and
  one backward pass per batch at ``W`` and ``r_k`` the replaced row (``onehot(k)``, or
  ``W[e,k] onehot(k)`` for ``kept-weight``), re-estimated after every decision.
* ``none_competes`` (default true): whether ``none`` is a candidate, the harness's choice;
  on collapsed CPU supernets ostr keeps ``none`` on most edges, sometimes cutting the cell's
  input off its output (``ostr[no-none]`` leaves it out). In a space that prunes inputs
  (DARTS) ``none`` never competes for an op: which edges become ``none`` is the topology
  step's decision.
* topology (DARTS space): operation strength applied to whole edges. After every edge has
  its op, per node the input edge whose replacement by nothing (row zeroed) raises the
  loss least is dropped until two remain (:mod:`methods.selection.topology`; Taylor: the
  first-order estimate ``-g_e . W_e``).

``--methods ostr-ablation`` runs the variants side by side (:data:`ABLATION`), and the
report tabulates them as "criterion as described; every other choice the harness's".

The progressive engine (:mod:`methods.selection.progressive`) is shared with darts-pt and
opp-loss, which differ in their perturbation, split, metric and sign.
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
    EdgeScorer,
    PerturbationScorer,
    ProgressiveOptions,
    Scoring,
    TaylorScorer,
    decide_edges,
    keep_op_weight,
    replace_row,
    require_one_of,
)
from spaces.base import Supernet

# The open choices of OStr side by side (``--methods ostr-ablation``): the criterion as
# described, each variant changing one choice of the harness's default.
ABLATION = (
    "ostr",
    "ostr[independent]",
    "ostr[greedy]",
    "ostr[split=train]",
    "ostr[bn_mode=eval]",
    "ostr[no-none]",
    "ostr[taylor]",
    "ostr[replacement=kept-weight]",
)


@dataclass(frozen=True)
class OStrOptions(ProgressiveOptions):
    method: ClassVar[str] = "ostr"
    estimate: str = "exact"  # exact | taylor
    split: str = "valid"  # valid (alpha_eval) | train (weight_eval)
    none_competes: bool = True  # whether `none` is a candidate op (the harness's choice)
    # one-hot: op k at weight one; kept-weight: op k at its trained weight, others removed
    replacement: str = "one-hot"
    # added after stores existed: at "one-hot" left out of the key (same numerics as before)
    added_later: ClassVar[dict[str, object]] = {"replacement": "one-hot"}

    def __post_init__(self) -> None:
        super().__post_init__()
        require_one_of("ostr", "estimate", self.estimate, ("exact", "taylor"))
        require_one_of("ostr", "split", self.split, ("valid", "train"))
        require_one_of("ostr", "replacement", self.replacement, ("one-hot", "kept-weight"))


class OStr(SelectionMethod):
    name = "ostr"
    options_class = OStrOptions
    topology_rule = (
        "operation strength of whole edges: op phase without none, then per node (random "
        "order) the input edge whose zeroing raises the loss least is dropped until two remain"
    )
    aliases = {
        "taylor": {"estimate": "taylor"},
        "independent": {"edge_order": "independent"},
        "greedy": {"edge_order": "greedy"},
        "no-none": {"none_competes": False},
    }

    def choose(self, supernet: Supernet, context: SelectionContext, cost: SelectionCost):
        o = self.options
        batches = context.data.alpha_eval if o.split == "valid" else context.data.weight_eval
        scoring = Scoring(
            batches, o.num_batches, o.bn_mode, cost, candidate_batch=o.candidate_batch
        )
        names = supernet.space.op_names
        prunes = supernet.space.prunes_inputs
        competes = o.none_competes and not prunes
        excluded = () if competes or "none" not in names else (names.index("none"),)
        kept_weight = o.replacement == "kept-weight"
        if o.estimate == "taylor":
            score: EdgeScorer = TaylorScorer(scoring, excluded, kept_weight=kept_weight)
        else:
            # S = L(W) - L(W')
            replace = keep_op_weight if kept_weight else replace_row
            score = PerturbationScorer(scoring, replace, sign=-1.0, excluded_ops=excluded)
        net = working_copy(supernet)
        return decide_edges(
            net, context, cost, score, o.edge_order, o.finetune_epochs, o.finetune_lr
        )
