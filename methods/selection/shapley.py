"""shapley (Shapley-NAS, Xiao et al. CVPR 2022) as a selection rule on a trained supernet.

Every active (edge, op) of the mixing matrix ``W = supernet.mixing_weights()`` is a player.
Monte-Carlo permutations remove players one at a time (the op's weight set to 0, the rest
of ``W`` as it is, no renormalisation) and record each removal's drop in validation
accuracy; an op's value is the mean minus the standard deviation of its drops over the
samples. Each edge keeps its highest-valued op. Scores are the values (edges x ops, NaN
where an op is not a player).

What the reference does (``Euphoria16/Shapley-NAS``, ``train_search.py``), and what the
harness takes from it:

* **Players** (l.134-139): every op of every edge of the normal and the reduction cell, in
  one permutation. Its ops are ``genotypes.PRIMITIVES``, where ``none`` is commented out:
  ``none`` is no op there, so no player. Option ``none_player`` (default false) keeps it
  out here too; ``W`` keeps ``none``'s trained weight (the harness's supernets mix it).
  As a player ``none`` is worth exactly 0 (removing it changes nothing), so it wins an
  edge whose every other value is negative.
* **Removal** (``remove_players``, l.190-201): the op's softmax weight times a 0 mask;
  nothing is renormalised; removals accumulate along the permutation.
* **Samples** (``shap_estimation``, l.205-255): ``--samples`` 10 permutations (l.48, not
  changed by ``run/search_cifar10_shapley.sh``), drawn uniformly; each sample reads one
  batch ``next(iter(valid_queue))``: a fresh iterator, so a fresh random batch of 1024
  images (l.119-122) of the validation half, augmented as training data (``train_data``
  carries the train transform). Its starting accuracy is the full supernet's on that
  batch; every removal's accuracy is on the same batch. Here: ``num_batches`` batches of
  the alpha split per sample (0: as many as make 1024 images, or the whole split where
  it is smaller), ``scoring_data``
  ``reshuffled`` (default) a fresh shuffle and augmentation of ``alpha_batches`` per sample
  as the reference, or ``fixed`` the first unaugmented ``alpha_eval`` batches for every
  sample (the spread then comes from the permutations alone). One 1024-image batch there
  is several smaller batches here: in train-mode BatchNorm the statistics are per batch.
* **Marginal contribution** (l.241-244): accuracy before minus after the removal, in
  percent there, in fractions here (values scale, rankings and the algorithm's normalised
  step do not).
* **Truncation** (l.248-249): after recording a player's drop, the permutation stops when
  accuracy < ``threshold`` x the starting accuracy (strict; ``--threshold`` 0.5, l.49).
  The players not reached keep a 0 for that sample (``sv_acc`` starts at zeros, l.213),
  and those zeros count in the mean and the standard deviation. ``threshold`` 0 turns
  truncation off.
* **Value** (l.252): ``mean - std`` over the samples, ``np.std`` (population, ddof 0).
  :class:`ShapleyEstimate` keeps both parts; with every permutation enumerated and no
  truncation its mean is the exact Shapley value (``tests/test_shapley.py``).
* **BatchNorm** (``bn_mode``): the reference sets no mode. Its estimation inherits the
  mode its previous epoch left: eval after the epochs that ran its validation pass
  (``infer``, on even epochs, l.175-176, 311), train otherwise (l.284), so its first
  (epoch 25) and last (epoch 49) estimations run in eval mode and the ones between
  alternate. As a one-shot rule the harness takes ``eval``, the mode of the reference's
  last estimation; ``train`` uses batch statistics and leaves running statistics alone.
* **Seed**: the permutations come from ``context.seed`` (the reference: NumPy's global
  generator seeded with ``--seed``).
* **Topology** (DARTS space): the reference derives its cell with ``model.genotype()``
  (``model_search.py`` l.234-263): per node the two input edges whose strongest op is
  strongest, each with that op, over its 7 ops (no ``none``). It applies that rule to the
  softmax of alphas moved by normalised Shapley values (``shapley-nas``); as a selection
  rule the harness applies it to the values themselves (the space's own ``discretise``,
  the same rule with ``none`` excluded). NAS-Bench-201 keeps every edge: each edge's
  highest value. The reference covers the DARTS space only; NAS-Bench-201 and its op
  subsets are the harness's port (players are whatever ops the space makes active).

The estimator is separate from the supernet (:func:`estimate_shapley` takes an accuracy
function and explicit permutations) so that it can be checked against exact Shapley values
and scripted games; the ``shapley-nas`` algorithm reuses it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from harness.errors import HarnessError
from methods.selection.base import SelectionContext, SelectionCost, SelectionMethod
from methods.selection.progressive import require_one_of
from methods.selection.scoring import batch_statistics_only
from spaces.base import Supernet

REFERENCE_IMAGES = 1024  # the reference's valid_queue batch size: one batch per sample
# Epochs of alpha_batches the selection's reshuffled samples read (apart from training's
# epochs and from other methods' reshuffled streams).
SAMPLE_EPOCHS = 3_000_000
PERMUTATION_STREAM = 27  # the permutations' generator: (seed, this)

Player = tuple[int, int]  # (edge, op)
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class ShapleyOptions:
    samples: int = 10  # --samples (train_search.py l.48)
    threshold: float = 0.5  # --threshold (l.49); 0: no truncation
    num_batches: int = 0  # per sample; 0: ceil(1024 / batch size), the reference's batch
    scoring_data: str = "reshuffled"  # reference: a fresh augmented batch per sample
    bn_mode: str = "eval"  # the mode of the reference's last estimation (see the module)
    none_player: bool = False  # reference: none is not an op (PRIMITIVES comments it out)

    def __post_init__(self) -> None:
        require_one_of("shapley", "scoring_data", self.scoring_data, ("reshuffled", "fixed"))
        require_one_of("shapley", "bn_mode", self.bn_mode, ("eval", "train"))
        check_counts("shapley", samples=self.samples, num_batches=self.num_batches)
        t = self.threshold
        number = isinstance(t, int | float) and not isinstance(t, bool)
        if not (number and math.isfinite(t) and t >= 0):
            raise HarnessError("option threshold of shapley must be a number >= 0")
        if not isinstance(self.none_player, bool):
            raise HarnessError("option none_player of shapley must be true or false")


def check_counts(owner: str, samples: int, num_batches: int) -> None:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise HarnessError(f"option samples of {owner} must be a positive integer")
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 0:
        raise HarnessError(f"option num_batches of {owner} must be 0 (1024 images) or more")


@dataclass(frozen=True)
class ShapleyEstimate:
    """Marginal contributions (players x samples; 0 where truncation stopped first) and,
    per sample, how many players were removed before the permutation stopped."""

    contributions: np.ndarray
    removed: tuple[int, ...]

    @property
    def mean(self) -> np.ndarray:
        return self.contributions.mean(axis=1)

    @property
    def std(self) -> np.ndarray:
        return self.contributions.std(axis=1)  # ddof 0, as np.std in the reference

    @property
    def value(self) -> np.ndarray:
        """The reference's value: mean - std."""
        return self.mean - self.std


