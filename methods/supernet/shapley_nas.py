"""Shapley-NAS (Xiao et al., CVPR 2022): alphas moved by Shapley values, not by gradients.

The schedule of the public code (``Euphoria16/Shapley-NAS``, ``train_search.py``, the DARTS
space on CIFAR-10), and where the harness follows it:

* **Weights only, then Shapley.** ``pretrain_epochs = 25`` of ``--epochs`` 50 train the
  weights alone (l.141-145); from then on, at the start of every epoch (before its weight
  steps), the Shapley values of every op are estimated and the alphas moved (l.162-167).
  The CIFAR script hard-codes 25; its ImageNet script writes the same rule as ``epoch >=
  args.epochs // 2`` (``train_search_imagenet.py`` l.174). Option ``pretrain_epochs`` 0
  (default) takes that rule, half the run's epochs; a positive value sets them.
* **No alpha optimiser.** The architect is never used: alphas change only by the Shapley
  step. Weights train on the training half, every epoch, with the mixed supernet
  (``train``, l.278-304).
* **Clipping** (option ``clip_alphas``, default true). The reference clips the gradient norm
  over ``model.parameters()`` (l.293), which holds the alphas; their gradient comes from
  every weight step's ``backward`` and is never zeroed (only the weight optimiser zeroes its
  own parameters), so it accumulates, scaled by every clip, and counts in each norm. The
  harness's ``train.clip_scope = "all"`` does exactly that when no alpha step runs; this
  algorithm sets it (and refuses a ``train.clip_scope`` that disagrees with the option).
* **Estimation**: :mod:`methods.selection.shapley` (``shap_estimation``): ``samples`` 10
  permutations (l.48), ``threshold`` 0.5 (l.49), a fresh augmented validation batch of
  1024 images per sample (here ``num_batches`` batches of ``alpha_batches``, 0: 1024
  images), values ``mean - std``. The players are the supernet's active ops.
* **Step** (``change_alpha``, l.257-276): per cell (here per edge group: NB201 one, DARTS
  normal and reduction) the values are standardised by their mean and unbiased standard
  deviation; ``accumulator = momentum * accumulator + (1 - momentum) * standardised`` with
  ``shapley_momentum`` 0.8 (l.46; the published script passes 0.8 too); ``alphas +=
  step_size * accumulator`` with ``step_size`` 0.1 (l.47). The accumulator starts at
  ``1e-3 * randn`` (l.147; ``accumulator_init``), drawn here from the run's validation
  stream seed. Ops that are not players (inactive) get 0 and only decay. Where a group's
  values are all equal (the reference would divide by 0 and write NaN alphas) its
  standardised values are 0.
* **BatchNorm** (``bn_mode``): ``reference`` (default) follows what the reference does by
  accident: an estimation runs in the mode the previous epoch left, eval after epochs that
  ran its validation pass (even epochs, l.175-176) and train otherwise, so eval on odd
  (0-based) epochs and train on even ones, where its no-grad passes also update the running
  statistics. ``eval`` or ``train`` (batch statistics, running statistics untouched) fix one.
* **``none``** (option ``none_op``, default false): the reference's ``PRIMITIVES`` comments
  ``none`` out, so its mixed op has 7 ops. The harness's spaces have ``none``; it is switched
  off (``active_ops``) on every edge that has another candidate, so it neither mixes nor
  plays. ``none_op=true`` keeps it (then a player worth 0).
* **Seeds**: permutations from ``(validation stream seed, epoch)``; each sample reads epoch
  ``2_000_000 + epoch * samples + j`` of ``alpha_batches`` (fresh shuffle and augmentation).

What the harness cannot follow: the reference's search network is PC-DARTS's partial-channel
supernet (``model_search.py``, ``k=4``, channel shuffle, no edge normalisation) at batch 256
and lr 0.1 (l.23-24); the harness's DARTS supernet is DARTS's full-channel one and its
optimiser settings are the preset's (``train.*``). The reference covers the DARTS space
only: on NAS-Bench-201 and its op subsets this is the harness's port (one cell, so one
normalisation group; ``none`` off as above, so a NAS-Bench-201 cell with ``none`` cannot
come out of magnitude on these alphas). The reference's final cell is ``genotype()`` on the
last alphas: ``magnitude`` on the last checkpoint (``none`` is inactive, so excluded as
there).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from harness.config import TrainSettings
from harness.errors import HarnessError
from methods.supernet.base import SupernetAlgorithm
from spaces.base import SearchSpace

BN_MODES = ("reference", "eval", "train")
SAMPLE_EPOCHS = 2_000_000  # epochs of alpha_batches the estimations read
PERMUTATION_STREAM = 28


@dataclasses.dataclass(frozen=True)
class ShapleyNasOptions:
    pretrain_epochs: int = 0  # 0: half the run (25 of the reference's 50)
    samples: int = 10  # --samples
    threshold: float = 0.5  # --threshold; 0: no truncation
    shapley_momentum: float = 0.8  # --shapley_momentum
    step_size: float = 0.1  # --step_size
    num_batches: int = 0  # alpha batches per sample; 0: 1024 images, the reference's batch
    bn_mode: str = "reference"  # reference | eval | train
    none_op: bool = False  # the reference's PRIMITIVES have no none
    clip_alphas: bool = True  # clip over weights and the alphas' accumulated gradient
    accumulator_init: float = 1e-3  # the momentum buffer starts at this x randn


def resolved_pretrain(options: ShapleyNasOptions, train: TrainSettings) -> int:
    return options.pretrain_epochs or train.epochs // 2


def reference_bn_mode(epoch: int) -> str:
    """The mode the reference's estimation at ``epoch`` (0-based) inherits: eval after an
    epoch that ran its validation pass (the even ones), train otherwise."""
    return "eval" if epoch % 2 == 1 else "train"


def standardised(values: np.ndarray, groups) -> torch.Tensor:
    """Per edge group, the players' values minus their mean over their unbiased std (as
    ``change_alpha``); 0 for non-players and for a group without spread."""
    out = np.zeros_like(values)
    for group in groups:
        rows = np.asarray(group)
        block = values[rows]
        played = ~np.isnan(block)
        if played.sum() < 2:
            continue
        spread = block[played].std(ddof=1)
        if spread > 0:
            z = np.zeros_like(block)
            z[played] = (block[played] - block[played].mean()) / spread
            out[rows] = z
    return torch.from_numpy(out)


class ShapleyNas(SupernetAlgorithm):
    name = "shapley-nas"
    options_class = ShapleyNasOptions

    @classmethod
    def check_settings(
        cls, options: ShapleyNasOptions, train: TrainSettings, space: SearchSpace
    ) -> None:
        for name, low in (("samples", 1), ("num_batches", 0), ("pretrain_epochs", 0)):
            value = getattr(options, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise HarnessError(f"shapley-nas {name} must be a whole number >= {low}")
        _check_number("threshold", options.threshold, 0.0)
        _check_number("shapley_momentum", options.shapley_momentum, 0.0, below=1.0)
        _check_number("step_size", options.step_size, 0.0, positive=True)
        _check_number("accumulator_init", options.accumulator_init, 0.0)
        if options.bn_mode not in BN_MODES:
            raise HarnessError(f"shapley-nas bn_mode must be one of {', '.join(BN_MODES)}")
        for name in ("none_op", "clip_alphas"):
            if not isinstance(getattr(options, name), bool):
                raise HarnessError(f"shapley-nas {name} must be true or false")
        if resolved_pretrain(options, train) >= train.epochs:
            raise HarnessError(
                f"shapley-nas pre-trains {resolved_pretrain(options, train)} epochs of "
                f"{train.epochs}: no epoch is left for a Shapley step; lower "
                "algorithm.pretrain_epochs or raise the epochs"
            )
        if train.clip_scope not in (TrainSettings.clip_scope, _clip_scope(options)):
            raise HarnessError(
                "shapley-nas sets its clipping with algorithm.clip_alphas, not "
                "train.clip_scope; set --set algorithm.clip_alphas=true|false"
            )

    def __init__(self, supernet, train, options=None) -> None:
        super().__init__(supernet, train, options)
        # The base class clips (and keeps the alphas' gradient) by train.clip_scope.
        self.train_settings = dataclasses.replace(train, clip_scope=_clip_scope(self.options))
        self.pretrain = resolved_pretrain(self.options, train)
        self.accumulator: torch.Tensor | None = None
        space = supernet.space
        if not self.options.none_op and "none" in space.op_names:
            none = space.op_names.index("none")
            with torch.no_grad():
                others = supernet.active_ops.clone()
                others[:, none] = False
                supernet.active_ops[others.any(dim=1), none] = False

    def alpha_step(self, weight_batch, alpha_batch) -> None:
        """No gradient step on the alphas: only :meth:`begin_epoch`'s Shapley step moves them."""

    def begin_epoch(self, epoch: int, weight_batches, alpha_batches) -> dict[str, float]:
        if epoch < self.pretrain:
            return {"shapley_step": 0}
        # Imported here: methods.selection imports methods.supernet while it loads.
        from methods.selection.base import SelectionCost
        from methods.selection.shapley import (
            SupernetGame,
            first_batches,
            images_per_sample_batches,
            random_permutations,
            shapley_players,
            shapley_values,
            value_matrix,
        )

        o, net = self.options, self.supernet
        players = shapley_players(net, include_none=True)  # none plays only when active
        weights = net.mixing_weights().detach()
        count = images_per_sample_batches(o.num_batches, alpha_batches.batch_size)

        def batches_of(sample: int):
            return first_batches(alpha_batches, SAMPLE_EPOCHS + epoch * o.samples + sample, count)

        generator = np.random.default_rng([alpha_batches.seed, PERMUTATION_STREAM, epoch])
        permutations = random_permutations(generator, len(players), o.samples)
        cost = SelectionCost()
        mode = reference_bn_mode(epoch) if o.bn_mode == "reference" else o.bn_mode
        estimate = shapley_values(
            SupernetGame(net, weights, players, batches_of, cost), permutations, o.threshold,
            mode, update_running_stats=o.bn_mode == "reference",
        )  # fmt: skip
        values = value_matrix(estimate.value, players, weights.shape)
        self._step(values, alpha_batches.seed)
        return {
            "shapley_step": 1,
            "shapley_forward_passes": cost.forward_passes,
            "shapley_removed": float(np.mean(estimate.removed)),
        }

    def _step(self, values: np.ndarray, seed: int) -> None:
        """``change_alpha``: momentum on the standardised values, then the alpha step."""
        o, alphas = self.options, self.supernet.alphas
        if self.accumulator is None:
            generator = torch.Generator().manual_seed(seed)
            self.accumulator = o.accumulator_init * torch.randn(
                tuple(alphas.shape), generator=generator, dtype=torch.float64
            )
        z = standardised(values, self.supernet.space.edge_groups)
        self.accumulator = o.shapley_momentum * self.accumulator + (1 - o.shapley_momentum) * z
        with torch.no_grad():
            alphas.add_((o.step_size * self.accumulator).to(alphas))

    def state_dict(self) -> dict[str, Any]:
        accumulator = None if self.accumulator is None else self.accumulator.clone()
        return {**super().state_dict(), "shapley_accumulator": accumulator}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        accumulator = state.get("shapley_accumulator")
        self.accumulator = None if accumulator is None else accumulator.clone()

    def recorded_settings(self) -> dict[str, Any]:
        settings = super().recorded_settings()
        settings["arch_optimizer"] = {
            "type": "none: alphas move by standardised Shapley values with momentum"
        }
        settings["step_order"] = "weight only; a Shapley step before each epoch after pre-training"
        settings["shapley"] = {"pretrain_epochs": self.pretrain}
        return settings


def _check_number(
    name: str, value: Any, low: float, below: float = math.inf, positive: bool = False
) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and low <= value < below):
        upper = f" and below {below}" if math.isfinite(below) else ""
        raise HarnessError(f"shapley-nas {name} must be a finite number >= {low}{upper}")
    if positive and value == 0:
        raise HarnessError(f"shapley-nas {name} must be positive")


def _clip_scope(options: ShapleyNasOptions) -> str:
    return "all" if options.clip_alphas else "weights"
