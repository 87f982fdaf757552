"""BatchNorm over the stacked outputs of several edges, for the fused DARTS cell.

:mod:`spaces.darts.fused` runs one op for all the edges of a source node with their
channels stacked; these functions normalise such a stack with one BatchNorm call while
keeping every edge's BatchNorm module exactly as ``nn.BatchNorm2d.forward`` would
(training flag, running statistics, ``num_batches_tracked``, momentum), and, for candidate
scoring, normalise K stacked copies of a batch each with its own statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spaces.batch_norm import grouped_batch_norm


def update_factor(norm: nn.BatchNorm2d) -> float:
    """The running-average factor ``norm.forward`` would use now (0: no update)."""
    if not (norm.training and norm.track_running_stats):
        return 0.0
    if norm.momentum is None:
        return 1.0 / float(norm.num_batches_tracked + 1)
    return norm.momentum


def alike(norms: Sequence[nn.BatchNorm2d]) -> bool:
    first = norms[0]
    settings = (first.training, first.track_running_stats, first.affine, first.eps,
                update_factor(first))  # fmt: skip
    return all(
        (n.training, n.track_running_stats, n.affine, n.eps, update_factor(n)) == settings
        for n in norms[1:]
    )


def stacked_norm(x: torch.Tensor, norms: Sequence[nn.BatchNorm2d], scale,
                  groups: int = 1) -> torch.Tensor:  # fmt: skip
    """``scale * BN_e(x_e)`` for the channel blocks ``x_e`` of ``x``, with one BN call.

    Follows ``nn.BatchNorm2d.forward`` for every module (training flag, running statistics,
    ``num_batches_tracked``, momentum); ``scale`` has one entry per channel, or is None.
    For ``groups`` stacked copies (candidate scoring) see :func:`grouped_norm`."""
    if groups != 1:
        return grouped_norm(x, norms, scale, groups)
    first = norms[0]
    if not alike(norms):
        blocks = x.split(first.num_features, dim=1)
        out = torch.cat([norm(block) for norm, block in zip(norms, blocks, strict=True)], dim=1)
        return out if scale is None else out * scale[:, None, None]
    factor = update_factor(first)
    update = factor != 0.0
    if update:
        for norm in norms:
            norm.num_batches_tracked.add_(1)
    running_mean = running_var = None
    if first.track_running_stats:
        running_mean = joined([norm.running_mean for norm in norms])
        running_var = joined([norm.running_var for norm in norms])
    weight = bias = None
    if first.affine:
        weight = joined([norm.weight for norm in norms])
        bias = joined([norm.bias for norm in norms])
        if scale is not None:
            weight, bias = weight * scale, bias * scale
    else:
        weight = scale
    batch_stats = first.training or not first.track_running_stats
    out = F.batch_norm(x, running_mean, running_var, weight, bias, batch_stats, factor, first.eps)
    if update and len(norms) > 1:
        with torch.no_grad():
            width = first.num_features
            means, variances = running_mean.split(width), running_var.split(width)
            for norm, mean, var in zip(norms, means, variances, strict=True):
                norm.running_mean.copy_(mean)
                norm.running_var.copy_(var)
    return out


def grouped_norm(x: torch.Tensor, norms: Sequence[nn.BatchNorm2d], scale,
                  groups: int) -> torch.Tensor:  # fmt: skip
    """:func:`stacked_norm` of ``groups`` stacked copies, each normalised on its own and
    scaled by its own row of ``scale`` (groups x channels, or None); running statistics
    are read in eval mode and never written (candidate scoring changes no state)."""
    first = norms[0]
    require_alike_settings(norms)
    batch_stats = first.training or not first.track_running_stats
    running = None
    if not batch_stats:
        running = (joined([n.running_mean for n in norms]), joined([n.running_var for n in norms]))
    weight = scale
    bias = None
    if first.affine:
        weight = joined([n.weight for n in norms]).expand(groups, -1)
        bias = joined([n.bias for n in norms]).expand(groups, -1)
        if scale is not None:
            weight, bias = weight * scale, bias * scale
    return grouped_batch_norm(x, groups, weight, bias, running, batch_stats, first.eps)


def require_alike_settings(norms: Sequence[nn.BatchNorm2d]) -> None:
    settings = {(n.training, n.track_running_stats, n.affine, n.eps) for n in norms}
    if len(settings) > 1:
        raise TypeError("candidate scoring needs the BatchNorms of one op alike in mode and kind")


def joined(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One tensor for all (the tensor itself for one: updated in place by batch_norm)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def update_running_statistics(x: torch.Tensor, norms, factor: float) -> None:
    """What ``nn.BatchNorm2d.forward`` in training mode does to each of ``norms``' buffers."""
    with torch.no_grad():
        var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=1)
        for norm in norms:
            norm.num_batches_tracked.add_(1)
            norm.running_mean.mul_(1.0 - factor).add_(mean, alpha=factor)
            norm.running_var.mul_(1.0 - factor).add_(var, alpha=factor)