def estimate_shapley(
    accuracy: Callable[[int, np.ndarray], float],
    permutations: Sequence[Sequence[int]],
    threshold: float,
) -> ShapleyEstimate:
    """Truncated Monte-Carlo Shapley values by removal.

    ``accuracy(sample, removed)``: the accuracy on sample ``sample``'s data with the players
    marked in the boolean array ``removed`` taken out. Permutation ``j`` is sample ``j``.
    """
    orders = [np.asarray(p, dtype=np.int64) for p in permutations]
    n = len(orders[0]) if orders else 0
    for order in orders:
        if sorted(order.tolist()) != list(range(n)):
            raise ValueError("every permutation must order the same players 0..n-1")
    contributions = np.zeros((n, len(orders)))
    removed_counts = []
    for j, order in enumerate(orders):
        removed = np.zeros(n, dtype=bool)
        start = current = accuracy(j, removed.copy())
        count = 0
        for player in order:
            removed[player] = True
            after = accuracy(j, removed.copy())
            contributions[player, j] = current - after
            current = after
            count += 1
            # As the reference: the test follows the player's recorded drop, and is strict.
            if threshold and current < threshold * start:
                break
        removed_counts.append(count)
    return ShapleyEstimate(contributions, tuple(removed_counts))


def random_permutations(generator: np.random.Generator, players: int, samples: int):
    return [generator.permutation(players) for _ in range(samples)]


def shapley_players(net: Supernet, include_none: bool) -> list[Player]:
    """Active (edge, op) pairs in edge-major order (the reference's normal edges, then its
    reduction edges, each edge's ops in order); ``none`` only with ``include_none``."""
    names = net.space.op_names
    active = net.active_ops.cpu().numpy()
    return [
        (e, k)
        for e in range(net.space.num_edges)
        for k in np.flatnonzero(active[e]).tolist()
        if include_none or names[k] != "none"
    ]


