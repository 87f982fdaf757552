"""The fused DARTS search cell against the reference (op-by-op) cell (issue 28).

The reference cell stays the definition: the fused cell must give the same logits, the
same gradient for every weight and for the alphas (none where the reference computes
nothing), and leave the same BatchNorm state, in every DARTS space, for normal and
reduction cells, in training and evaluation mode, under softmax rows, one-hot rows and
rows with zeros; and the two load each other's checkpoints.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from batch_norm_state import randomise_batch_norm

from harness.config import SpaceSettings
from spaces import make_space
from spaces.darts.fused_convs import depthwise_as_matrices, depthwise_conv
from spaces.darts.genotype import CELL_EDGES
from spaces.darts.search import DartsSupernet, FusedSearchCell, SearchCell

SPACES = ["darts", "darts-s1", "darts-s2", "darts-s3", "darts-s4"]
# The full matrix runs every space with -m slow; by default the full space and S4 (the
# one with noise), so the default suite stays short.
SPACES_BY_DEFAULT = [
    name if name in ("darts", "darts-s4") else pytest.param(name, marks=pytest.mark.slow)
    for name in SPACES
]
CHANNELS, LAYERS = 4, 5  # reductions at cells 1 and 3
TIGHT = {"rtol": 1e-10, "atol": 1e-10}  # float64
FLOAT32 = {"rtol": 1e-4, "atol": 1e-5}


def _pair(name: str, dtype=torch.float64, seed: int = 0):
    """A reference supernet and a fused one holding the same (non-trivial) state."""
    space = make_space(SpaceSettings(name=name))
    torch.manual_seed(seed)
    reference = DartsSupernet(space, CHANNELS, LAYERS, 10).to(dtype)
    with torch.no_grad():
        reference.alphas.normal_()
    randomise_batch_norm(reference)
    fused = DartsSupernet(space, CHANNELS, LAYERS, 10, cell_impl="fused").to(dtype)
    fused.load_state_dict(reference.state_dict())
    return reference, fused


def _softmax(net, generator):
    return net.mixing_weights()


def _one_hot_rows(net, generator):
    """Softmax rows, with one candidate (other than none) chosen alone on half the edges of
    each cell, an edge from an input node of the reduction cell (a factorized reduce
    when skip_connect is chosen) among them."""
    weights = net.mixing_weights()
    space, mask = net.space, torch.zeros_like(weights, dtype=torch.bool)
    chosen = torch.zeros_like(weights)
    for e in range(space.num_edges):
        if e % 2 == 0 or e == len(CELL_EDGES):
            ops = [k for k in space.candidates[e] if k != space.none]
            mask[e] = True
            chosen[e, ops[int(generator.integers(len(ops)))]] = 1.0
    return torch.where(mask, chosen, weights)


def _rows_with_zeros(net, generator):
    """Softmax rows with random candidates zeroed; every edge into normal node 3 and
    reduction node 4 entirely zero (those nodes are zeros)."""
    weights = net.mixing_weights()
    keep = torch.from_numpy(generator.random(weights.shape) < 0.6)
    for e, (_, node) in enumerate(CELL_EDGES):
        if node == 3:
            keep[e] = False
        if node == 4:
            keep[len(CELL_EDGES) + e] = False
    return weights * keep.to(weights.dtype)


def _discrete(net, generator):
    """A cell's one-hot matrix without a gradient (the ops run unscaled)."""
    space = net.space
    weights = torch.zeros(space.num_edges, space.num_ops, dtype=net.alphas.dtype)
    for e, k in enumerate(space.random_cell(generator)):
        if k != space.none:
            weights[e, k] = 1.0
    return weights


def _per_cell(net, generator):
    alphas = net.alphas.masked_fill(~net.active_ops, float("-inf"))
    scales = torch.linspace(0.5, 1.5, net.num_search_cells, dtype=alphas.dtype)[:, None, None]
    return torch.softmax(alphas[None] * scales, dim=-1)  # one matrix per cell


WEIGHTS = {
    "softmax": _softmax,
    "one-hot rows": _one_hot_rows,
    "rows with zeros": _rows_with_zeros,
    "discrete": _discrete,
}


