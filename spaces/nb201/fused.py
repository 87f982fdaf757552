"""A faster NAS-Bench-201 search cell: the work of a cell grouped by source node.

:class:`FusedSearchCell` holds exactly the parameters and buffers of the reference
:class:`~spaces.nb201.cells.SearchCell` (same module tree, same ``state_dict``), so
checkpoints, ``discrete_from_supernet`` and the reference cell stay interchangeable; only
``forward`` differs. Node 0 feeds three edges and node 1 two, so per source node:

* ReLU runs once for all of its convolutions;
* the 3x3 convolutions of its outgoing edges run as one convolution whose output channels
  are the edges' stacked (the same for the 1x1 ones), and one BatchNorm call normalises
  the stack (BatchNorm is per channel, so this is the same as one per edge; running
  statistics are written back to each edge's own BatchNorm);
* each edge's mixing weight is folded into that BatchNorm's affine scale instead of a
  separate multiplication;
* the 3x3 average pool (padding excluded) runs once, as a depthwise convolution with a
  kernel of ones times 1 / (number of in-image positions).

What the reference does is kept: an op whose mixing weight is exactly zero is not
computed (a one-hot row costs one op, and its parameters get no gradient), ``none`` never
is. Which ops run is decided once per forward by an :func:`op_plan` (plain tuples, so a
compiled forward specialises on it instead of reading tensor values). Results equal the
reference cell's to float tolerance (summation order differs).

The same cell also evaluates K candidate mixing matrices at once on a batch stacked K
times (:mod:`spaces.nb201.candidates`): there each candidate's terms are scaled per sample
and train-mode BatchNorm takes each candidate's own batch statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spaces.batch_norm import grouped_batch_norm
from spaces.nb201.cells import SearchCell, sum_nodes
from spaces.nb201.codec import EDGES, NUM_NODES
from spaces.nb201.ops import OP_NAMES

SKIP, CONV_1X1, CONV_3X3, POOL = (
    OP_NAMES.index(name)
    for name in ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
)
# Outgoing edges of every source node: (edge index, target node).
OUTGOING = tuple(
    tuple((e, target) for e, (source, target) in enumerate(EDGES) if source == node)
    for node in range(NUM_NODES - 1)
)

# Per edge and op: not computed, computed and scaled by its weight, or computed unscaled
# (weight exactly 1 with no gradient wanted).
SKIPPED, SCALED, UNSCALED = 0, 1, 2
Plan = tuple[tuple[int, ...], ...]


def op_plan(weights: torch.Tensor) -> Plan:
    """What runs for a mixing matrix (edges x ops), or for a stack of them (any leading dims).

    With a stack, an op runs when any matrix gives it a nonzero weight. ``none`` never runs.
    """
    flat = weights.detach().reshape(-1, *weights.shape[-2:])
    nonzero = (flat != 0).any(0).tolist()
    unscaled = (
        (flat == 1).all(0).tolist()
        if flat.shape[0] == 1 and not weights.requires_grad
        else [[False] * len(row) for row in nonzero]
    )
    return tuple(
        tuple(
            SKIPPED if k == 0 or not nonzero[e][k] else UNSCALED if unscaled[e][k] else SCALED
            for k in range(len(OP_NAMES))
        )
        for e in range(len(nonzero))
    )


def stacked_batch_norm(x: torch.Tensor, norms: list[nn.BatchNorm2d], scale: torch.Tensor):
    """``scale * BN_k(x_k)`` for the channel blocks ``x_k`` of ``x``, with one BN call.

    Follows ``nn.BatchNorm2d.forward`` for every module (training flag, running
    statistics, ``num_batches_tracked``, momentum); ``scale`` has one entry per channel.
    """
    first = norms[0]
    tracking = first.track_running_stats
    update = first.training and tracking
    factor = 0.0 if first.momentum is None else first.momentum
    if update:
        for norm in norms:
            norm.num_batches_tracked.add_(1)
        if first.momentum is None:
            factor = 1.0 / float(first.num_batches_tracked)
    running_mean = running_var = None
    if tracking:
        running_mean = torch.cat([norm.running_mean for norm in norms])
        running_var = torch.cat([norm.running_var for norm in norms])
    weight, bias = _scaled_affine(norms, scale)
    use_batch_stats = first.training or not tracking
    out = F.batch_norm(
        x, running_mean, running_var, weight, bias, use_batch_stats, factor, first.eps
    )
    if update:
        with torch.no_grad():
            width = first.num_features
            for index, norm in enumerate(norms):
                norm.running_mean.copy_(running_mean[index * width : (index + 1) * width])
                norm.running_var.copy_(running_var[index * width : (index + 1) * width])
    return out


def _scaled_affine(norms: list[nn.BatchNorm2d], scale: torch.Tensor):
    """``scale`` times the stacked affine parameters of ``norms`` (``scale``, None without)."""
    if not norms[0].affine:
        return scale, None
    return (
        scale * torch.cat([norm.weight for norm in norms]),
        scale * torch.cat([norm.bias for norm in norms]),
    )


class _SharedMixing:
    """One mixing matrix (edges x ops) for the whole batch."""

    def __init__(self, weights: torch.Tensor) -> None:
        self.weights = weights

    def scale(self, term: torch.Tensor, edge: int, op: int) -> torch.Tensor:
        return term * self.weights[edge, op]

    def conv_scale(self, edges: list[int], op: int, channels: int) -> torch.Tensor:
        index = torch.tensor(edges, device=self.weights.device)
        return self.weights[index, op].repeat_interleave(channels)

    def normalise(self, out, norms, edges, op, channels) -> torch.Tensor:
        return stacked_batch_norm(out, norms, self.conv_scale(edges, op, channels))


class _CandidateMixing(_SharedMixing):
    """K mixing matrices (K x edges x ops), one per block of a batch stacked K times."""

    def scale(self, term: torch.Tensor, edge: int, op: int) -> torch.Tensor:
        groups = self.weights.shape[0]
        per_group = self.weights[:, edge, op].reshape(groups, 1, 1, 1, 1)
        return (term.unflatten(0, (groups, -1)) * per_group).flatten(0, 1)

    def conv_scale(self, edges: list[int], op: int, channels: int) -> torch.Tensor:
        index = torch.tensor(edges, device=self.weights.device)
        return self.weights[:, index, op].repeat_interleave(channels, dim=1)  # K, E*C

    def normalise(self, out, norms, edges, op, channels) -> torch.Tensor:
        first = norms[0]
        weight, bias = _scaled_affine(norms, self.conv_scale(edges, op, channels))
        batch_stats = first.training or not first.track_running_stats
        running = None
        if not batch_stats:
            running = (
                torch.cat([norm.running_mean for norm in norms]),
                torch.cat([norm.running_var for norm in norms]),
            )
        groups = self.weights.shape[0]
        return grouped_batch_norm(out, groups, weight, bias, running, batch_stats, first.eps)


def _compiling() -> bool:
    check = getattr(torch.compiler, "is_compiling", None)
    if check is None:  # torch 2.2 has only the Dynamo spelling
        from torch._dynamo import is_compiling as check
    return check()


class FusedSearchCell(SearchCell):
    """:class:`SearchCell` with its work grouped by source node (see the module docstring)."""

    def __init__(self, channels, bn, candidates=None) -> None:
        super().__init__(channels, bn, candidates)
        self.channels = channels
        self._pool_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _pool_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A ones kernel for the depthwise sum and 1 / (in-image positions) per pixel."""
        if _compiling():
            # Made in the graph (the compiler folds them into constants); the cache's
            # inference-mode check would break the graph at every pool.
            return self._make_pool_parts(x)
        # Tensors made in inference mode cannot be saved for a later backward: keyed apart.
        key = (x.shape[-2], x.shape[-1], x.device, x.dtype, torch.is_inference_mode_enabled())
        if key not in self._pool_cache:
            self._pool_cache[key] = self._make_pool_parts(x)
        return self._pool_cache[key]

    def _make_pool_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ones = torch.ones(self.channels, 1, 3, 3, device=x.device, dtype=x.dtype)
        inside = torch.ones(1, 1, *x.shape[-2:], device=x.device, dtype=x.dtype)
        counts = F.conv2d(inside, ones[:1], padding=1)
        return ones, counts.reciprocal()

    def _average_pool(self, x: torch.Tensor) -> torch.Tensor:
        ones, inverse_counts = self._pool_parts(x)
        return F.conv2d(x, ones, padding=1, groups=self.channels) * inverse_counts

    def _convolutions(self, relu, op, edges, mixing) -> torch.Tensor:
        """One op (1x1 or 3x3 conv) for every edge in ``edges``: one conv, one BatchNorm.

        The result stacks the edges' outputs along channels, in the order of ``edges``."""
        blocks = [self.edges[e].ops[op].op for e in edges]
        conv = blocks[0][1]
        weight = torch.cat([block[1].weight for block in blocks])
        bias = None if conv.bias is None else torch.cat([block[1].bias for block in blocks])
        out = F.conv2d(relu, weight, bias, padding=conv.padding)
        return mixing.normalise(out, [block[2] for block in blocks], edges, op, self.channels)

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor, plan: Plan | None = None
    ) -> torch.Tensor:
        return self._mix(x, _SharedMixing(weights), op_plan(weights) if plan is None else plan)

    def forward_candidates(self, x: torch.Tensor, weights: torch.Tensor, plan: Plan):
        """``x`` is K stacked batches, ``weights`` K matrices (K x edges x ops)."""
        return self._mix(x, _CandidateMixing(weights), plan)

    def _mix(self, x: torch.Tensor, mixing: _SharedMixing, plan: Plan) -> torch.Tensor:
        pending: list[list[torch.Tensor]] = [[] for _ in range(NUM_NODES)]
        nodes = [x]
        for source, outgoing in enumerate(OUTGOING):
            if source > 0:
                nodes.append(sum_nodes(pending[source], x))
            node = nodes[source]
            for e, target in outgoing:
                if plan[e][SKIP]:
                    unscaled = plan[e][SKIP] == UNSCALED
                    pending[target].append(node if unscaled else mixing.scale(node, e, SKIP))
            pooled_edges = [(e, t) for e, t in outgoing if plan[e][POOL]]
            if pooled_edges:
                pooled = self._average_pool(node)
                for e, target in pooled_edges:
                    unscaled = plan[e][POOL] == UNSCALED
                    pending[target].append(pooled if unscaled else mixing.scale(pooled, e, POOL))
            stacks = []
            relu = None
            for op in (CONV_3X3, CONV_1X1):
                conv_edges = [(e, t) for e, t in outgoing if plan[e][op]]
                if conv_edges:
                    relu = F.relu(node) if relu is None else relu
                    out = self._convolutions(relu, op, [e for e, _ in conv_edges], mixing)
                    stacks.append((conv_edges, out))
            if len(stacks) == 2 and stacks[0][0] == stacks[1][0]:
                # Both convolutions on the same edges: add the stacks, then split once.
                stacks = [(stacks[0][0], stacks[0][1] + stacks[1][1])]
            for conv_edges, out in stacks:
                blocks = out.split(self.channels, dim=1)
                for (_, target), block in zip(conv_edges, blocks, strict=True):
                    pending[target].append(block)
        return sum_nodes(pending[NUM_NODES - 1], x)
