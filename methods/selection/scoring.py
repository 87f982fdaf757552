"""Measuring a supernet under a given mixing matrix, counting the cost."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from harness.batches import Tally
from harness.data import Batches
from methods.selection.base import SelectionCost
from spaces.base import Supernet


@dataclass(frozen=True)
class Measurement:
    loss: float
    accuracy: float


@torch.inference_mode()
def measure(
    supernet: Supernet,
    weights: torch.Tensor,
    batches: Batches,
    num_batches: int | None,
    cost: SelectionCost,
    bn_mode: str = "train",
    epoch: int = 0,
) -> Measurement:
    """Mean loss and accuracy over the first ``num_batches`` batches (all if None) of
    ``batches``' epoch ``epoch`` (its shuffle and augmentation).

    ``bn_mode="train"`` normalises with batch statistics, as the DARTS-PT reference
    does while scoring; running statistics are neither read nor written
    (:func:`batch_statistics_only`), so one scoring pass never influences the next.
    """
    if bn_mode not in ("train", "eval"):
        raise ValueError(f"bn_mode must be 'train' or 'eval', got {bn_mode!r}")
    was_training = supernet.training
    supernet.train(bn_mode == "train")
    tally = Tally()
    with batch_statistics_only(supernet, bn_mode == "train"):
        for index, (x, y) in enumerate(batches.epoch(epoch)):
            if num_batches is not None and index >= num_batches:
                break
            tally.add(supernet(x, weights), y)
            cost.forward_passes += 1
    supernet.train(was_training)
    return Measurement(tally.mean_loss, tally.accuracy)


@contextmanager
def batch_statistics_only(supernet: nn.Module, active: bool = True) -> Iterator[None]:
    """Train-mode BatchNorm that leaves its running statistics alone, while active.

    Every ``torch`` BatchNorm module stops tracking running statistics for the duration:
    in train mode its output is the same (batch statistics are what it normalises with
    either way), but nothing is written, so a scoring pass needs no copy of the buffers
    to restore (that copy and the per-call updates were 7 % of a pass on the proxy
    supernet). A norm layer of a plugin space that is not a ``torch`` BatchNorm keeps
    its own behaviour.
    """
    norms = [
        module
        for module in supernet.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats
    ] if active else []  # fmt: skip
    for norm in norms:
        norm.track_running_stats = False
    try:
        yield
    finally:
        for norm in norms:
            norm.track_running_stats = True


@torch.inference_mode()
def measure_candidates(
    supernet: Supernet,
    matrices: list[torch.Tensor],
    batches: Batches,
    num_batches: int | None,
    cost: SelectionCost,
    bn_mode: str = "train",
) -> list[Measurement]:
    """:func:`measure` for several mixing matrices, evaluated together on every batch.

    Each matrix sees exactly what :func:`measure` would show it (its own batch statistics
    in train mode); running statistics are not touched. ``cost`` counts one forward pass
    per matrix and batch, as separate measurements would.
    """
    if bn_mode not in ("train", "eval"):
        raise ValueError(f"bn_mode must be 'train' or 'eval', got {bn_mode!r}")
    stacked = torch.stack(matrices)
    was_training = supernet.training
    supernet.train(bn_mode == "train")
    tallies = [Tally() for _ in matrices]
    # A supernet that evaluates the matrices one at a time must not write its running
    # statistics between them either.
    with batch_statistics_only(supernet, bn_mode == "train"):
        for index, (x, y) in enumerate(batches.epoch(0)):
            if num_batches is not None and index >= num_batches:
                break
            logits = supernet.candidate_logits(x, stacked)  # K x B x classes
            for tally, candidate in zip(tallies, logits, strict=True):
                tally.add(candidate, y)
            cost.forward_passes += len(matrices)
    supernet.train(was_training)
    return [Measurement(tally.mean_loss, tally.accuracy) for tally in tallies]
