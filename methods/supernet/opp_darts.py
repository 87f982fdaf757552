"""OPP-DARTS (Zhu et al.): operations enter the search progressively, skip_connect last.

Training runs in stages. The first stage searches over ``initial_ops`` only (the
other ops are masked out through the supernet's ``active_ops``). At each stage
boundary every remaining candidate (``skip_connect`` excepted while others remain) is
tried: it is added with fresh parameters and alphas, and the supernet's mean
training loss over ``trial_batches`` unaugmented batches of the weight split is
measured; the candidate giving the LARGEST loss enters (it is the op the current
supernet is least able to absorb). The newcomer keeps its fresh parameters and
alphas, and both optimisers are re-created (the cosine schedule keeps its place).

Defaults for NAS-Bench-201 (a harness choice; the paper's full text is not here):
start from ``none`` and ``nor_conv_3x3``; four stages of equal length, so
``nor_conv_1x1`` and ``avg_pool_3x3`` enter in an order chosen by the criterion, then
``skip_connect``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F

from harness.errors import HarnessError
from methods.supernet.base import SupernetAlgorithm
from spaces.nb201 import OP_NAMES
from spaces.nb201.networks import SearchCell

SKIP = OP_NAMES.index("skip_connect")


@dataclasses.dataclass(frozen=True)
class OppDartsOptions:
    initial_ops: str = "none,nor_conv_3x3"  # comma-separated op names
    stage_epochs: int = 0  # 0: split the epochs evenly over the stages
    trial_batches: int = 4
    alpha_init_scale: float = 1e-3


class OppDarts(SupernetAlgorithm):
    name = "opp-darts"
    options_class = OppDartsOptions

    def __init__(self, supernet, train, options=None) -> None:
        super().__init__(supernet, train, options)
        names = [n.strip() for n in self.options.initial_ops.split(",") if n.strip()]
        unknown = [n for n in names if n not in OP_NAMES]
        if unknown or not names or "skip_connect" in names:
            raise HarnessError(
                f"opp-darts initial_ops {self.options.initial_ops!r} must name ops from "
                f"{', '.join(OP_NAMES)} other than skip_connect"
            )
        self.initial = [OP_NAMES.index(n) for n in names]
        self.entered: list[int] = []  # ops added at stage boundaries, in order
        with torch.no_grad():
            supernet.active_ops.fill_(False)
            supernet.active_ops[:, self.initial] = True

    @property
    def num_stages(self) -> int:
        return 1 + len(OP_NAMES) - len(self.initial)

    @property
    def stage_length(self) -> int:
        if self.options.stage_epochs > 0:
            return self.options.stage_epochs
        return max(1, math.ceil(self.train_settings.epochs / self.num_stages))

    def begin_epoch(self, epoch: int, weight_batches, alpha_batches) -> dict[str, float]:
        stage = min(epoch // self.stage_length, self.num_stages - 1)
        while len(self.entered) < stage:
            self._grow(epoch, len(self.entered) + 1, weight_batches)
        return {"stage": stage, "active_ops": int(self.supernet.active_ops[0].sum())}

    def _grow(self, epoch: int, stage: int, weight_batches) -> None:
        remaining = [k for k in range(len(OP_NAMES)) if k not in self.initial + self.entered]
        candidates = [k for k in remaining if k != SKIP] or remaining
        losses = {k: self._trial_loss(k, stage, weight_batches) for k in candidates}
        newcomer = max(candidates, key=lambda k: (losses[k], -k))  # ties: earlier op
        self._activate(newcomer, stage)
        self.entered.append(newcomer)
        # Fresh optimiser state (momenta, Adam moments); the lr schedule keeps its place.
        lrs = [group["lr"] for group in self.weight_optimizer.param_groups]
        schedule = self.scheduler.state_dict()
        self.make_optimisers()
        self.scheduler.load_state_dict(schedule)
        for group, lr in zip(self.weight_optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr

    @torch.no_grad()
    def _trial_loss(self, op: int, stage: int, weight_batches) -> float:
        saved = {k: v.clone() for k, v in self.supernet.state_dict().items()}
        self._activate(op, stage)
        self.supernet.train()
        losses = []
        for index, (x, y) in enumerate(weight_batches.epoch(10_000 + stage)):
            if index >= self.options.trial_batches:
                break
            losses.append(F.cross_entropy(self.supernet(x), y).item())
        self.supernet.load_state_dict(saved)
        return sum(losses) / len(losses)

    def _activate(self, op: int, stage: int) -> None:
        """Give ``op`` fresh parameters and alphas (seeded by stage) and switch it on."""
        # Initialised on the CPU from a fixed seed, so every device gets the same newcomer.
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(1_000 * stage + op)
            for block in self.supernet.cells:
                if isinstance(block, SearchCell):
                    template = copy.deepcopy(block.edges[0].ops[op]).cpu()
                    for edge in block.edges:
                        for module in template.modules():
                            if hasattr(module, "reset_parameters"):
                                module.reset_parameters()
                        edge.ops[op].load_state_dict(template.state_dict())
            fresh = self.options.alpha_init_scale * torch.randn(self.supernet.alphas.shape[0])
            self.supernet.alphas[:, op] = fresh.to(self.supernet.alphas.device)
            self.supernet.active_ops[:, op] = True

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "entered": list(self.entered)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The op mask itself is a buffer of the supernet, restored with the model.
        self.entered = list(state["entered"])
        super().load_state_dict(state)