def _pass(net, x, y, weights, noise_seed=7):
    net.zero_grad(set_to_none=True)
    torch.manual_seed(noise_seed)  # S4's noise: both cells draw it in the same order
    logits = net(x, weights)
    F.cross_entropy(logits, y).backward()
    return logits.detach(), {name: p.grad for name, p in net.named_parameters()}


def _assert_same_pass(reference, fused, x, y, make_weights, seed, tol):
    """Same logits, the same gradient for every parameter, the same BatchNorm state."""
    expected, expected_grads = _pass(reference, x, y, make_weights(reference, _rng(seed)))
    logits, grads = _pass(fused, x, y, make_weights(fused, _rng(seed)))
    torch.testing.assert_close(logits, expected, **tol)
    for name, grad in expected_grads.items():
        # Ops the reference skipped (zero weight) get no gradient in either.
        assert (grads[name] is None) == (grad is None), name
        if grad is not None:
            torch.testing.assert_close(grads[name], grad, **tol, msg=name)
    _assert_same_state(reference, fused, tol)


def _assert_same_state(reference, fused, tol):
    ref_state, fused_state = reference.state_dict(), fused.state_dict()
    assert ref_state.keys() == fused_state.keys()
    for name, value in ref_state.items():
        torch.testing.assert_close(fused_state[name], value, **tol, msg=name)


def _rng(seed):
    return np.random.default_rng(seed)


def _data(dtype=torch.float64, batch=4, size=8, seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=generator, dtype=dtype)
    return x, torch.randint(0, 10, (batch,), generator=generator)


@pytest.mark.parametrize("name", SPACES_BY_DEFAULT)
@pytest.mark.parametrize("weights", list(WEIGHTS))
def test_fused_cell_matches_reference_logits_gradients_and_state(name, weights):
    reference, fused = _pair(name)
    assert isinstance(fused.cells[0], FusedSearchCell)
    assert [cell.reduction for cell in fused.cells] == [False, True, False, True, False]
    x, y = _data()
    for train_mode in (True, False):  # batch statistics (and their update), then running
        reference.train(train_mode)
        fused.train(train_mode)
        _assert_same_pass(reference, fused, x, y, WEIGHTS[weights], seed=3, tol=TIGHT)


def test_fused_cell_matches_reference_with_one_matrix_per_cell():
    reference, fused = _pair("darts-s1")
    x, y = _data()
    _assert_same_pass(reference, fused, x, y, _per_cell, seed=0, tol=TIGHT)


@pytest.mark.parametrize("name", ["darts", "darts-s4"])
def test_fused_cell_matches_reference_in_float32(name):
    reference, fused = _pair(name, dtype=torch.float32)
    x, y = _data(dtype=torch.float32)
    for train_mode in (True, False):
        reference.train(train_mode)
        fused.train(train_mode)
        _assert_same_pass(reference, fused, x, y, _softmax, seed=0, tol=FLOAT32)


def test_momentum_free_batch_norms_that_counted_different_batches():
    # momentum=None averages over num_batches_tracked, which differs between edges once a
    # one-hot pass ran some ops and not others: those are normalised edge by edge.
    reference, fused = _pair("darts")
    for net in (reference, fused):
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None
    x, y = _data()
    for make_weights in (_one_hot_rows, _rows_with_zeros, _softmax):
        _assert_same_pass(reference, fused, x, y, make_weights, seed=5, tol=TIGHT)


def _replace_cell_batch_norms(net, affine: bool, track_running_stats: bool) -> None:
    for cell in net.cells:
        for module in list(cell.modules()):
            for child_name, child in module.named_children():
                if isinstance(child, torch.nn.BatchNorm2d):
                    module._modules[child_name] = torch.nn.BatchNorm2d(
                        child.num_features, affine=affine, track_running_stats=track_running_stats
                    ).double()


@pytest.mark.parametrize("affine, tracking", [(True, True), (False, False)])
def test_other_batch_norm_settings_in_the_cells(affine, tracking):
    # The search cells' BatchNorms are affine-free with running statistics; the fused cell
    # follows nn.BatchNorm2d for the other settings too.
    reference, fused = _pair("darts")
    for net in (reference, fused):
        _replace_cell_batch_norms(net, affine, tracking)
    randomise_batch_norm(reference)
    fused.load_state_dict(reference.state_dict())
    x, y = _data()
    for train_mode in (True, False):
        reference.train(train_mode)
        fused.train(train_mode)
        _assert_same_pass(reference, fused, x, y, _rows_with_zeros, seed=2, tol=TIGHT)


