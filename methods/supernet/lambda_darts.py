"""Lambda-DARTS (Movahedi et al., ICLR 2023): align the cells' architecture gradients.

Every searched cell gets its own copy ``A_l`` of the mixing weights (all equal to
``softmax(alphas)``). With ``g_l = dL/dA_l``, the regulariser is the mean pairwise
cosine ``C = mean_{i<j} cos(g_i, g_j)``, maximised through the *weights*:

    grad_w  <-  grad_w L  -  lambda_t * grad_w C.

``grad_w C = d/dw [h . dL/dA]`` with ``h = dC/dg`` held fixed, and that directional
derivative is replaced by a central finite difference, so the regulariser costs two
extra forward/backward passes:

    grad_w C  ~=  (grad_w L(w, A + eps h) - grad_w L(w, A - eps h)) / (2 eps),
    eps = epsilon0 / ||h||.

``lambda_t`` ramps linearly from 0 (first epoch) to ``lambda_`` (last epoch). The alpha
step stays first-order DARTS, with the reference's smaller alpha learning rate.

The update follows the reference (dr-faustus/Lambda-DARTS, NAS-Bench-201
``exps/algos/DARTS-V1.py`` and ``TinyNetworkDartsV1`` in
``lib/models/cell_searchs/search_model_darts_v1.py``):

* the regularised weight step comes first, then the alpha step (option ``step_order``;
  ``train.step_order`` does not apply to this algorithm);
* the gradient norm is clipped over *all* parameters (option ``clip_alphas``). The
  alphas' gradient that counts is the reference's: its ``backward`` of the training loss
  adds to the gradient its previous alpha step left on the alphas (only the alpha
  optimiser zeroes them, just before its own step), so both count towards the norm;
* the regulariser is on whenever ``lambda_`` is nonzero (the reference's
  ``--corr_regularization``; ``lambda_ = 0`` is plain first-order DARTS), and then the two
  finite-difference passes run at every step, also while ``lambda_t`` is still 0: they
  move the BatchNorm running statistics even where the term they give is multiplied by 0;
* the first finite-difference pass is the one at ``A - eps h``, then ``A + eps h``, in
  the reference's order (it matters for the running statistics).

Each of these is checked over several steps against a transcription of the reference's
step in ``tests/test_lambda_darts_parity.py``. Option ``numerics_revision`` names this
revision of the update (in the run key): revision 1 overwrote the alphas' gradient with
the training loss's before the clip, skipped the passes at ``lambda_t = 0`` and ran them
plus side first; its stores are never reused.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from harness.config import TrainSettings
from harness.errors import HarnessError
from methods.supernet.base import Batch, SupernetAlgorithm, accuracy
from spaces.base import SearchSpace, Supernet

STEP_ORDERS = ("weight-then-alpha", "alpha-then-weight")
# The update's numerics revision: bumped when the same options compute something else, so
# that the run key changes (see the module docstring for what revision 1 did).
NUMERICS_REVISION = 2


@dataclasses.dataclass(frozen=True)
class LambdaDartsOptions:
    lambda_: float = 0.25
    epsilon0: float = 1e-4
    arch_lr: float = 1e-4  # the NAS-Bench-201 reference; replaces train.arch_lr
    step_order: str = "weight-then-alpha"  # the reference's; replaces train.step_order
    clip_alphas: bool = True  # clip over weights and alphas together, as the reference
    numerics_revision: int = NUMERICS_REVISION  # only the current one is computed


class LambdaDarts(SupernetAlgorithm):
    name = "lambda-darts"
    options_class = LambdaDartsOptions

    @classmethod
    def check_settings(
        cls, options: LambdaDartsOptions, train: TrainSettings, space: SearchSpace
    ) -> None:
        if options.numerics_revision != NUMERICS_REVISION:
            raise HarnessError(
                f"lambda-darts computes numerics revision {NUMERICS_REVISION} only, not "
                f"{options.numerics_revision}; leave algorithm.numerics_revision at its default"
            )
        if options.step_order not in STEP_ORDERS:
            raise HarnessError(
                f"unknown step_order {options.step_order!r} for lambda-darts; "
                f"use {' or '.join(STEP_ORDERS)}"
            )
        # A preset's train.step_order / clip_scope may agree with the options; never clash.
        if train.step_order not in (TrainSettings.step_order, options.step_order):
            raise HarnessError(
                "lambda-darts takes its step order from algorithm.step_order, "
                "not train.step_order; set --set algorithm.step_order=..."
            )
        if train.clip_scope not in (TrainSettings.clip_scope, "all" if options.clip_alphas else ""):
            raise HarnessError(
                "lambda-darts sets its clipping with algorithm.clip_alphas, "
                "not train.clip_scope; set --set algorithm.clip_alphas=true|false"
            )

    def __init__(self, supernet, train, options=None) -> None:
        super().__init__(supernet, train, options)
        self.current_lambda = 0.0
        self._cosines: list[float] = []

    def arch_lr(self) -> float:
        return self.options.arch_lr

    def step_order(self) -> str:
        return self.options.step_order

    def begin_epoch(self, epoch: int, weight_batches, alpha_batches) -> dict[str, float]:
        total = self.train_settings.epochs
        self.current_lambda = self.options.lambda_ * epoch / max(1, total - 1)
        self._cosines = []
        return {"lambda": self.current_lambda}

    def end_epoch(self, epoch: int) -> dict[str, float]:
        super().end_epoch(epoch)
        mean = sum(self._cosines) / len(self._cosines) if self._cosines else float("nan")
        return {"cell_grad_cosine": mean}

    def weight_step(self, weight_batch: Batch) -> tuple[float, float]:
        x, y = weight_batch
        params = self.supernet.weight_parameters()
        per_cell = per_cell_weights(self.supernet).requires_grad_(True)
        logits = self.supernet(x, per_cell)
        loss = F.cross_entropy(logits, y)
        grads = torch.autograd.grad(loss, [per_cell, *params], allow_unused=True)
        cell_grads, weight_grads = grads[0], grads[1:]
        cosine, direction = cosine_and_direction(cell_grads)
        self._cosines.append(cosine)
        if self.options.lambda_ != 0.0:
            # As the reference, the passes run while lambda_t is still 0 too (they move
            # the BatchNorm running statistics); only the term is left out then.
            regulariser = finite_difference_weight_gradient(
                self.supernet, x, y, per_cell.detach(), direction, self.options.epsilon0
            )
            if self.current_lambda != 0.0:
                weight_grads = [
                    g if g is None else g - self.current_lambda * r
                    for g, r in zip(weight_grads, regulariser, strict=True)
                ]
        self.weight_optimizer.zero_grad(set_to_none=True)
        for p, g in zip(params, weight_grads, strict=True):
            p.grad = None if g is None else g.detach()
        if self.options.clip_alphas:
            self.clip_over_weights_and_alphas(cell_grads.detach())
            self.weight_optimizer.step()
        else:
            self.clip_and_step()
        return loss.item(), accuracy(logits, y)

    def clip_over_weights_and_alphas(self, cell_grads: torch.Tensor) -> None:
        """Scale the weight gradients by the clip factor of weights and alphas together.

        The alphas' gradient is the reference's at this point: the training loss's added
        to the one the last alpha step left on them. It stays there, scaled, as in the
        reference; the next alpha step replaces it with its own.
        """
        alphas = self.supernet.alphas
        with torch.enable_grad():
            (alpha_grad,) = torch.autograd.grad(
                self.supernet.mixing_weights(), [alphas], grad_outputs=cell_grads.sum(0)
            )
        if alphas.grad is not None:
            alpha_grad = alphas.grad + alpha_grad
        alphas.grad = alpha_grad
        torch.nn.utils.clip_grad_norm_(
            [*self.supernet.weight_parameters(), alphas], self.train_settings.grad_clip
        )

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.options.clip_alphas:
            # The next clip counts the gradient left on the alphas: resume must see it
            # (the base class keeps it only under train.clip_scope "all").
            grad = self.supernet.alphas.grad
            state["alpha_grad"] = None if grad is None else grad.detach().clone()
        return state


def per_cell_weights(supernet: Supernet) -> torch.Tensor:
    shared = supernet.mixing_weights().detach()
    return shared.unsqueeze(0).repeat(supernet.num_search_cells, 1, 1)


def cosine_and_direction(cell_grads: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Mean pairwise cosine of the per-cell gradients and its gradient w.r.t. them."""
    g = cell_grads.detach().flatten(1).clone().requires_grad_(True)
    with torch.enable_grad():
        cosine = mean_pairwise_cosine(g)
        (direction,) = torch.autograd.grad(cosine, [g])
    return cosine.item(), direction.view_as(cell_grads)


def mean_pairwise_cosine(g: torch.Tensor) -> torch.Tensor:
    unit = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
    similarity = unit @ unit.T
    n = g.shape[0]
    upper = torch.triu_indices(n, n, offset=1, device=g.device)
    return similarity[upper[0], upper[1]].mean()


def finite_difference_weight_gradient(
    supernet: Supernet,
    x: torch.Tensor,
    y: torch.Tensor,
    per_cell: torch.Tensor,
    direction: torch.Tensor,
    epsilon0: float,
) -> list[torch.Tensor]:
    """grad_w of (direction . dL/dA) at A = per_cell, by a central difference in A."""
    params = supernet.weight_parameters()
    eps = epsilon0 / direction.norm().clamp_min(1e-12)
    sides = []
    for sign in (-1.0, 1.0):  # the reference's order: A - eps h first
        loss = F.cross_entropy(supernet(x, per_cell + sign * eps * direction), y)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        sides.append(
            [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
        )
    return [(plus - minus) / (2 * eps) for minus, plus in zip(*sides, strict=True)]
