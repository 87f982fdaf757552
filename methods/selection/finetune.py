"""Fine-tuning a supernet copy between decisions (DARTS-PT's projection phase).

Decided edges are fixed to their one-hot rows in every forward; undecided rows
follow ``softmax(alphas)``, and alphas keep training unless told not to.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from methods.selection.base import SelectionContext, SelectionCost, fixed_weights
from spaces.base import Supernet


def finetune(
    supernet: Supernet,
    context: SelectionContext,
    decided: dict[int, int],
    steps: int,
    lr: float,
    train_alphas: bool,
    cost: SelectionCost,
    stream: int = 0,
) -> None:
    """``steps`` weight steps (SGD, constant ``lr``) and, optionally, alpha steps (Adam).

    Batches come from epochs ``10_000 + 100 * stream`` onwards of the training
    streams, so a fine-tuning phase is reproducible and never replays the batches
    another phase saw.
    """
    if steps <= 0:
        return
    train = context.train_settings
    weight_optimizer = torch.optim.SGD(
        supernet.weight_parameters(),
        lr=lr,
        momentum=train.momentum,
        weight_decay=train.weight_decay,
    )
    arch_optimizer = torch.optim.Adam(
        supernet.arch_parameters(),
        lr=train.arch_lr,
        betas=train.arch_betas,
        weight_decay=train.arch_weight_decay,
    )
    supernet.train()
    first_epoch = 10_000 + 100 * stream
    weight_stream = _batches(context.data.weight_batches, first_epoch)
    alpha_stream = _batches(context.data.alpha_batches, first_epoch)
    for _ in range(steps):
        if train_alphas:
            x, y = next(alpha_stream)
            weights = fixed_weights(supernet.mixing_weights(), decided)
            loss = F.cross_entropy(supernet(x, weights), y)
            arch_optimizer.zero_grad(set_to_none=True)
            (supernet.alphas.grad,) = torch.autograd.grad(loss, [supernet.alphas])
            arch_optimizer.step()
            cost.forward_passes += 1
            cost.backward_passes += 1
        x, y = next(weight_stream)
        weights = fixed_weights(supernet.mixing_weights().detach(), decided)
        weight_optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(supernet(x, weights), y).backward()
        torch.nn.utils.clip_grad_norm_(supernet.weight_parameters(), train.grad_clip)
        weight_optimizer.step()
        cost.forward_passes += 1
        cost.backward_passes += 1
        cost.finetune_steps += 1


def _batches(batches, first_epoch: int):
    for epoch in itertools.count(first_epoch):
        yield from batches.epoch(epoch)


def steps_for(epochs: float, batches) -> int:
    """Fine-tuning length in steps for a (possibly fractional) number of epochs."""
    return max(0, round(epochs * len(batches)))
