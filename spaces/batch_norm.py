"""BatchNorm over a batch made of several stacked batches, each with its own statistics.

Selection scores many mixing matrices ("candidates") on the same images; a fused supernet
can push K of them through one pass with the batch stacked K times. Every BatchNorm of
such a pass must then normalise each candidate's block with that block's statistics, as K
separate passes would. Shared by the NAS-Bench-201 and DARTS fused cells.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def grouped_batch_norm(
    x: torch.Tensor,
    groups: int,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    running: tuple[torch.Tensor, torch.Tensor] | None,
    batch_stats: bool,
    eps: float,
) -> torch.Tensor:
    """BatchNorm of a batch made of ``groups`` stacked batches, each with its own statistics.

    ``weight`` and ``bias`` are per group and channel (groups x channels) or None. Running
    statistics are read in eval mode and never updated (scoring restores them anyway).
    """
    channels = x.shape[1]
    if batch_stats and groups == 1:
        flat_w = None if weight is None else weight.reshape(-1)
        flat_b = None if bias is None else bias.reshape(-1)
        return F.batch_norm(x, None, None, flat_w, flat_b, True, 0.0, eps)
    stacked = x.unflatten(0, (groups, -1))  # K, B, C, H, W
    if batch_stats:
        # One BatchNorm call over channels (K x C): the statistics of each candidate apart.
        side_by_side = stacked.transpose(0, 1).flatten(1, 2)  # B, K*C, H, W (a copy)
        flat_w = None if weight is None else weight.reshape(-1)
        flat_b = None if bias is None else bias.reshape(-1)
        out = F.batch_norm(side_by_side, None, None, flat_w, flat_b, True, 0.0, eps)
        return out.unflatten(1, (groups, channels)).transpose(0, 1).flatten(0, 1)
    mean, var = running
    out = F.batch_norm(x, mean, var, None, None, False, 0.0, eps).unflatten(0, (groups, -1))
    if weight is not None:
        out = out * weight[:, None, :, None, None]
    if bias is not None:
        out = out + bias[:, None, :, None, None]
    return out.flatten(0, 1)


def module_batch_norm(norm: nn.BatchNorm2d, x: torch.Tensor, groups: int) -> torch.Tensor:
    """What ``norm(x)`` gives each of ``groups`` stacked copies in ``x``, without writing
    ``norm``'s running statistics (its affine parameters shared by every copy)."""
    batch_stats = norm.training or not norm.track_running_stats
    weight = bias = None
    if norm.affine:
        weight = norm.weight.expand(groups, -1)
        bias = norm.bias.expand(groups, -1)
    running = None if batch_stats else (norm.running_mean, norm.running_var)
    return grouped_batch_norm(x, groups, weight, bias, running, batch_stats, norm.eps)
