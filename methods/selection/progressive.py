"""The progressive engine shared by the scoring methods (darts-pt, ostr, opp-loss).

:func:`decide_edges` decides edges one at a time (or all at once, ``independent``),
fixing decided rows one-hot for later edges and optionally fine-tuning a working copy
between decisions; an :class:`EdgeScorer` says how much each candidate op is worth.
A method is then a choice of perturbation (remove an op, or let it replace the edge),
split, metric and sign.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from harness.data import Batches
from harness.errors import HarnessError
from methods.selection.base import (
    SelectionContext,
    SelectionCost,
    edge_order,
    fixed_weights,
)
from methods.selection.finetune import finetune, steps_for
from methods.selection.scoring import batch_statistics_only, measure, measure_candidates
from spaces.base import Supernet

EDGE_ORDERS = ("random", "sequential", "greedy", "independent")
Rows = dict[int, np.ndarray]


def require_one_of(method: str, option: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise HarnessError(
            f"option {option} of {method} must be one of {', '.join(allowed)}, got {value!r}"
        )


@dataclass(frozen=True)
class ProgressiveOptions:
    """Options every progressive scoring method shares (see :func:`decide_edges`).

    Subclasses set ``method`` (for error messages), add their own fields and may change
    defaults; the values are checked once, when the options are made.
    """

    method: ClassVar[str] = "progressive"
    # random (seeded by the run's seed) | sequential | greedy | independent
    edge_order: str = "random"
    num_batches: int | None = None  # batches of the scoring split per measurement; None: all
    bn_mode: str = "train"  # batch statistics while scoring, as the DARTS-PT reference does
    finetune_epochs: float = 0.0  # between progressive decisions; fractions for CPU presets
    finetune_lr: float = 0.0025  # constant
    # Candidate matrices pushed through the supernet together (1: one at a time). Results
    # equal one-at-a-time to float tolerance; pays on GPUs, and on CPU for the DARTS
    # space's fused supernet (not NB201's: benchmarks/README.md).
    candidate_batch: int = 1

    def __post_init__(self) -> None:
        method = self.method
        require_one_of(method, "edge_order", self.edge_order, EDGE_ORDERS)
        require_one_of(method, "bn_mode", self.bn_mode, ("train", "eval"))
        n = self.num_batches
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise HarnessError(f"option num_batches of {method} must be a positive integer or none")
        k = self.candidate_batch
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise HarnessError(f"option candidate_batch of {method} must be a positive integer")
        if not (math.isfinite(self.finetune_epochs) and self.finetune_epochs >= 0):
            raise HarnessError(f"option finetune_epochs of {method} must be a number >= 0")
        if not (math.isfinite(self.finetune_lr) and self.finetune_lr > 0):
            raise HarnessError(f"option finetune_lr of {method} must be a positive number")
        if self.finetune_epochs > 0 and self.edge_order == "independent":
            raise HarnessError(
                f"{method} fine-tunes between progressive decisions: edge_order=independent "
                "makes no decisions in between, so use finetune_epochs=0 with it"
            )


# Reshuffled scoring reads epochs from here on, so that it never replays the shuffles
# the same stream gave the supernet's alpha steps during training.
RESHUFFLED_EPOCHS = 1_000_000


@dataclass
class Scoring:
    """Where and how a criterion is measured; every pass is charged to ``cost``."""

    batches: Batches
    num_batches: int | None  # the first batches of epoch 0; None: all
    bn_mode: str
    cost: SelectionCost

    metric: str = "loss"  # "loss" or "accuracy": what :meth:`value` reports
    candidate_batch: int = 1  # matrices evaluated together by :meth:`values`
    # False: every measurement reads the same batches (epoch 0). True: each reads the next
    # epoch of ``batches``, a fresh shuffle (and augmentation, if ``batches`` augments),
    # as the DARTS-PT reference's validation queue does on every pass.
    reshuffle: bool = False
    passes: int = 0

    def __post_init__(self) -> None:
        if self.reshuffle and self.candidate_batch != 1:
            raise ValueError("reshuffled scoring measures one candidate per pass")

    def values(self, net: Supernet, matrices: list[torch.Tensor]) -> list[float]:
        """The metric under each matrix, ``candidate_batch`` matrices per pass."""
        if self.candidate_batch == 1:
            results = []
            for w in matrices:
                epoch = RESHUFFLED_EPOCHS + self.passes if self.reshuffle else 0
                self.passes += 1
                results.append(
                    measure(net, w, self.batches, self.num_batches, self.cost, self.bn_mode, epoch)
                )
        else:
            results = []
            for start in range(0, len(matrices), self.candidate_batch):
                chunk = matrices[start : start + self.candidate_batch]
                results += measure_candidates(
                    net, chunk, self.batches, self.num_batches, self.cost, self.bn_mode
                )
        return [r.loss if self.metric == "loss" else r.accuracy for r in results]

    def gradient(self, net: Supernet, weights: torch.Tensor) -> torch.Tensor:
        """``dL/dW`` at ``weights``: one forward and one backward pass per batch."""
        weights = weights.detach().clone().requires_grad_(True)
        was_training = net.training
        net.train(self.bn_mode == "train")
        total, count = torch.zeros_like(weights), 0
        with batch_statistics_only(net, self.bn_mode == "train"):
            for index, (x, y) in enumerate(self.batches.epoch(0)):
                if self.num_batches is not None and index >= self.num_batches:
                    break
                loss = F.cross_entropy(net(x, weights), y, reduction="sum")
                total += torch.autograd.grad(loss, [weights])[0]
                count += len(y)
                self.cost.forward_passes += 1
                self.cost.backward_passes += 1
        net.train(was_training)
        return total / count


class EdgeScorer:
    """Scores the candidate ops of some edges at mixing matrix ``W`` (higher = better)."""

    def __call__(self, net: Supernet, weights: torch.Tensor, edges: list[int]) -> Rows:
        raise NotImplementedError

    def network_changed(self) -> None:
        """Called after fine-tuning: anything remembered about the old weights is stale."""

    def edge_importance(self, net: Supernet, weights: torch.Tensor, edges: list[int]):
        """How much the supernet needs each of ``edges`` at ``W`` (higher = keep it): the
        rise in loss (fall in accuracy) when the edge's row is zeroed. Topology rules use
        it (:mod:`methods.selection.topology`)."""
        raise NotImplementedError(f"{type(self).__name__} does not score whole edges")


class PerturbationScorer(EdgeScorer):
    """``score(e,k) = sign * (M(perturb(W, e, k)) - M(W))`` for every active op ``k``.

    ``M`` is the scoring's metric (loss or accuracy)."""

    def __init__(
        self,
        scoring: Scoring,
        perturb: Callable[[torch.Tensor, int, int], torch.Tensor],
        sign: float,
        excluded_ops: tuple[int, ...] = (),
    ) -> None:
        self.scoring, self.perturb, self.sign = scoring, perturb, sign
        self.excluded_ops = excluded_ops
        # Values per matrix: the matrix a progressive step decides on is one of the
        # candidates it measured, so the next step's baseline costs nothing.
        self._values: dict[bytes, float] = {}

    def _measure(self, net: Supernet, matrices: list[torch.Tensor]) -> list[float]:
        """Values of ``matrices``; those not measured before are measured together."""
        keys = [w.cpu().numpy().tobytes() for w in matrices]
        missing: dict[bytes, torch.Tensor] = {}
        for key, w in zip(keys, matrices, strict=True):
            if key not in self._values:
                missing.setdefault(key, w)
        if missing:
            found = self.scoring.values(net, list(missing.values()))
            self._values.update(zip(missing, found, strict=True))
        return [self._values[key] for key in keys]

    def __call__(self, net: Supernet, weights: torch.Tensor, edges: list[int]) -> Rows:
        candidate_ops = candidate_mask(net, self.excluded_ops)
        candidates = [(e, int(k)) for e in edges for k in np.flatnonzero(candidate_ops[e])]
        matrices = [weights] + [self.perturb(weights, e, k) for e, k in candidates]
        base, *changed = self._measure(net, matrices)
        rows: Rows = {e: np.full(net.space.num_ops, np.nan) for e in edges}
        for (e, k), value in zip(candidates, changed, strict=True):
            rows[e][k] = self.sign * (value - base)
        return rows

    def edge_importance(self, net: Supernet, weights: torch.Tensor, edges: list[int]):
        base, *changed = self._measure(net, [weights] + [drop_edge(weights, e) for e in edges])
        # M(W without e) - M(W) for a loss, the other way round for an accuracy
        sign = 1.0 if self.scoring.metric == "loss" else -1.0
        return {e: sign * (value - base) for e, value in zip(edges, changed, strict=True)}

    def network_changed(self) -> None:
        self._values.clear()


