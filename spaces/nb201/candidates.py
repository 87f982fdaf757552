"""Many mixing matrices on one batch in a single pass (for selection scoring).

Scoring methods measure the supernet under dozens of candidate mixing matrices on the same
images. :func:`candidate_logits` evaluates K of them at once: the stem (which no mixing
matrix reaches) runs once, then the batch is stacked K times and every search cell mixes
block k with matrix k. Train-mode BatchNorm takes each candidate's own batch statistics,
exactly as K separate passes would, and running statistics are never updated (in eval
mode they are read). Logits equal K separate ``supernet(x, weights[k])`` calls to float
tolerance; ops whose weight is zero in every candidate are not computed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spaces.base import Supernet
from spaces.batch_norm import module_batch_norm
from spaces.nb201.fused import FusedSearchCell, op_plan
from spaces.nb201.ops import ReLUConvBN, ResNetReduction


@torch.no_grad()
def candidate_logits(supernet: Supernet, x: torch.Tensor, weights: torch.Tensor):
    """Logits (K x batch x classes) of ``supernet`` on ``x`` under each of K matrices.

    ``weights`` is K x edges x ops (shared by all cells). Supernets with reference cells
    are evaluated one matrix at a time.
    """
    if weights.dim() != 3:
        raise ValueError(f"candidate weights must be K x edges x ops, got {tuple(weights.shape)}")
    if supernet.cell_impl != "fused":
        return torch.stack([supernet(x, w) for w in weights])
    groups = weights.shape[0]
    if supernet.autocast is None:
        return _candidate_forward(supernet, x, weights, groups)
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        return _candidate_forward(supernet, x, weights, groups).float()


def _candidate_forward(supernet, x, weights, groups):
    batch = x.shape[0]
    plan = op_plan(weights)
    if supernet.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    conv, norm = supernet.stem
    # The stem's output is the same for every candidate: computed once.
    h = module_batch_norm(norm, conv(x), 1)
    h = h.unsqueeze(0).expand(groups, *h.shape).flatten(0, 1)
    h = h.contiguous(memory_format=_memory_format(supernet))
    for block in supernet.cells:
        if isinstance(block, FusedSearchCell):
            h = block.forward_candidates(h, weights, plan)
        elif isinstance(block, ResNetReduction):
            h = _reduction(block, h, groups)
        else:
            h = block(h)
    norm = supernet.lastact[0]
    h = F.relu(module_batch_norm(norm, h, groups))
    logits = supernet.classifier(F.adaptive_avg_pool2d(h, 1).flatten(1))
    return logits.unflatten(0, (groups, batch))


def _memory_format(supernet: Supernet) -> torch.memory_format:
    return torch.channels_last if supernet.channels_last else torch.contiguous_format


def _relu_conv_bn(block: ReLUConvBN, x: torch.Tensor, groups: int) -> torch.Tensor:
    _, conv, norm = block.op
    return module_batch_norm(norm, conv(F.relu(x)), groups)


def _reduction(block: ResNetReduction, x: torch.Tensor, groups: int) -> torch.Tensor:
    residual = _relu_conv_bn(block.conv_b, _relu_conv_bn(block.conv_a, x, groups), groups)
    return block.downsample(x) + residual