def value_matrix(values: np.ndarray, players: list[Player], shape) -> np.ndarray:
    """Per-player values as edges x ops, NaN where an op is not a player."""
    matrix = np.full(tuple(shape), np.nan)
    for (e, k), v in zip(players, values, strict=True):
        matrix[e, k] = v
    return matrix


def images_per_sample_batches(num_batches: int, batch_size: int) -> int:
    """Batches per sample: ``num_batches``, or 0 -> as many as make the reference's 1024."""
    return num_batches or math.ceil(REFERENCE_IMAGES / batch_size)


class SupernetGame:
    """``accuracy(sample, removed)`` on a supernet: ``W`` with the removed players' weights
    zeroed, measured on ``batches_of(sample)`` (kept for one sample at a time)."""

    def __init__(
        self,
        net: Supernet,
        weights: torch.Tensor,
        players: list[Player],
        batches_of: Callable[[int], list[Batch]],
        cost: SelectionCost,
    ) -> None:
        self.net, self.weights, self.players = net, weights.detach(), players
        self.batches_of, self.cost = batches_of, cost
        self._sample: tuple[int, list[Batch]] | None = None

    @torch.no_grad()
    def __call__(self, sample: int, removed: np.ndarray) -> float:
        if self._sample is None or self._sample[0] != sample:
            self._sample = (sample, self.batches_of(sample))
        weights = self.weights.clone()
        for index in np.flatnonzero(removed).tolist():
            weights[self.players[index]] = 0.0
        correct, count = 0, 0
        for x, y in self._sample[1]:
            correct += (self.net(x, weights).argmax(1) == y).sum().item()
            count += len(y)
            self.cost.forward_passes += 1
        return correct / count


def shapley_values(
    game: SupernetGame,
    permutations: Sequence[Sequence[int]],
    threshold: float,
    bn_mode: str,
    update_running_stats: bool = False,
) -> ShapleyEstimate:
    """:func:`estimate_shapley` on ``game`` with BatchNorm in ``bn_mode``. In train mode
    running statistics stay as they are unless ``update_running_stats`` (the reference's
    train-mode estimations write them, as any no-grad forward pass in train mode does)."""
    net = game.net
    was_training = net.training
    net.train(bn_mode == "train")
    try:
        with batch_statistics_only(net, bn_mode == "train" and not update_running_stats):
            return estimate_shapley(game, permutations, threshold)
    finally:
        net.train(was_training)


def first_batches(batches, epoch: int, count: int) -> list[Batch]:
    taken = []
    for index, batch in enumerate(batches.epoch(epoch)):
        if index >= count:
            break
        taken.append(batch)
    return taken


class Shapley(SelectionMethod):
    """Each edge keeps the op of largest Shapley value (mean - std of its accuracy drops)."""

    name = "shapley"
    options_class = ShapleyOptions
    topology_rule = (
        "Shapley-NAS's genotype rule on the Shapley values: per node the two input edges whose "
        "highest-valued op other than none has the largest value, each with that op"
    )
    aliases = {"fixed-data": {"scoring_data": "fixed"}}

    def choose(self, supernet: Supernet, context: SelectionContext, cost: SelectionCost):
        o = self.options
        space = supernet.space
        players = shapley_players(supernet, o.none_player)
        weights = supernet.mixing_weights().detach()
        reshuffled = o.scoring_data == "reshuffled"
        batches = context.data.alpha_batches if reshuffled else context.data.alpha_eval
        count = images_per_sample_batches(o.num_batches, batches.batch_size)

        def batches_of(sample: int) -> list[Batch]:
            # reshuffled: every sample a fresh shuffle (and augmentation), as the reference's
            # fresh valid_queue iterator; fixed: the same first batches for every sample.
            return first_batches(batches, SAMPLE_EPOCHS + sample if reshuffled else 0, count)

        generator = np.random.default_rng([context.seed, PERMUTATION_STREAM])
        permutations = random_permutations(generator, len(players), o.samples)
        game = SupernetGame(supernet, weights, players, batches_of, cost)
        estimate = shapley_values(game, permutations, o.threshold, o.bn_mode)
        values = value_matrix(estimate.value, players, weights.shape)
        choices = list(space.discretise(values))
        order = list(range(space.num_edges))
        if not space.prunes_inputs:
            return choices, values, order
        others = values.copy()
        if "none" in space.op_names:
            others[:, space.op_names.index("none")] = np.nan
        strength = [None if np.isnan(row).all() else float(np.nanmax(row)) for row in others]
        return choices, values, order, {"importance": strength}
