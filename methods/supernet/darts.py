"""DARTS (Liu et al., ICLR 2019): first-order and second-order (unrolled) updates.

Second order follows the original code: the alpha gradient of the validation loss
after one virtual SGD step ``w' = w - eta (momentum * buf + grad_w L_train + wd w)``,
with the Hessian-vector product replaced by a central finite difference with
radius ``r / ||grad_w' L_val||``.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from methods.supernet.base import Batch, SupernetAlgorithm
from spaces.base import Supernet


class DartsFirstOrder(SupernetAlgorithm):
    name = "darts"


@dataclasses.dataclass(frozen=True)
class SecondOrderOptions:
    hessian_radius: float = 0.01


class DartsSecondOrder(SupernetAlgorithm):
    name = "darts-2nd"
    options_class = SecondOrderOptions

    def alpha_step(self, weight_batch: Batch, alpha_batch: Batch) -> None:
        eta = self.weight_optimizer.param_groups[0]["lr"]
        momentum_buffers = [
            self.weight_optimizer.state.get(p, {}).get("momentum_buffer")
            for p in self.supernet.weight_parameters()
        ]
        grad = unrolled_alpha_gradient(
            self.supernet,
            weight_batch,
            alpha_batch,
            eta=eta,
            momentum=self.train_settings.momentum,
            momentum_buffers=momentum_buffers,
            weight_decay=self.train_settings.weight_decay,
            hessian_radius=self.options.hessian_radius,
        )
        self.apply_alpha_gradient(grad)


def unrolled_alpha_gradient(
    supernet: Supernet,
    weight_batch: Batch,
    alpha_batch: Batch,
    eta: float,
    momentum: float = 0.0,
    momentum_buffers: list[torch.Tensor | None] | None = None,
    weight_decay: float = 0.0,
    hessian_radius: float = 0.01,
) -> torch.Tensor:
    """d/d alpha of L_val(w'(alpha), alpha), with the DARTS finite-difference HVP.

    The supernet's weights are restored before returning.
    """
    params = supernet.weight_parameters()
    alphas = supernet.alphas
    x_train, y_train = weight_batch
    x_valid, y_valid = alpha_batch
    original = [p.detach().clone() for p in params]

    train_loss = F.cross_entropy(supernet(x_train), y_train)
    train_grads = torch.autograd.grad(train_loss, params)
    buffers = momentum_buffers or [None] * len(params)
    with torch.no_grad():
        for p, g, buf in zip(params, train_grads, buffers, strict=True):
            step = g + weight_decay * p
            if buf is not None:
                step = step + momentum * buf
            p.sub_(eta * step)

    valid_loss = F.cross_entropy(supernet(x_valid), y_valid)
    grads = torch.autograd.grad(valid_loss, [alphas, *params])
    alpha_grad, vector = grads[0], grads[1:]

    radius = hessian_radius / torch.sqrt(sum((v * v).sum() for v in vector))
    hvp_parts = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for p, w, v in zip(params, original, vector, strict=True):
                p.copy_(w + sign * radius * v)
        loss = F.cross_entropy(supernet(x_train), y_train)
        hvp_parts.append(torch.autograd.grad(loss, [alphas])[0])
    with torch.no_grad():
        for p, w in zip(params, original, strict=True):
            p.copy_(w)
    implicit = (hvp_parts[0] - hvp_parts[1]) / (2 * radius)
    return (alpha_grad - eta * implicit).detach()
