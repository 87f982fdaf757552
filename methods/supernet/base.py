"""What a supernet training algorithm is: how weights and alphas move each step.

The training loop (:mod:`harness.training`) owns epochs, data, checkpoints and
metrics; an algorithm owns the optimisers and the update rule. Algorithms are
registered by name in :mod:`methods.supernet`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from harness.config import TrainSettings
from harness.errors import HarnessError
from harness.plugins import NoOptions, plugin_source
from spaces.base import SearchSpace, Supernet

Batch = tuple[torch.Tensor, torch.Tensor]


class SupernetAlgorithm:
    """Base class: SGD (cosine) for weights, Adam for alphas, as in DARTS."""

    name: ClassVar[str]
    options_class: ClassVar[type] = NoOptions
    # Whether the alphas stay at their initialisation (DARTS-PT's fixed-alpha supernet);
    # the conformance check then expects them unchanged bit for bit.
    fixed_alphas: ClassVar[bool] = False

    def __init__(
        self, supernet: Supernet, train: TrainSettings, options: dict[str, Any] | Any = None
    ) -> None:
        """``options``: raw values (parsed and checked here), or an instance of
        :attr:`options_class` already parsed and checked where the experiment was resolved
        (:func:`harness.experiment.resolve_experiment`), taken as it is."""
        self.supernet = supernet
        self.train_settings = train
        if isinstance(options, self.options_class):
            self.options = options
        else:
            self.options = parse_options(self.options_class, options or {}, self.name)
            self.check_settings(self.options, train, supernet.space)
        self.make_optimisers()

    @classmethod
    def check_settings(cls, options: Any, train: TrainSettings, space: SearchSpace) -> None:
        """Refuse options that cannot work with ``train`` or ``space``, before any work."""

    def make_optimisers(self, lr: float | None = None, schedule_epochs: int | None = None) -> None:
        """Fresh optimisers; the cosine runs from ``lr`` (train.lr) over ``schedule_epochs``
        (train.epochs) epochs."""
        train = self.train_settings
        self.weight_optimizer = torch.optim.SGD(
            self.supernet.weight_parameters(),
            lr=train.lr if lr is None else lr,
            momentum=train.momentum,
            weight_decay=train.weight_decay,
            nesterov=train.nesterov,
        )
        self.arch_optimizer = torch.optim.Adam(
            self.supernet.arch_parameters(),
            lr=self.arch_lr(),
            betas=train.arch_betas,
            weight_decay=train.arch_weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.weight_optimizer,
            T_max=train.epochs if schedule_epochs is None else schedule_epochs,
            eta_min=train.lr_min,
        )

    def arch_lr(self) -> float:
        return self.train_settings.arch_lr

    # -- hooks the loop calls -------------------------------------------------------
    def begin_epoch(self, epoch: int, weight_batches, alpha_batches) -> dict[str, float]:
        """Called before each epoch (0-based); returns metrics to record."""
        return {}

    def step(self, weight_batch: Batch, alpha_batch: Batch) -> tuple[float, float]:
        """One update; returns (training loss, training accuracy) on ``weight_batch``."""
        if self.step_order() == "alpha-then-weight":
            self.alpha_step(weight_batch, alpha_batch)
            return self.weight_step(weight_batch)
        result = self.weight_step(weight_batch)
        self.alpha_step(weight_batch, alpha_batch)
        return result

    def end_epoch(self, epoch: int) -> dict[str, float]:
        self.scheduler.step()
        return {}

    def step_order(self) -> str:
        return self.train_settings.step_order

    # -- the DARTS first-order update ----------------------------------------------
    def alpha_step(self, weight_batch: Batch, alpha_batch: Batch) -> None:
        x, y = alpha_batch
        loss = F.cross_entropy(self.supernet(x), y)
        (grad,) = torch.autograd.grad(loss, [self.supernet.alphas])
        self.apply_alpha_gradient(grad)

    def apply_alpha_gradient(self, grad: torch.Tensor) -> None:
        self.arch_optimizer.zero_grad(set_to_none=True)
        self.supernet.alphas.grad = grad
        self.arch_optimizer.step()

    def weight_step(self, weight_batch: Batch) -> tuple[float, float]:
        x, y = weight_batch
        clip_all = self.train_settings.clip_scope == "all"
        weights = self.supernet.mixing_weights()
        if not clip_all:
            weights = weights.detach()
        self.weight_optimizer.zero_grad(set_to_none=True)
        logits = self.supernet(x, weights)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        self.clip_and_step()
        return loss.item(), accuracy(logits, y)

    def clip_and_step(self) -> None:
        """Clip the gradient norm and take the weight step.

        With ``train.clip_scope`` ``all`` the norm is taken over every parameter, as in
        xautodl's search scripts (``clip_grad_norm_(network.parameters(), 5)``): there the
        alphas still hold their last alpha step's gradient (only the alpha optimiser
        zeroes it) plus the training loss's, and both count towards the norm; the alpha
        step then zeroes them before it computes its own.
        """
        params = list(self.supernet.weight_parameters())
        if self.train_settings.clip_scope == "all":
            params.append(self.supernet.alphas)
        torch.nn.utils.clip_grad_norm_(params, self.train_settings.grad_clip)
        self.weight_optimizer.step()

    # -- resumability ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "weight_optimizer": self.weight_optimizer.state_dict(),
            "arch_optimizer": self.arch_optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }
        if self.train_settings.clip_scope == "all":
            # The next clip counts the gradient left on the alphas: resume must see it.
            grad = self.supernet.alphas.grad
            state["alpha_grad"] = None if grad is None else grad.detach().clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weight_optimizer.load_state_dict(state["weight_optimizer"])
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("alpha_grad") is not None:
            self.supernet.alphas.grad = state["alpha_grad"].to(self.supernet.alphas.device)

    def recorded_settings(self) -> dict[str, Any]:
        """Everything about the update rule, for settings.json."""
        train = self.train_settings
        source = plugin_source(type(self))  # where a plugin algorithm came from
        return {
            "name": self.name,
            **({"source": source} if source else {}),
            "options": dataclasses.asdict(self.options),
            "weight_optimizer": {
                "type": "SGD",
                "lr": train.lr,
                "momentum": train.momentum,
                "weight_decay": train.weight_decay,
                "schedule": f"cosine to {train.lr_min} over {train.epochs} epochs",
                "grad_clip": train.grad_clip,
                # Recorded only when set, so records made before they existed stay equal.
                **({"nesterov": True} if train.nesterov else {}),
                **({"clip_scope": train.clip_scope} if train.clip_scope != "weights" else {}),
            },
            "arch_optimizer": {
                "type": "Adam",
                "lr": self.arch_lr(),
                "betas": list(train.arch_betas),
                "weight_decay": train.arch_weight_decay,
            },
            "step_order": self.step_order(),
        }


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(dim=1) == labels).float().mean().item()


def parse_options(options_class: type, raw: dict[str, Any], algorithm: str):
    known = {f.name: f for f in dataclasses.fields(options_class)}
    unknown = set(raw) - set(known)
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise HarnessError(
            f"unknown option(s) {', '.join(sorted(unknown))} for {algorithm}; known: {listed}"
        )
    values = {}
    for name, value in raw.items():
        default = known[name].default
        values[name] = _coerce(value, default, f"option {name} of {algorithm}")
    return options_class(**values)


def _coerce(value: Any, default: Any, what: str) -> Any:
    """``value`` in the type of ``default`` (no silent truthiness for booleans)."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise HarnessError(f"{what} must be true or false, got {value!r}")
    if isinstance(default, int | float) and isinstance(value, bool):
        raise HarnessError(f"{what} must be a number, got {value!r}")
    try:
        converted = type(default)(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
        raise HarnessError(f"{what} must be like {default!r}, got {value!r}") from None
    if isinstance(default, int) and converted != value:
        raise HarnessError(f"{what} must be a whole number, got {value!r}")
    return converted
