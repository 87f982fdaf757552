"""Scoring candidates together gives what scoring them one at a time gives."""

import math

import numpy as np
import pytest
import torch

from harness.config import DataSettings
from harness.errors import HarnessError
from harness.search_data import make_search_data
from methods.selection.base import SelectionContext, SelectionCost
from methods.selection.darts_pt import DartsPT
from methods.selection.opp_loss import OppLoss
from methods.selection.ostr import OStr
from methods.selection.scoring import measure, measure_candidates
from spaces.nb201 import NB201Space, NB201Supernet


@pytest.fixture
def tiny_context(tiny_arrays):
    settings = DataSettings(resolution=8, images_per_split=64)
    data = make_search_data(settings, tiny_arrays, seed=0, batch_size=32)
    return SelectionContext(data=data, seed=0)


def _supernet(channels_last=False):
    torch.manual_seed(0)
    net = NB201Supernet(
        space=NB201Space(), channels=4, cells_per_stage=1, channels_last=channels_last)
    with torch.no_grad():
        net.alphas.normal_()
    return net


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_measure_candidates_equals_measure_and_leaves_state_alone(tiny_context, bn_mode):
    net = _supernet()
    base = net.mixing_weights().detach()
    matrices = [base, base.clone().index_fill_(1, torch.tensor([3]), 0.0)]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    batches = tiny_context.data.alpha_eval
    together_cost, alone_cost = SelectionCost(), SelectionCost()
    together = measure_candidates(net, matrices, batches, None, together_cost, bn_mode)
    alone = [measure(net, w, batches, None, alone_cost, bn_mode) for w in matrices]
    for a, b in zip(together, alone, strict=True):
        assert math.isclose(a.loss, b.loss, rel_tol=1e-5)
        assert a.accuracy == b.accuracy
    assert together_cost.forward_passes == alone_cost.forward_passes == 2 * len(batches)
    for name, value in net.state_dict().items():
        assert torch.equal(value, state[name]), name


@pytest.mark.parametrize(
    "method",
    [
        lambda **o: OStr(num_batches=1, **o),
        lambda **o: OStr(num_batches=1, edge_order="independent", **o),
        lambda **o: DartsPT(num_batches=1, finetune_epochs=0.25, **o),
        lambda **o: OppLoss(num_batches=1, **o),
    ],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_batched_scoring_selects_the_same_cell_with_the_same_scores(
    tiny_context, method, channels_last
):
    one = method().select(_supernet(channels_last), tiny_context)
    batched = method(candidate_batch=4).select(_supernet(channels_last), tiny_context)
    assert batched.arch == one.arch
    assert batched.edge_order == one.edge_order
    # atol: a one-hot `none` row zeroes a node, and BatchNorm of the constant that follows
    # divides float rounding by sqrt(eps); such scores agree to ~1e-4, the rest to ~1e-7.
    np.testing.assert_allclose(np.array(batched.scores), np.array(one.scores), rtol=1e-4, atol=2e-4)
    assert batched.cost.forward_passes == one.cost.forward_passes
    assert batched.settings["candidate_batch"] == 4 and one.settings["candidate_batch"] == 1


def test_candidate_batch_must_be_a_positive_integer():
    with pytest.raises(HarnessError, match="candidate_batch"):
        OStr(candidate_batch=0)


@pytest.mark.parametrize(
    "cell,channels_last", [("fused", False), ("fused", True), ("reference", False)]
)
def test_train_mode_scoring_equals_a_tracked_forward_and_writes_no_statistics(
    tiny_context, cell, channels_last
):
    from tests.batch_norm_state import randomise_batch_norm

    torch.manual_seed(0)
    net = NB201Supernet(
        space=NB201Space(), channels=4, cells_per_stage=1, cell_impl=cell,
        channels_last=channels_last)
    with torch.no_grad():
        net.alphas.normal_()
    randomise_batch_norm(net)
    weights = net.mixing_weights().detach()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    batches = tiny_context.data.alpha_eval
    # What scoring did before it stopped tracking: a plain train-mode forward (which
    # moves the running statistics), loss summed over the batches.
    net.train()
    with torch.no_grad():
        expected = sum(
            torch.nn.functional.cross_entropy(net(x, weights), y, reduction="sum").item()
            for x, y in batches.epoch(0)
        ) / sum(len(y) for _, y in batches.epoch(0))
    moved = [k for k, v in net.state_dict().items() if not torch.equal(v, state[k])]
    assert moved, "a tracked train-mode forward moves running statistics"
    net.load_state_dict(state)
    net.eval()
    got = measure(net, weights, batches, None, SelectionCost(), "train")
    assert got.loss == expected  # bit for bit: the same batch statistics normalise
    assert not net.training, "measure restores the mode it found"
    for name, value in net.state_dict().items():
        assert torch.equal(value, state[name]), name
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(m.track_running_stats for m in norms)
    eval_mode = measure(net, weights, batches, None, SelectionCost(), "eval")
    assert eval_mode.loss != got.loss, "eval mode reads the (randomised) running statistics"


def test_tracking_comes_back_when_a_scoring_pass_fails(tiny_context):
    from methods.selection.scoring import batch_statistics_only

    net = _supernet()
    with pytest.raises(RuntimeError), batch_statistics_only(net):
        assert not any(
            m.track_running_stats for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)
        )
        raise RuntimeError("a forward that fails")
    assert all(m.track_running_stats for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
