"""A faster DARTS search cell: the work of a cell grouped by source node (issue 28).

:func:`fused_cell_forward` computes a :class:`~spaces.darts.search.SearchCell` from that
cell's own modules (``preprocess0``, ``preprocess1``, ``edges[e].ops[k]``): the fused cell
(:class:`~spaces.darts.search.FusedSearchCell`) holds exactly the reference cell's
parameters and buffers under the same names, so checkpoints, ``discrete_from_supernet``
and the reference cell stay interchangeable; only ``forward`` differs. Node 0 and node 1
feed four edges each, node 2 three, node 3 two, node 4 one; per source node and op:

* ReLU runs once, for all the separable and dilated convolutions and factorized reduces
  of the node's outgoing edges;
* an op with parameters runs once for all of the node's edges that use it: their weights
  are concatenated at forward time into one grouped layer per layer of the op (depthwise
  convolutions as ``edges x channels`` groups on the ReLU output repeated once per edge;
  1x1 convolutions as ``edges`` groups; the factorized reduce's two 1x1 convolutions with
  the edges' output channels stacked), and one BatchNorm call normalises the stack
  (BatchNorm is per channel, so this is one BatchNorm per edge; running statistics and
  ``num_batches_tracked`` are written back to each edge's own);
* 1x1 convolutions (pointwise layers, factorized reduces, the cell's preprocessing) run as
  matrix products: the same sums, with a backward several times faster than a
  convolution's on CPU;
* depthwise convolutions run in channels-last memory (input copied in, output copied
  back, its gradient handed back in channels-last), and strided dilated ones (reduction
  cells) undilated on the input's even row/column phase: the same sums, with a backward
  several times faster on CPU (``benchmarks/depthwise_backward.py``);
* each edge's mixing weight is folded into the scale of the op's last BatchNorm instead
  of a separate multiplication;
* a pool runs once (in channels-last memory, like the depthwise convolutions) and, in
  training mode, so does its (affine-free) BatchNorm, whose
  output is then the same for every edge (each edge's running statistics are updated
  from the batch statistics); in evaluation mode each edge's BatchNorm is an affine map
  of the shared pool, with its own running statistics;
* the outputs of all ops that run on the same edges add up in one stack (batch x edges x
  channels x H x W) before it is split per edge: one addition per op, not per op and edge
  (skip_connect's identity and the pools' terms are added by broadcasting);
* ``noise`` (S4) is drawn in the reference's order (edge by edge, op by op) before
  anything else, so that with the same seed both cells draw the same noise;
* for selection scoring, ``weights`` may hold K matrices (K x 14 x ops) for a batch made
  of K stacked copies of the same images (:mod:`spaces.darts.candidates`): every
  BatchNorm then normalises each copy with its own statistics
  (:func:`~spaces.batch_norm.grouped_batch_norm`, running statistics read in eval mode
  and never written), each copy's ops are scaled by its own matrix, and an op runs when
  any of the K matrices weighs it (times 0 in the others). Noise ops are not supported
  there (their draws would not follow the one-at-a-time order).

What the reference does is kept: an op whose mixing weight is exactly zero is not
computed (a one-hot row costs one op, and the op's parameters get no gradient), ``none``
never is, an op outside an edge's candidates raises if it is given a weight. A weight of
exactly 1 without a gradient is not multiplied. Results equal the reference cell's to
float tolerance (the order of summation differs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spaces.base import NotACandidate
from spaces.batch_norm import grouped_batch_norm
from spaces.darts.fused_convs import is_pointwise, made_once, pointwise, pool, stacked_conv
from spaces.darts.fused_norms import (
    alike,
    require_alike_settings,
    stacked_norm,
    update_factor,
    update_running_statistics,
)
from spaces.darts.genotype import CELL_EDGES, CONCAT, INPUTS
from spaces.darts.ops import FactorizedReduce, Identity, Noise, Zero

# Outgoing edges of every source node: (edge index, target node).
OUTGOING = tuple(
    tuple((e, target) for e, (source, target) in enumerate(CELL_EDGES) if source == node)
    for node in range(CONCAT[-1])
)


def fused_cell_forward(cell: nn.Module, s0: torch.Tensor, s1: torch.Tensor,
                       weights: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """The output of search cell ``cell`` for mixing rows ``weights``: 14 x ops, or K x 14 x
    ops for inputs made of K stacked copies of one batch (candidate scoring)."""
    mix = _Mixing(weights, s0.shape[0])
    states = [_preprocess(cell.preprocess0, s0, mix), _preprocess(cell.preprocess1, s1, mix)]
    step = 2 if cell.reduction else 1
    output_like = states[0][:, :, ::step, ::step]
    noise = _draw_noise(cell, states, output_like, mix)
    pending: dict[int, list[torch.Tensor]] = {node: [] for node in CONCAT}
    for source, outgoing in enumerate(OUTGOING):
        if source >= INPUTS:
            states.append(_sum(pending.pop(source), output_like))
        _spread(cell, states[source], outgoing, mix, noise, pending)
    states.append(_sum(pending.pop(CONCAT[-1]), output_like))
    return torch.cat([states[i] for i in CONCAT], dim=1)


class _Mixing:
    """The mixing rows of one pass: one matrix (14 x ops) for the whole batch, or K
    matrices (K x 14 x ops) for a batch of K stacked copies (``groups`` = K)."""

    def __init__(self, weights: torch.Tensor, batch: int) -> None:
        self.weights = weights
        self.groups = 1 if weights.dim() == 2 else weights.shape[0]
        if batch % self.groups:
            raise ValueError(f"a batch of {batch} is not {self.groups} stacked copies")
        self.copy_size = batch // self.groups
        if self.groups == 1:
            self.values = weights.detach().tolist()
            # weights of exactly 1 without a gradient need no multiplication
            self.unscaled = not weights.requires_grad
        else:  # 1.0 where any matrix weighs the op: it runs (times 0 for the others)
            self.values = (weights != 0).any(0).to(weights.dtype).tolist()
            self.unscaled = False

    def column(self, edges: tuple[int, ...], k: int) -> torch.Tensor | None:
        """The edges' weights for op ``k``: (edges,), or (K, edges); None when they are
        all exactly 1 and need no multiplication."""
        if self.unscaled and all(self.values[e][k] == 1.0 for e in edges):
            return None
        if self.groups == 1:
            return _column(self.weights, edges, k)
        return self.weights[:, :, k].index_select(1, _index(edges, self.weights.device))

    def per_channel(self, column: torch.Tensor | None, channels: int) -> torch.Tensor | None:
        """Each edge's weight for each of its output channels: (edges x channels,), or
        (K, edges x channels)."""
        if column is None or self.groups == 1:
            return _per_channel(column, channels)
        return column.repeat_interleave(channels, dim=1)

    def per_edge(self, column: torch.Tensor | None) -> torch.Tensor | None:
        """``column`` shaped to scale a stack (batch x edges x channels x H x W)."""
        if column is None:
            return None
        if self.groups == 1:
            return column.reshape(1, -1, 1, 1, 1)
        return column.repeat_interleave(self.copy_size, dim=0)[:, :, None, None, None]


def _preprocess(module: nn.Module, s: torch.Tensor, mix: _Mixing) -> torch.Tensor:
    """``module(s)`` for a cell's ReLU-conv-BN or factorized reduce, its 1x1 convolutions
    as matrix products."""
    if isinstance(module, FactorizedReduce):
        return _factorized_reduces(F.relu(s), [module], None, mix.groups)
    layers = list(module.children()) if isinstance(module, nn.Sequential) else []
    if (len(layers) == 3 and isinstance(layers[0], nn.ReLU) and isinstance(layers[1], nn.Conv2d)
            and is_pointwise(layers[1]) and isinstance(layers[2], nn.BatchNorm2d)):  # fmt: skip
        conv = layers[1]
        h = pointwise(F.relu(s), conv.weight, conv.bias, conv.stride, 1)
        return layers[2](h) if mix.groups == 1 else stacked_norm(h, [layers[2]], None, mix.groups)
    if mix.groups != 1:
        raise TypeError(f"candidate scoring cannot run a {type(module).__name__} preprocessing")
    return module(s)


def _sum(terms: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    if not terms:
        return torch.zeros_like(like)
    if len(terms) == 1:
        return terms[0]
    total = terms[0] + terms[1]  # a new tensor: the rest is added in place
    for term in terms[2:]:
        total += term
    return total


def _draw_noise(cell, states, output_like, mix: _Mixing) -> dict[tuple[int, int], torch.Tensor]:
    """S4's noise for every (edge, op) that runs, drawn in the reference's order."""
    noise = {}
    for e, (source, _) in enumerate(CELL_EDGES):
        for k, op in enumerate(cell.edges[e].ops):
            if isinstance(op, Noise) and mix.values[e][k] != 0.0:
                if mix.groups != 1:
                    raise TypeError("candidate scoring cannot draw noise ops: score one at a time")
                like = states[source] if source < INPUTS else output_like
                noise[e, k] = torch.randn_like(like[:, :, :: op.stride, :: op.stride])
    return noise


def _spread(cell, x, outgoing, mix: _Mixing, noise, pending) -> None:
    """Every op of every edge leaving node ``x``, added to its target's ``pending`` terms.

    Ops that run on the same edges add up in one stack (batch x edges x channels x H x W)
    before it is split per edge: one addition per op instead of one per op and edge."""
    values = mix.values
    target_of = dict(outgoing)
    shared: dict = {}  # the ReLU of x, and its copies stacked once per edge
    stacks: dict[tuple[int, ...], _Stack] = {}
    none = cell.edges[0].none  # the column of `none`, a candidate or not (-1: absent)
    for k in range(len(values[0])):
        active = [e for e, _ in outgoing if values[e][k] != 0.0]
        ops = [cell.edges[e].ops[k] for e in active]
        if not ops or k == none or isinstance(ops[0], Zero):
            continue  # `none` adds zeros whatever its weight
        for op in ops:
            if isinstance(op, NotACandidate):
                op(x)  # raises: a weight on an op that is not a candidate
        edges = tuple(active)
        stack = stacks.setdefault(edges, _Stack())
        column = mix.column(edges, k)
        first = ops[0]
        if isinstance(first, Noise):
            for i, e in enumerate(edges):
                pending[target_of[e]].append(_scaled(noise[e, k], _entry(column, i)))
        elif isinstance(first, Identity):
            stack.add_product(x, mix.per_edge(column), len(edges))
        elif _is_pool(first):
            apart = _shared_norm(stack, pool(first[0], x), [op[1] for op in ops], column, mix)
            for e, term in zip(edges, apart or (), strict=bool(apart)):
                pending[target_of[e]].append(term)
        elif isinstance(first, FactorizedReduce):
            scale = mix.per_channel(column, first.bn.num_features)
            stack.add(_factorized_reduces(_relu(x, shared), ops, scale, mix.groups), len(edges))
        elif isinstance(first, nn.Sequential) and isinstance(first[0], nn.ReLU):
            scale = mix.per_channel(column, _width(first))
            stack.add(_relu_stacks(x, ops, scale, shared, mix.groups), len(edges))
        else:
            raise TypeError(f"the fused DARTS cell cannot run {type(first).__name__}")
    for edges, stack in stacks.items():
        if stack.total is not None:
            for e, term in zip(edges, stack.total.unbind(1), strict=True):
                pending[target_of[e]].append(term)


class _Stack:
    """The sum of some ops' outputs on the same edges: batch x edges x channels x H x W."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.owned = False  # whether ``total`` may be added to in place

    def _accumulate(self, term: torch.Tensor, owned: bool) -> None:
        if self.total is None:
            self.total, self.owned = term, owned
        elif self.owned:
            self.total += term
        else:
            self.total, self.owned = self.total + term, True

    def add(self, stacked: torch.Tensor, edges: int) -> None:
        """A new tensor of the edges' outputs stacked along channels."""
        self._accumulate(stacked.unflatten(1, (edges, -1)), owned=True)

    def add_product(self, x: torch.Tensor, scale: torch.Tensor | None, edges: int) -> None:
        """``x`` (batch x channels x H x W, the same for every edge) times each edge's
        ``scale`` (1 x edges x 1 x 1 x 1; None: 1)."""
        if scale is None:
            self._accumulate(x[:, None].expand(-1, edges, -1, -1, -1), owned=False)
        elif self.total is not None and self.owned:
            self.total.addcmul_(x[:, None], scale)
        else:
            self._accumulate(x[:, None] * scale, owned=True)

    def add_affine(self, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> None:
        """``x * scale + shift``, per edge and channel (1 x edges x channels x 1 x 1)."""
        if self.total is not None and self.owned:
            self.total.addcmul_(x[:, None], scale).add_(shift)
        else:
            self._accumulate(torch.addcmul(shift, x[:, None], scale), owned=True)


def _is_pool(op: nn.Module) -> bool:
    """A pool followed by its BatchNorm (the search cell's pooling ops)."""
    return isinstance(op, nn.Sequential) and isinstance(op[0], nn.MaxPool2d | nn.AvgPool2d)


def _scaled(term: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    return term if scale is None else term * scale


def _relu(x: torch.Tensor, shared: dict) -> torch.Tensor:
    if "relu" not in shared:
        shared["relu"] = F.relu(x)
    return shared["relu"]


def _width(op: nn.Sequential) -> int:
    """Output channels of a ReLU -> conv ... -> BatchNorm op."""
    return [layer for layer in op if isinstance(layer, nn.Conv2d)][-1].out_channels


def _index(edges: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``torch.tensor(edges)`` on ``device``, made once."""
    return made_once(("edges", edges, device), lambda: torch.tensor(edges, device=device))


def _column(weights: torch.Tensor, edges: tuple[int, ...], k: int) -> torch.Tensor:
    """``weights[edges, k]`` (edges,)."""
    if len(edges) == 1:
        return weights[edges[0], k : k + 1]
    return weights[:, k].index_select(0, _index(edges, weights.device))


def _entry(column: torch.Tensor | None, i: int) -> torch.Tensor | None:
    return None if column is None else column[i]


def _per_channel(column: torch.Tensor | None, channels: int) -> torch.Tensor | None:
    """Each edge's weight for each of its output channels (edges x channels, flattened)."""
    if column is None:
        return None
    if column.shape[0] == 1:
        return column.expand(channels)
    return column.repeat_interleave(channels)


def _relu_stacks(x, ops: Sequence[nn.Sequential], scale, shared: dict,
                 groups: int) -> torch.Tensor:  # fmt: skip
    """Separable or dilated convolutions (ReLU, conv, ..., BatchNorm; the same op on every
    edge) of every edge in one pass; the edges' outputs stacked along channels."""
    first = ops[0]
    count = len(ops)
    h = None
    for position, layer in enumerate(first):
        layers = [op[position] for op in ops]
        if isinstance(layer, nn.ReLU):
            h = _relu(x, shared) if h is None else F.relu(h)
        elif isinstance(layer, nn.Conv2d):
            if position == 1 and layer.groups > 1 and count > 1:
                # depthwise on the shared ReLU: one copy of it per edge, then groups
                if ("stacked", count) not in shared:
                    shared["stacked", count] = h.repeat(1, count, 1, 1)
                h = shared["stacked", count]
            h = stacked_conv(h, layers, shared_input=False)
        elif isinstance(layer, nn.BatchNorm2d):
            last = position == len(first) - 1
            h = stacked_norm(h, layers, scale if last else None, groups)
        else:
            raise TypeError(f"the fused DARTS cell cannot run {type(layer).__name__}")
    if not isinstance(first[-1], nn.BatchNorm2d) and scale is not None:
        if groups != 1:
            raise TypeError("candidate scoring needs ops that end with a BatchNorm")
        h = h * scale[:, None, None]
    return h


def _factorized_reduces(relu: torch.Tensor, ops: Sequence[FactorizedReduce], scale,
                        groups: int):  # fmt: skip
    """Every edge's factorized reduce (of the same ReLU output) in one pass; each edge's
    two halves next to each other, the edges stacked along channels."""
    even = stacked_conv(relu, [op.conv_1 for op in ops], shared_input=True)
    odd = stacked_conv(relu[:, :, 1:, 1:], [op.conv_2 for op in ops], shared_input=True)
    if len(ops) == 1:
        out = torch.cat([even, odd], dim=1)
    else:
        halves = (even.unflatten(1, (len(ops), -1)), odd.unflatten(1, (len(ops), -1)))
        out = torch.stack(halves, dim=2).flatten(1, 3)  # per edge: its even, its odd half
    return stacked_norm(out, [op.bn for op in ops], scale, groups)


def _shared_norm(stack: _Stack, x: torch.Tensor, norms: Sequence[nn.BatchNorm2d],
                 scale: torch.Tensor | None, mix: _Mixing):  # fmt: skip
    """``scale_e * BN_e(x)`` for every edge e: one input (a pool's output), one BatchNorm
    per edge, added to ``stack`` (``scale``: the edges' weights, or None). With batch
    statistics the normalised tensor is the same for every edge (affine-free): it is
    computed once, and each edge's running statistics are updated; with running statistics
    each edge's BatchNorm is an affine map of ``x``. Returns the per-edge terms instead
    (a list) when the BatchNorms differ in their settings, else None."""
    first = norms[0]
    if mix.groups != 1:
        _shared_grouped_norm(stack, x, norms, scale, mix)
        return None
    if first.affine or not alike(norms):
        return [_scaled(norm(x), _entry(scale, i)) for i, norm in enumerate(norms)]
    edges = len(norms)
    if first.training or not first.track_running_stats:
        factor = update_factor(first)
        single = edges == 1 and factor != 0.0  # its running statistics updated by the call
        mean, var = (first.running_mean, first.running_var) if single else (None, None)
        normed = F.batch_norm(x, mean, var, None, None, True, factor, first.eps)
        if factor != 0.0:
            if single:
                first.num_batches_tracked.add_(1)
            else:
                update_running_statistics(x, norms, factor)
        scale = None if scale is None else scale.reshape(1, -1, 1, 1, 1)
        stack.add_product(normed, scale, edges)
        return None
    mean = torch.stack([norm.running_mean for norm in norms])  # edges x channels
    inverse_std = torch.rsqrt(torch.stack([norm.running_var for norm in norms]) + first.eps)
    if scale is not None:
        inverse_std = inverse_std * scale[:, None]
    stack.add_affine(
        x, inverse_std[None, :, :, None, None], (-mean * inverse_std)[None, :, :, None, None]
    )
    return None


def _shared_grouped_norm(stack: _Stack, x: torch.Tensor, norms: Sequence[nn.BatchNorm2d],
                         scale: torch.Tensor, mix: _Mixing) -> None:  # fmt: skip
    """:func:`_shared_norm` for ``mix.groups`` stacked copies (``scale``: groups x edges):
    each copy normalised with its own statistics, or each edge's running ones; no state
    written."""
    first = norms[0]
    require_alike_settings(norms)
    if first.affine:
        raise TypeError("candidate scoring needs affine-free BatchNorms after the pools")
    if first.training or not first.track_running_stats:
        normed = grouped_batch_norm(x, mix.groups, None, None, None, True, first.eps)
        stack.add_product(normed, mix.per_edge(scale), len(norms))
        return
    mean = torch.stack([norm.running_mean for norm in norms])  # edges x channels
    inverse_std = torch.rsqrt(torch.stack([norm.running_var for norm in norms]) + first.eps)
    inverse_std = inverse_std[None, :, :, None, None] * mix.per_edge(scale)
    stack.add_affine(x, inverse_std, -mean[None, :, :, None, None] * inverse_std)