@pytest.mark.parametrize("name", SPACES)
def test_state_dicts_are_interchangeable(name):
    reference, fused = _pair(name)
    x, y = _data()
    _pass(fused, x, y, fused.mixing_weights())  # moves the fused one's running statistics
    with torch.no_grad():
        for p in fused.parameters():
            p.add_(0.01 * torch.randn_like(p))
    assert reference.state_dict().keys() == fused.state_dict().keys()
    reference.load_state_dict(fused.state_dict())  # strict: the same names and shapes
    _assert_same_state(reference, fused, TIGHT)
    for net in (reference, fused):
        net.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        expected = reference(x)
        torch.manual_seed(0)
        torch.testing.assert_close(fused(x), expected, **TIGHT)
    back = DartsSupernet(reference.space, CHANNELS, LAYERS, 10, cell_impl="fused").double()
    back.load_state_dict(reference.state_dict())
    _assert_same_state(reference, back, TIGHT)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", ["darts", "darts-s3"])
def test_fused_supernet_under_one_hot_weights_equals_the_discrete_network(name, seed):
    # tests/test_darts_space.py's one-hot parity, with the fused cell
    space = make_space(SpaceSettings(name=name))
    torch.manual_seed(seed)
    supernet = DartsSupernet(space, CHANNELS, LAYERS, 10, cell_impl="fused")
    choices = space.random_cell(np.random.default_rng(seed))
    discrete = space.discrete_from_supernet(supernet, choices)
    weights = torch.zeros(space.num_edges, space.num_ops)
    for e, k in enumerate(choices):
        if k != space.none:
            weights[e, k] = 1.0
    x = torch.randn(4, 3, 16, 16)
    for train in (True, False):  # batch statistics, then running statistics
        supernet.train(train), discrete.train(train)
        assert torch.allclose(supernet(x, weights), discrete(x), atol=1e-6)


def test_one_hot_rows_run_only_their_op_in_the_fused_cell():
    # In train mode a BatchNorm counts the batches it normalised: only computed ops count.
    _, fused = _pair("darts")
    space = fused.space
    sep, skip = space.op_names.index("sep_conv_3x3"), space.op_names.index("skip_connect")
    weights = fused.mixing_weights().detach()
    weights[0] = 0.0
    weights[0, sep] = 1.0  # normal edge 0: sep_conv_3x3 alone
    weights[len(CELL_EDGES)] = 0.0
    weights[len(CELL_EDGES), skip] = 1.0  # reduction edge 0: the factorized reduce alone
    fused(torch.randn(2, 3, 8, 8, dtype=torch.float64), weights)
    normal, reduction = fused.cells[0], fused.cells[1]
    counted = {
        (cell, k): int(buffer)
        for cell in (normal, reduction)
        for k, op in enumerate(cell.edges[0].ops)
        for name, buffer in op.named_buffers()
        if name.endswith("num_batches_tracked")
    }
    assert {key for key, count in counted.items() if count} == {(normal, sep), (reduction, skip)}
    edge_1 = [int(b) for n, b in normal.edges[1].named_buffers() if "num_batches" in n]
    assert set(edge_1) == {1}  # every op of a softmax row ran


def test_an_op_outside_the_candidates_refuses_a_weight_in_both_cells():
    reference, fused = _pair("darts-s2")
    weights = torch.full((28, reference.space.num_ops), 0.1, dtype=torch.float64)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    for net in (reference, fused):
        with pytest.raises(RuntimeError, match="is not a candidate op of this edge"):
            net(x, weights)
    # ... but `none` is never computed, a candidate or not (S2's is not)
    weights = reference.mixing_weights().detach()
    weights[:, reference.space.none] = 0.5
    with torch.no_grad():
        torch.testing.assert_close(fused(x, weights), reference(x, weights), **TIGHT)


