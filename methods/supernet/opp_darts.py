"""OPP-DARTS (Zhu et al.): operations enter the search one at a time, skip_connect last.

The schedule of the public code (zxunyu/OPP-DARTS, ``train_search.py``, DARTS space):

* **Start** with one parametric op: every parametric candidate is tried alone in a
  freshly initialised network, scored by its mean training loss over the whole
  (augmented) weight split, and the one with the LARGEST loss starts the search.
* **Admit** one more op every ``add_op_epoch`` epochs (2 in a 50-epoch search): at
  epochs ``a, 2a, ..., n*a`` each remaining candidate is tried (added with fresh
  parameters and a fresh ``1e-3 * randn`` alpha, scored as above) and the largest-loss
  one enters. ``none`` is an ordinary candidate that must earn its way in.
* **skip_connect** enters last, at the next slot ``(n+1)*a`` (epoch 14 of 50 there,
  where n = 6), without a trial.
* After every admission both optimisers are new (fresh momenta and Adam moments) and
  the weights' cosine schedule restarts from the current learning rate over the epochs
  left.

The port to NAS-Bench-201 (the reference covers the DARTS space only) decides:

* the parametric ops are ``nor_conv_1x1`` and ``nor_conv_3x3``; the candidates that
  follow are ``none``, the other convolution and ``avg_pool_3x3`` (n = 3), so by the
  reference's rule skip enters at ``4*a`` (epoch 8 of 50). The rule is ported, not the
  epoch number; ``skip_epoch`` sets another epoch (e.g. 14 for the reference's 28 %).
* ``add_op_epoch`` 0 scales the spacing with the run: ``max(1, round(2 * epochs / 50))``.
* One supernet holds every op, masked through its ``active_ops``: a "fresh network" is
  this supernet with only the tried op switched on (stem and classifier are shared by
  the initial trials; the reference builds a separate network per candidate).
* Trials run with BatchNorm in training mode, and the supernet is restored after each.
  (The reference's later trials deep-copy cells left in eval mode by its validation
  pass, so there the old ops use running statistics; the harness does not copy that.)
* ``trial_batches`` N > 0 scores on the first N batches instead of the whole split (a
  cheaper, recorded deviation).
* On an op-subset space the ops are the space's: the parametric ones (ops with
  parameters) compete to start, the rest but skip_connect follow, skip_connect (when the
  space has it) comes last. OPP-DARTS admits an op for the whole cell, so a space with
  different candidates per edge is refused, as is one without a parametric op.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
import torch.nn.functional as F

from harness.config import TrainSettings
from harness.errors import HarnessError
from methods.supernet.base import SupernetAlgorithm
from spaces.base import SearchSpace

REFERENCE_SPACING = (2, 50)  # add_op_epoch = 2 in the reference's 50-epoch search


@dataclasses.dataclass(frozen=True)
class OppDartsOptions:
    initial_op: str = "max-loss"  # or the name of a parametric op
    add_op_epoch: int = 0  # 0: 2 epochs per 50 of the run, at least 1
    skip_epoch: int = 0  # 0: the reference's rule, the slot after the last candidate
    trial_batches: int = 0  # 0: the whole weight split, as the reference
    restart_schedule: bool = True  # cosine restarts over the epochs left, as the reference
    alpha_init_scale: float = 1e-3


def admission_epochs(
    num_candidates: int, add_op_epoch: int, skip_epoch: int = 0, with_skip: bool = True
) -> list[int]:
    """Epochs (0-based, at their start) at which ops enter; the last one is skip_connect
    (when the space has it).

    The reference admits a candidate when ``epoch % a == 0`` for ``epoch`` in
    ``a, ..., n*a`` and skip when ``epoch > n*a`` is next a multiple of ``a``.
    """
    epochs = [add_op_epoch * k for k in range(1, num_candidates + 1)]
    if not with_skip:
        return epochs
    return [*epochs, skip_epoch or add_op_epoch * (num_candidates + 1)]


@dataclasses.dataclass(frozen=True)
class OpPool:
    """The ops OPP-DARTS grows through on a space (op indices)."""

    ops: tuple[int, ...]
    parametric: tuple[int, ...]
    skip: int | None

    @classmethod
    def of(cls, space: SearchSpace) -> OpPool:
        if len(set(space.candidates)) != 1:
            raise HarnessError(
                f"opp-darts admits each op for the whole cell, but space {space.name} has "
                "different candidate ops per edge; use a space with one op set"
            )
        ops = space.candidates[0]
        names = space.op_names
        parametric = tuple(k for k in ops if names[k] not in space.parameter_free_ops)
        if not parametric:
            raise HarnessError(
                f"opp-darts starts from a parametric op, and space {space.name} has none"
            )
        skip = names.index("skip_connect") if "skip_connect" in names else None
        return cls(ops, parametric, skip if skip in ops else None)

    @property
    def followers(self) -> int:
        """Ops admitted after the first and before skip_connect."""
        return len(self.ops) - 1 - (self.skip is not None)


def resolved_spacing(options: OppDartsOptions, train: TrainSettings) -> int:
    if options.add_op_epoch > 0:
        return options.add_op_epoch
    every, of = REFERENCE_SPACING
    return max(1, round(every * train.epochs / of))


class OppDarts(SupernetAlgorithm):
    name = "opp-darts"
    options_class = OppDartsOptions

    @classmethod
    def check_settings(
        cls, options: OppDartsOptions, train: TrainSettings, space: SearchSpace
    ) -> None:
        pool = OpPool.of(space)
        parametric = [space.op_names[k] for k in pool.parametric]
        if options.initial_op != "max-loss" and options.initial_op not in parametric:
            raise HarnessError(
                f"opp-darts initial_op {options.initial_op!r} must be max-loss or one of "
                f"{', '.join(parametric)}"
            )
        for name in ("add_op_epoch", "skip_epoch", "trial_batches"):
            if getattr(options, name) < 0:
                raise HarnessError(f"opp-darts {name} must be 0 or positive")
        if options.skip_epoch and pool.skip is None:
            raise HarnessError(
                f"opp-darts skip_epoch is set, but space {space.name} has no skip_connect"
            )
        schedule = admission_epochs(
            pool.followers, resolved_spacing(options, train), options.skip_epoch,
            with_skip=pool.skip is not None,
        )  # fmt: skip
        if not schedule:
            return
        if options.skip_epoch and len(schedule) > 1 and options.skip_epoch <= schedule[-2]:
            raise HarnessError(
                f"opp-darts skip_epoch {options.skip_epoch} must come after the last "
                f"candidate's admission at epoch {schedule[-2]}"
            )
        if schedule[-1] >= train.epochs:
            raise HarnessError(
                f"opp-darts admits ops at epochs {schedule} (skip_connect last), which needs "
                f"more than {schedule[-1]} epochs; the run has {train.epochs}: raise the "
                "epochs or lower algorithm.add_op_epoch / algorithm.skip_epoch"
            )

    def __init__(self, supernet, train, options=None) -> None:
        super().__init__(supernet, train, options)
        self.pool = OpPool.of(supernet.space)
        self.spacing = resolved_spacing(self.options, train)
        self.schedule = admission_epochs(
            self.pool.followers, self.spacing, self.options.skip_epoch,
            with_skip=self.pool.skip is not None,
        )  # fmt: skip
        self.admitted: list[int] = []  # every op switched on, in order; the first one started
        with torch.no_grad():  # until epoch 0 chooses, the parametric candidates
            supernet.active_ops.fill_(False)
            supernet.active_ops[:, list(self.pool.parametric)] = True

    def begin_epoch(self, epoch: int, weight_batches, alpha_batches) -> dict[str, float]:
        due = 1 + sum(1 for start in self.schedule if start <= epoch)
        while len(self.admitted) < due:
            self._admit(len(self.admitted), epoch, weight_batches)
        return {"stage": len(self.admitted) - 1, "active_ops": len(self.admitted)}

    def _admit(self, stage: int, epoch: int, weight_batches) -> None:
        if stage == 0:
            candidates = list(self.pool.parametric)
            if self.options.initial_op != "max-loss":
                candidates = [self.supernet.space.op_names.index(self.options.initial_op)]
            with torch.no_grad():
                self.supernet.active_ops.fill_(False)
        else:
            remaining = [k for k in self.pool.ops if k not in self.admitted]
            candidates = [k for k in remaining if k != self.pool.skip] or remaining
        if len(candidates) == 1:
            newcomer = candidates[0]
        else:
            losses = {k: self._trial_loss(k, stage, weight_batches) for k in candidates}
            newcomer = max(candidates, key=lambda k: (losses[k], -k))  # ties: earlier op
        self._activate(newcomer, stage)
        self.admitted.append(newcomer)
        if stage > 0:
            self._restart_optimisers(epoch)

    def _restart_optimisers(self, epoch: int) -> None:
        """New optimisers, as the reference; the cosine restarts from the lr in use."""
        lr = self.weight_optimizer.param_groups[0]["lr"]
        if self.options.restart_schedule:
            self.make_optimisers(lr=lr, schedule_epochs=self.train_settings.epochs - epoch)
            return
        schedule = self.scheduler.state_dict()
        self.make_optimisers()
        self.scheduler.load_state_dict(schedule)
        for group in self.weight_optimizer.param_groups:
            group["lr"] = lr

    @torch.no_grad()
    def _trial_loss(self, op: int, stage: int, weight_batches) -> float:
        saved = {k: v.clone() for k, v in self.supernet.state_dict().items()}
        self._activate(op, stage)
        self.supernet.train()
        total, count = 0.0, 0
        for index, (x, y) in enumerate(weight_batches.epoch(10_000 + stage)):
            if self.options.trial_batches and index >= self.options.trial_batches:
                break
            total += F.cross_entropy(self.supernet(x), y).item()
            count += 1
        self.supernet.load_state_dict(saved)
        return total / count

    def _activate(self, op: int, stage: int) -> None:
        """Give ``op`` fresh parameters and alphas (seeded by stage) and switch it on."""
        # Initialised on the CPU from a fixed seed, so every device gets the same newcomer.
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(1_000 * stage + op)
            for target in self.supernet.op_modules(op):
                template = copy.deepcopy(target).cpu()
                for module in template.modules():
                    if hasattr(module, "reset_parameters"):
                        module.reset_parameters()
                target.load_state_dict(template.state_dict())
            fresh = self.options.alpha_init_scale * torch.randn(self.supernet.alphas.shape[0])
            self.supernet.alphas[:, op] = fresh.to(self.supernet.alphas.device)
            self.supernet.active_ops[:, op] = True

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "admitted": list(self.admitted)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The op mask itself is a buffer of the supernet, restored with the model.
        self.admitted = list(state["admitted"])
        super().load_state_dict(state)

    def recorded_settings(self) -> dict[str, Any]:
        settings = super().recorded_settings()
        settings["admission"] = {
            "add_op_epoch": self.spacing,
            "epochs": [0, *self.schedule],
            "order": "max-loss parametric op, then max-loss candidates, skip_connect last",
        }
        return settings
