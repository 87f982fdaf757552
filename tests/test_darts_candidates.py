"""DARTS-space candidate scoring: K mixing matrices in one pass of the fused supernet give
what K separate passes give, write no state, and select the same cells (issue 28)."""

import math

import numpy as np
import pytest
import torch

from harness.config import DataSettings
from harness.search_data import make_search_data
from methods.selection.base import SelectionContext, SelectionCost
from methods.selection.darts_pt import DartsPT
from methods.selection.ostr import OStr
from methods.selection.scoring import batch_statistics_only, measure, measure_candidates
from spaces.darts import fused_convs
from spaces.darts.search import DartsSupernet
from spaces.darts.space import DartsSpace


def _supernet(name="darts", cell_impl="fused", dtype=torch.float32):
    torch.manual_seed(0)
    net = DartsSupernet(DartsSpace(name), channels=4, layers=5, cell_impl=cell_impl).to(dtype)
    with torch.no_grad():
        net.alphas.normal_()
        for _ in range(2):  # running statistics that are not the initial ones
            net(torch.randn(8, 3, 8, 8, dtype=dtype))
    return net


def _candidates(net):
    """One matrix as it is, and what progressive selection tries: one-hot rows, an op
    masked out, a whole row zeroed (a pruned edge), in normal and reduction rows."""
    space = net.space
    base = net.mixing_weights().detach()
    out = [base]
    for e in (0, 5, 13, 14, 20, 27):
        one_hot = base.clone()
        one_hot[e] = 0.0
        one_hot[e, space.candidates[e][-1]] = 1.0
        out.append(one_hot)
    masked = base.clone()
    masked[:, space.candidates[3][1]] = 0.0
    out.append(masked)
    pruned = base.clone()
    pruned[[2, 16]] = 0.0
    out.append(pruned)
    return torch.stack(out)


# darts-s1 and darts-s3 (per-edge candidate sets, none as a candidate) run with -m slow
@pytest.mark.parametrize(
    "name", ["darts", *(pytest.param(n, marks=pytest.mark.slow) for n in ("darts-s1", "darts-s3"))]
)
@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_candidate_logits_equal_separate_passes_and_write_no_state(name, bn_mode):
    net = _supernet(name, dtype=torch.float64).train(bn_mode == "train")
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64)
    weights = _candidates(net)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    together = net.candidate_logits(x, weights)
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key
    with torch.no_grad(), batch_statistics_only(net, bn_mode == "train"):
        apart = torch.stack([net(x, w) for w in weights])
    assert together.shape == (len(weights), 6, 10)
    torch.testing.assert_close(together, apart, rtol=0, atol=1e-12)


def test_reference_cells_and_noise_ops_are_scored_one_at_a_time_without_writing_state():
    for net in (_supernet("darts-s3", cell_impl="reference"), _supernet("darts-s4")):
        torch.manual_seed(1)
        matrices = list(_candidates(net)[:3])
        state = {k: v.clone() for k, v in net.state_dict().items()}
        batches = [(torch.randn(6, 3, 8, 8), torch.randint(0, 10, (6,)))]
        results = measure_candidates(net, matrices, _Listed(batches), None, SelectionCost())
        assert len(results) == 3 and all(math.isfinite(r.loss) for r in results)
        for key, value in net.state_dict().items():
            assert torch.equal(value, state[key]), key


class _Listed:
    """The Batches protocol over a fixed list (epoch after epoch the same batches)."""

    def __init__(self, batches):
        self.batches = batches

    def epoch(self, epoch):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


@pytest.fixture
def darts_context(tiny_arrays):
    settings = DataSettings(resolution=8, images_per_split=64)
    data = make_search_data(settings, tiny_arrays, seed=0, batch_size=32)
    return SelectionContext(data=data, seed=0)


def test_measure_candidates_equals_measure(darts_context):
    net = _supernet("darts")
    matrices = list(_candidates(net))
    batches = darts_context.data.alpha_eval
    together = measure_candidates(net, matrices, batches, None, SelectionCost())
    alone = [measure(net, w, batches, None, SelectionCost()) for w in matrices]
    for a, b in zip(together, alone, strict=True):
        assert math.isclose(a.loss, b.loss, rel_tol=1e-5)
        assert a.accuracy == b.accuracy


@pytest.mark.parametrize(
    "method",
    [
        lambda **o: OStr(num_batches=1, **o),
        pytest.param(
            lambda **o: DartsPT(num_batches=1, finetune_epochs=0.0, **o), marks=pytest.mark.slow
        ),
    ],
)
def test_batched_scoring_selects_the_same_darts_cell(darts_context, method):
    one = method().select(_supernet("darts-s3"), darts_context)
    batched = method(candidate_batch=6).select(_supernet("darts-s3"), darts_context)
    assert batched.arch == one.arch
    assert batched.edge_order == one.edge_order
    np.testing.assert_allclose(np.array(batched.scores), np.array(one.scores), rtol=1e-4, atol=2e-4)
    assert batched.cost.forward_passes == one.cost.forward_passes


def test_a_fused_supernet_trains_after_scoring_in_inference_mode():
    """The fused cell caches small index tensors (edge indices, small maps' tap indices):
    one first made during an inference-mode scoring pass must still serve a later pass
    with autograd (DARTS-PT's fine-tuning)."""
    net = _supernet("darts")
    x = torch.randn(4, 3, 8, 8)
    fused_convs._MADE.clear()
    with torch.inference_mode():
        net(x)
    net(x).sum().backward()
    assert net.alphas.grad is not None and torch.isfinite(net.alphas.grad).all()
