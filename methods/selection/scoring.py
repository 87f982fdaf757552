"""Measuring a supernet under a given mixing matrix, counting the cost."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

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
    does while scoring; running statistics are restored afterwards so one scoring
    pass never influences the next.
    """
    if bn_mode not in ("train", "eval"):
        raise ValueError(f"bn_mode must be 'train' or 'eval', got {bn_mode!r}")
    saved = _bn_buffers(supernet) if bn_mode == "train" else None
    was_training = supernet.training
    supernet.train(bn_mode == "train")
    total_loss, correct, count = 0.0, 0, 0
    for index, (x, y) in enumerate(batches.epoch(epoch)):
        if num_batches is not None and index >= num_batches:
            break
        logits = supernet(x, weights)
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        count += len(y)
        cost.forward_passes += 1
    supernet.train(was_training)
    if saved is not None:
        _restore_bn_buffers(supernet, saved)
    return Measurement(total_loss / count, correct / count)


def _bn_buffers(supernet: Supernet) -> dict[str, torch.Tensor]:
    return {
        name: buffer.clone()
        for name, buffer in supernet.named_buffers()
        if "running_" in name or "num_batches_tracked" in name
    }


def _restore_bn_buffers(supernet: Supernet, saved: dict[str, torch.Tensor]) -> None:
    buffers = dict(supernet.named_buffers())
    for name, value in saved.items():
        buffers[name].copy_(value)


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
    losses, correct, count = [0.0] * len(matrices), [0] * len(matrices), 0
    for index, (x, y) in enumerate(batches.epoch(0)):
        if num_batches is not None and index >= num_batches:
            break
        logits = supernet.candidate_logits(x, stacked)  # K x B x classes
        for k in range(len(matrices)):
            losses[k] += F.cross_entropy(logits[k], y, reduction="sum").item()
            correct[k] += (logits[k].argmax(1) == y).sum().item()
        count += len(y)
        cost.forward_passes += len(matrices)
    supernet.train(was_training)
    pairs = zip(losses, correct, strict=True)
    return [Measurement(loss / count, hit / count) for loss, hit in pairs]
