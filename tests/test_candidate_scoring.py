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
from spaces.nb201 import NB201Supernet


@pytest.fixture
def tiny_context(tiny_arrays):
    settings = DataSettings(resolution=8, images_per_split=64)
    data = make_search_data(settings, tiny_arrays, seed=0, batch_size=32)
    return SelectionContext(data=data, seed=0)


def _supernet(channels_last=False):
    torch.manual_seed(0)
    net = NB201Supernet(channels=4, cells_per_stage=1, channels_last=channels_last)
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
