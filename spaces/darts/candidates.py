"""Many mixing matrices on one batch in a single pass of the DARTS supernet (selection).

Progressive selection (DARTS-PT, OStr, the OPP criterion) measures the supernet under
dozens of candidate matrices on the same images. With fused cells
(:class:`~spaces.darts.search.FusedSearchCell`), :func:`candidate_logits` pushes K of them
through one pass: the stem (which no matrix reaches) runs once, the batch is stacked K
times, and every cell mixes block k with matrix k (:func:`~spaces.darts.fused.
fused_cell_forward` with K x 14 x ops rows). Train-mode BatchNorm takes each block's own
batch statistics, as K separate passes would; running statistics are read in eval mode and
never written. Logits equal K separate ``supernet(x, weights[k])`` calls to float
tolerance. Reference cells, and spaces with noise ops (S4, whose draws follow the
one-at-a-time order), are evaluated one matrix at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spaces.batch_norm import module_batch_norm
from spaces.darts.genotype import EDGES_PER_CELL


@torch.no_grad()
def candidate_logits(supernet: nn.Module, x: torch.Tensor, weights: torch.Tensor):
    """Logits (K x batch x classes) of DARTS ``supernet`` on ``x`` under each of K mixing
    matrices (``weights``: K x 28 x ops)."""
    if weights.dim() != 3:
        raise ValueError(f"candidate weights must be K x edges x ops, got {tuple(weights.shape)}")
    if supernet.cell_impl != "fused" or _draws_noise(supernet) or weights.shape[0] == 1:
        return torch.stack([supernet(x, w) for w in weights])
    groups, batch = weights.shape[0], x.shape[0]
    conv, norm = supernet.stem
    h = module_batch_norm(norm, conv(x), 1)  # the same for every candidate: computed once
    s0 = s1 = h.unsqueeze(0).expand(groups, *h.shape).flatten(0, 1)
    for cell in supernet.cells:
        rows = weights[:, EDGES_PER_CELL:] if cell.reduction else weights[:, :EDGES_PER_CELL]
        s0, s1 = s1, cell(s0, s1, rows)
    logits = supernet.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))
    return logits.unflatten(0, (groups, batch))


def _draws_noise(supernet: nn.Module) -> bool:
    """Whether the space has a noise op (S4): read from its op names, not by walking the
    supernet's modules on every call."""
    return "noise" in supernet.space.op_names
