"""The fused cell against the reference cell, and candidates evaluated together.

The reference cell (op by op, as the benchmark's code) stays the definition: the fused
cell must give the same logits, the same gradients for every weight and for the alphas,
and leave the same BatchNorm state, for every way the harness calls a supernet.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from batch_norm_state import randomise_batch_norm

from spaces.nb201 import OP_NAMES, BatchNormSettings, NB201Space, NB201Supernet
from spaces.nb201.candidates import candidate_logits
from spaces.nb201.fused import op_plan

BN_SETTINGS = [
    BatchNormSettings(affine=False, track_running_stats=True),  # the presets' search BN
    BatchNormSettings(affine=True, track_running_stats=True),
    BatchNormSettings(affine=False, track_running_stats=False),  # xautodl's search BN
]
TOL = {"rtol": 1e-4, "atol": 1e-5}


def _pair(cell_bn, channels_last=False, cells_per_stage=1, seed=0):
    """A reference supernet and a fused one holding the same (non-trivial) state."""
    torch.manual_seed(seed)
    reference = NB201Supernet(
        space=NB201Space(),
        channels=4, cells_per_stage=cells_per_stage, cell_bn=cell_bn, cell_impl="reference"
    )
    with torch.no_grad():
        reference.alphas.normal_()
    randomise_batch_norm(reference)
    fused = NB201Supernet(
        space=NB201Space(),
        channels=4,
        cells_per_stage=cells_per_stage,
        cell_bn=cell_bn,
        cell_impl="fused",
        channels_last=channels_last,
    )
    fused.load_state_dict(reference.state_dict())
    return reference, fused


def _loss_and_grads(net, x, y, weights_fn):
    net.zero_grad(set_to_none=True)
    weights = weights_fn(net)
    loss = F.cross_entropy(net(x, weights), y)
    loss.backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    return loss.detach(), grads


def _assert_same_state(reference, fused):
    ref_state, fused_state = reference.state_dict(), fused.state_dict()
    assert ref_state.keys() == fused_state.keys()
    for name, value in ref_state.items():
        torch.testing.assert_close(fused_state[name], value, **TOL, msg=name)


def _assert_same_pass(expected_net, net, x, y, weights_fn):
    """Same loss, the same gradient for every parameter and the same BatchNorm state."""
    expected_loss, expected_grads = _loss_and_grads(expected_net, x, y, weights_fn)
    loss, grads = _loss_and_grads(net, x, y, weights_fn)
    torch.testing.assert_close(loss, expected_loss, **TOL)
    for name, grad in expected_grads.items():
        # Ops the reference skipped (zero weight) get no gradient in either.
        assert (grads[name] is None) == (grad is None), name
        if grad is not None:
            torch.testing.assert_close(grads[name], grad, **TOL, msg=name)
    _assert_same_state(expected_net, net)


def _one_hot_row(net):
    weights = net.mixing_weights()
    row = torch.zeros_like(weights[2])
    row[3] = 1.0
    return torch.cat([weights[:2], row[None], weights[3:]])


def _per_cell(net):
    base = net.mixing_weights()
    scales = torch.linspace(0.5, 1.5, net.num_search_cells)[:, None, None]
    return torch.softmax(torch.log(base)[None] * scales, dim=-1)


WEIGHTS = {
    "softmax": lambda net: net.mixing_weights(),
    "detached": lambda net: net.mixing_weights().detach(),
    "one-hot row": _one_hot_row,
    "per-cell": _per_cell,
}


@pytest.mark.parametrize("cell_bn", BN_SETTINGS)
@pytest.mark.parametrize("weights", list(WEIGHTS))
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_cell_matches_reference_logits_gradients_and_state(cell_bn, weights, channels_last):
    reference, fused = _pair(cell_bn, channels_last)
    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 10, (6,))
    for train_mode in (True, False):
        reference.train(train_mode)
        fused.train(train_mode)
        _assert_same_pass(reference, fused, x, y, WEIGHTS[weights])


def test_fused_cell_matches_reference_with_inactive_ops_and_deeper_stages():
    reference, fused = _pair(BN_SETTINGS[0], cells_per_stage=2)
    for net in (reference, fused):
        net.active_ops[:, OP_NAMES.index("skip_connect")] = False
        net.active_ops[1:, OP_NAMES.index("nor_conv_1x1")] = False
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    ref_loss, ref_grads = _loss_and_grads(reference, x, y, WEIGHTS["softmax"])
    fused_loss, fused_grads = _loss_and_grads(fused, x, y, WEIGHTS["softmax"])
    torch.testing.assert_close(fused_loss, ref_loss, **TOL)
    torch.testing.assert_close(fused_grads["alphas"], ref_grads["alphas"], **TOL)
    assert fused_grads["cells.0.edges.1.ops.2.op.1.weight"] is None  # inactive: not computed
    _assert_same_state(reference, fused)


def test_one_hot_rows_run_only_their_op_in_the_fused_cell():
    # In train mode a BatchNorm counts the batches it normalised: only computed convs count.
    _, fused = _pair(BN_SETTINGS[0])
    weights = fused.mixing_weights().detach()
    weights[0] = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0])
    fused(torch.randn(2, 3, 8, 8), weights)
    cell = fused.cells[0]
    counted = {
        (e, k): int(cell.edges[e].ops[k].op[2].num_batches_tracked)
        for e in range(6)
        for k in (OP_NAMES.index("nor_conv_1x1"), OP_NAMES.index("nor_conv_3x3"))
    }
    assert counted.pop((0, OP_NAMES.index("nor_conv_1x1"))) == 0
    assert counted.pop((0, OP_NAMES.index("nor_conv_3x3"))) == 1
    assert set(counted.values()) == {1}


def test_op_plan_marks_skipped_scaled_and_unscaled_ops():
    weights = torch.full((6, 5), 0.25)
    weights[:, 0] = 0.0
    weights[1] = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])
    plan = op_plan(weights)
    assert plan[0] == (0, 1, 1, 1, 1)  # `none` never runs
    assert plan[1] == (0, 2, 0, 0, 0)  # exactly 1 without gradient: unscaled
    assert op_plan(weights.requires_grad_())[1] == (0, 1, 0, 0, 0)
    stacked = torch.stack([weights.detach(), torch.full((6, 5), 0.2)])
    assert op_plan(stacked)[1] == (0, 1, 1, 1, 1)  # any candidate's nonzero weight runs


def test_fused_supernet_survives_deepcopy_and_inference_mode_before_training():
    _, fused = _pair(BN_SETTINGS[0])
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    with torch.inference_mode():
        expected = fused(x)  # fills the pooling cache with inference tensors
    copied = copy.deepcopy(fused)
    torch.testing.assert_close(copied(x), fused(x))
    F.cross_entropy(copied(x), y).backward()  # would fail on a cached inference tensor
    assert copied.alphas.grad is not None
    assert expected.shape == (4, 10)


def test_bf16_autocast_returns_float_logits_close_to_float32():
    torch.manual_seed(0)
    full = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1)
    half = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1, autocast="bf16")
    half.load_state_dict(full.state_dict())
    x = torch.randn(8, 3, 8, 8)
    logits = half(x)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, full(x), rtol=0.1, atol=0.1)
    F.cross_entropy(logits, torch.zeros(8, dtype=torch.long)).backward()
    assert half.alphas.grad is not None


def test_bad_supernet_settings_raise():
    with pytest.raises(ValueError, match="unknown cell implementation"):
        NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1, cell_impl="fast")
    with pytest.raises(ValueError, match="autocast"):
        NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1, autocast="fp16")
    with pytest.raises(ValueError, match="fused"):
        NB201Supernet(
            space=NB201Space(), channels=4, cells_per_stage=1, cell_impl="reference",
            compile_cells=True)


def _candidates(net):
    base = net.mixing_weights().detach()
    matrices = []
    for e, k in [(0, 1), (0, 3), (2, 4), (5, 2)]:
        removed = base.clone()
        removed[e, k] = 0.0
        matrices.append(removed)
    one_hot = base.clone()
    one_hot[3] = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])
    matrices.append(one_hot)
    return torch.stack(matrices)


@pytest.mark.parametrize("cell_bn", BN_SETTINGS)
@pytest.mark.parametrize("train_mode", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_candidates_together_equal_separate_passes(cell_bn, train_mode, channels_last):
    _, fused = _pair(cell_bn, channels_last, cells_per_stage=2)
    fused.train(train_mode)
    x = torch.randn(5, 3, 8, 8)
    matrices = _candidates(fused)
    before = copy.deepcopy(fused.state_dict())
    together = candidate_logits(fused, x, matrices)
    # Together never touches running statistics; separate passes are compared after.
    for name, value in fused.state_dict().items():
        assert torch.equal(value, before[name]), name
    with torch.no_grad():
        separate = torch.stack([fused(x, w) for w in matrices])
    assert together.shape == (5, 5, 10)
    torch.testing.assert_close(together, separate, **TOL)


def test_candidates_with_reference_cells_fall_back_to_separate_passes():
    reference, _ = _pair(BN_SETTINGS[0])
    reference.eval()
    x = torch.randn(3, 3, 8, 8)
    matrices = _candidates(reference)
    together = candidate_logits(reference, x, matrices)
    with torch.no_grad():
        torch.testing.assert_close(together, torch.stack([reference(x, w) for w in matrices]))
    with pytest.raises(ValueError, match="K x edges x ops"):
        candidate_logits(reference, x, matrices[0])


@pytest.mark.parametrize("weights,train_mode", [("softmax", True), ("per-cell", False)])
def test_the_fused_forward_traces_as_one_graph(weights, train_mode):
    """A graph break (a Python-only call inside the cell) splits what ``torch.compile``
    can fuse: one at every pool once made the compiled step slower than eager."""
    from torch import _dynamo

    from spaces.nb201.networks import _supernet_forward

    _, fused = _pair(BN_SETTINGS[0], channels_last=True)
    fused.train(train_mode)
    w = WEIGHTS[weights](fused)
    plans = tuple(op_plan(m) for m in (w if w.dim() == 3 else [w]))
    x = torch.randn(6, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    _dynamo.reset()
    explained = _dynamo.explain(_supernet_forward)(fused, x, w, plans)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@pytest.mark.slow
def test_compiled_supernet_matches_eager_logits_gradients_and_state():
    """``compute.compile``: the compiled forward against the eager fused cell (about three
    minutes of compiling on 2 cores, hence slow)."""
    _, eager = _pair(BN_SETTINGS[0], channels_last=True)
    compiled = copy.deepcopy(eager)
    compiled.compile_cells = True
    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 10, (6,))
    for weights in ("softmax", "detached"):
        _assert_same_pass(eager, compiled, x, y, WEIGHTS[weights])