class TaylorScorer(EdgeScorer):
    """First-order strengths from one gradient ``g = dL/dW`` at ``W``.

    With ``W`` requiring grad every op of nonzero weight is computed, and ``none`` adds zeros
    (so its gradient is truly zero): ``g`` is complete on undecided (softmax) rows, the only
    ones scored. An op whose softmax weight underflowed to exactly 0 would read as g = 0.
    """

    def __init__(
        self, scoring: Scoring, excluded_ops: tuple[int, ...] = (), kept_weight: bool = False
    ) -> None:
        self.scoring, self.excluded_ops, self.kept_weight = scoring, excluded_ops, kept_weight

    def __call__(self, net: Supernet, weights: torch.Tensor, edges: list[int]) -> Rows:
        grad = self.scoring.gradient(net, weights)
        # L(W + r_k - W_e) - L(W) ~ g_e . (r_k - W_e) = g_e . r_k - sum_j g[e,j] W[e,j], the
        # replaced row r_k being onehot(k), or W[e,k] onehot(k) when op k keeps its weight
        replaced = grad * weights if self.kept_weight else grad
        strength = -(replaced - (grad * weights).sum(dim=1, keepdim=True))
        strength = strength.double().cpu().numpy()
        strength[~candidate_mask(net, self.excluded_ops)] = np.nan
        return {e: strength[e].copy() for e in edges}

    def edge_importance(self, net: Supernet, weights: torch.Tensor, edges: list[int]):
        grad = self.scoring.gradient(net, weights)
        # L(W with row e zeroed) - L(W) ~ g_e . (0 - W_e)
        rise = -(grad * weights).sum(dim=1).double().cpu().numpy()
        return {e: float(rise[e]) for e in edges}