def test_cell_implementations_are_the_reference_by_default_and_checked():
    space = make_space(SpaceSettings(name="darts"))
    assert type(DartsSupernet(space, CHANNELS, LAYERS, 10).cells[0]) is SearchCell
    with pytest.raises(ValueError, match="unknown cell implementation"):
        DartsSupernet(space, CHANNELS, LAYERS, 10, cell_impl="grouped")


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel", [3, 5])
def test_dilated_convolutions_run_as_undilated_ones_on_parity_phases(stride, kernel):
    from spaces.darts.fused_convs import dilated_as_phases

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, 8, 10, generator=generator, dtype=torch.float64)
    weight = torch.randn(6, 1, kernel, kernel, generator=generator, dtype=torch.float64)
    x.requires_grad_(True)
    weight.requires_grad_(True)
    padding = kernel - 1  # "same" padding at dilation 2
    expected = F.conv2d(x, weight, None, stride, padding, 2, 6)
    out = dilated_as_phases(x, weight, None, stride, padding // 2, 6)
    torch.testing.assert_close(out, expected, **TIGHT)
    grads = torch.autograd.grad((out * out).sum(), (x, weight))
    expected_grads = torch.autograd.grad((expected * expected).sum(), (x, weight))
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, **TIGHT)



@pytest.mark.parametrize("size", [(1, 1), (3, 5), (4, 4), (8, 8), (6, 10), (16, 16)])
@pytest.mark.parametrize("kernel, stride, dilation", [
    (3, 1, 1), (5, 1, 1), (3, 1, 2), (5, 1, 2), (3, 2, 1), (5, 2, 2),
])  # fmt: skip
def test_depthwise_convolutions_equal_conv2d_on_every_path(size, kernel, stride, dilation):
    # depthwise_conv picks per-channel matrices (small maps, stride 1), parity phases
    # (dilated, stride 2) or channels-last convolutions: all the same sums as F.conv2d
    generator = torch.Generator().manual_seed(sum(size) + kernel + stride)
    x = torch.randn(3, 6, *size, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 1, kernel, kernel, generator=generator, dtype=torch.float64,
                         requires_grad=True)  # fmt: skip
    bias = torch.randn(6, generator=generator, dtype=torch.float64, requires_grad=True)
    padding = dilation * (kernel - 1) // 2
    expected = F.conv2d(x, weight, bias, stride, padding, dilation, 6)
    out = depthwise_conv(x, weight, bias, (stride,) * 2, (padding,) * 2, (dilation,) * 2, 6)
    torch.testing.assert_close(out, expected, **TIGHT)
    upstream = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
    grads = torch.autograd.grad(out, (x, weight, bias), upstream)
    expected_grads = torch.autograd.grad(expected, (x, weight, bias), upstream)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, **TIGHT)


def test_small_maps_run_depthwise_convolutions_as_matrices():
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    weight = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    out = depthwise_as_matrices(x, weight, None, padding=4, dilation=2)
    torch.testing.assert_close(out, F.conv2d(x, weight, None, 1, 4, 2, 4), **TIGHT)
    with torch.inference_mode():  # the tap index made here serves a pass with autograd
        depthwise_as_matrices(x, weight, None, padding=2, dilation=1)
    weight.requires_grad_(True)
    depthwise_as_matrices(x, weight, None, padding=2, dilation=1).sum().backward()
    assert weight.grad is not None


@pytest.mark.parametrize("weights", ["softmax", "rows with zeros"])
def test_fused_supernet_in_channels_last_memory_equals_the_reference(weights):
    # Not a setting (it does not pay: docs/darts-space.md), but an earlier fused cell gave
    # wrong gradients so; this one is exact, with channels-last gradients reaching the cells.
    reference, fused = _pair("darts")
    fused = fused.to(memory_format=torch.channels_last)
    x, y = _data()
    x_last = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    x = x.clone().requires_grad_()
    expected, expected_grads = _pass(reference, x, y, WEIGHTS[weights](reference, _rng(3)))
    logits, grads = _pass(fused, x_last, y, WEIGHTS[weights](fused, _rng(3)))
    torch.testing.assert_close(logits, expected, **TIGHT)
    torch.testing.assert_close(x_last.grad, x.grad, **TIGHT)
    for name, grad in expected_grads.items():
        if grad is not None:
            torch.testing.assert_close(grads[name], grad, **TIGHT, msg=name)
    _assert_same_state(reference, fused, TIGHT)