def candidate_mask(net: Supernet, excluded_ops: tuple[int, ...]) -> np.ndarray:
    """Edges x ops: the active ops, less ``excluded_ops`` (where an edge keeps another)."""
    active = net.active_ops.cpu().numpy()
    allowed = active.copy()
    allowed[:, list(excluded_ops)] = False
    # An edge whose only active ops are excluded keeps them: it must be decided somehow.
    empty = ~allowed.any(axis=1)
    allowed[empty] = active[empty]
    return allowed


def decide_edges(
    net: Supernet,
    context: SelectionContext,
    cost: SelectionCost,
    score: EdgeScorer,
    order: str,
    finetune_epochs: float = 0.0,
    finetune_lr: float = 0.0025,
    train_alphas: bool = True,
) -> tuple[list[int], np.ndarray, list[int], dict | None]:
    """Decide every edge to its best-scored op; ``net`` must be a working copy.

    A step decides one edge of every edge group of the space (NB201: one group, so one
    edge; DARTS: a normal and a reduction edge, in that order, as DARTS-PT's projection
    does), and the working copy is fine-tuned between steps. A row of the returned scores
    is what the method saw when it decided that edge. In a space whose topology rule
    prunes inputs, :func:`~methods.selection.topology.prune_inputs` follows (fine-tuned
    between its steps too) and the fourth value records it; otherwise it is None.
    """
    space = net.space
    num_edges = space.num_edges
    prunes = space.prunes_inputs
    queues = [
        edge_order(context.seed if g == 0 else [context.seed, g], list(group))
        if order == "random" else list(group)
        for g, group in enumerate(space.edge_groups)
    ]  # fmt: skip
    if order == "independent":  # every edge against the same undecided matrix
        queues = [[e for queue in queues for e in queue]]
    steps = steps_for(finetune_epochs, context.data.weight_batches)
    decided: dict[int, int] = {}
    scores, sequence = space.empty_scores(), []
    while len(decided) < num_edges:
        for queue in queues:
            undecided = [e for e in queue if e not in decided]
            if not undecided:
                continue
            weights = fixed_weights(net.mixing_weights().detach(), decided)
            candidates = undecided if order in ("greedy", "independent") else undecided[:1]
            rows = score(net, weights, candidates)
            if order == "independent":
                chosen = candidates
            else:
                # max() keeps the first of equals: ties go to the earlier edge (index order).
                chosen = [max(candidates, key=lambda e: np.nanmax(rows[e]))]
            for edge in chosen:
                decided[edge] = int(np.nanargmax(rows[edge]))  # first maximum: the earlier op
                scores[edge] = rows[edge]
                sequence.append(edge)
        if steps and (len(decided) < num_edges or prunes):
            finetune(
                net, context, decided, steps, finetune_lr, train_alphas, cost, stream=len(decided)
            )
            score.network_changed()
    choices = [decided[e] for e in range(num_edges)]
    if not prunes:
        return choices, scores, sequence, None
    from methods.selection.topology import prune_inputs

    choices, topology = prune_inputs(
        net, context, cost, score, decided, order, steps, finetune_lr, train_alphas
    )
    return choices, scores, sequence, topology


def replace_row(weights: torch.Tensor, edge: int, op: int) -> torch.Tensor:
    """Op ``op`` alone on ``edge``; every other row as it is (OStr)."""
    return fixed_weights(weights, {edge: op})


def keep_op_weight(weights: torch.Tensor, edge: int, op: int) -> torch.Tensor:
    """Op ``op`` alone on ``edge`` at its own weight ``W[edge, op]``, the edge's other ops
    zeroed, no renormalisation (OStr's ``replacement=kept-weight``)."""
    kept = weights.clone()
    kept[edge] = 0.0
    kept[edge, op] = weights[edge, op]
    return kept


def drop_edge(weights: torch.Tensor, edge: int) -> torch.Tensor:
    """Row ``edge`` zeroed: the edge feeds its node nothing (topology rules)."""
    dropped = weights.clone()
    dropped[edge] = 0.0
    return dropped


def remove_op(weights: torch.Tensor, edge: int, op: int) -> torch.Tensor:
    """``W[edge, op] = 0``, no renormalisation (DARTS-PT, opp-loss)."""
    removed = weights.clone()
    removed[edge, op] = 0.0
    return removed
