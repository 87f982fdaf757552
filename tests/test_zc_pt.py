"""zc-pt (Zero-Cost-PT): the proxies against hand and autograd computations, and the method on
real tiny supernets of every registered space."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from harness.data import Batches
from harness.errors import HarnessError
from harness.search_data import SearchData
from methods.selection import make_method
from methods.selection.base import SelectionContext, SelectionCost, fixed_weights
from methods.selection.progressive import remove_op
from methods.selection.zc_pt import EDGE_ORDERS, ZcPt
from methods.selection.zero_cost import (
    covariance_score,
    hamming_kernel,
    jacobian_covariance_score,
    naswot_score,
    scoring_network,
)
from spaces import space_names
from spaces.base import NotACandidate
from spaces.darts.genotype import check_genotype, parse_genotype
from spaces.darts.search import DartsSupernet
from spaces.darts.space import DartsSpace
from spaces.nb201 import NB201Space, NB201Supernet
from spaces.nb201.cells import MixedEdge, sum_nodes
from spaces.nb201.ops import ReLUConvBN
from spaces.nb201.space import nb201_space


def _data(size: int = 8, count: int = 48, batch_size: int = 16) -> SearchData:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, size, size), generator=generator).to(torch.uint8)
    labels = torch.arange(count) % 10

    def batches(stream: int, augment: bool) -> Batches:
        return Batches(images, labels, batch_size, seed=stream, augment=augment)

    return SearchData(batches(1, True), batches(2, True), batches(3, False), batches(4, False),
                      "random", 10)  # fmt: skip


def _nb201(name: str = "nb201") -> NB201Supernet:
    torch.manual_seed(0)
    return NB201Supernet(channels=4, cells_per_stage=1, space=nb201_space(name))


def _darts(name: str) -> DartsSupernet:
    torch.manual_seed(0)
    net = DartsSupernet(DartsSpace(name), channels=2, layers=3, num_classes=10)
    with torch.no_grad():
        net.alphas.normal_()  # a trained-looking, uneven supernet
    return net


def _context(seed: int = 0, **data) -> SelectionContext:
    return SelectionContext(data=_data(**data), seed=seed)


def _same(a, b) -> bool:
    """Equal selections, wall time aside."""
    untimed = [
        dataclasses.replace(s, cost=dataclasses.replace(s.cost, wall_seconds=0)) for s in (a, b)
    ]
    return untimed[0].to_dict() == untimed[1].to_dict()


# -- (b) the proxies against hand computations ---------------------------------------------


class ReLUWrap(nn.Module):
    """Named like the reference's ReLUConvBN: its hook sees the input its ReLU sees."""

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(x)


def test_nwot_is_the_log_determinant_of_the_hamming_kernel_by_hand():
    images = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]])  # codes 10, 11, 00
    # agreements: K = [[2, 1, 1], [1, 2, 0], [1, 0, 2]], det 2*4 - 1*2 + 1*(-2) = 4
    expected = torch.tensor([[2, 1, 1], [1, 2, 0], [1, 0, 2]], dtype=torch.float64)
    assert torch.equal(hamming_kernel(images > 0), expected)
    relu = nn.Sequential(nn.ReLU())
    assert naswot_score(relu, images, units="relu") == pytest.approx(math.log(4))
    assert naswot_score(relu, images, units="reference") == pytest.approx(math.log(4))
    # the reference's rule also hooks a module whose type mentions ReLU: K doubles (3 x 3)
    wrapped = nn.Sequential(ReLUWrap())
    assert naswot_score(wrapped, images, units="relu") == pytest.approx(math.log(4))
    assert naswot_score(wrapped, images) == pytest.approx(math.log(4) + 3 * math.log(2))


class HalfSquare(nn.Module):
    def forward(self, x):
        return 0.5 * (x**2).sum(1, keepdim=True)  # the summed output's gradient is x itself


def test_jacob_cov_by_hand():
    images = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 0.0, 2.0]])
    # correlations: rows 1, 2 opposite (-1), row 3 at +0.5 / -0.5; eigenvalues 0, (3 +- 3**0.5)/2
    values = [0.0, (3 + math.sqrt(3)) / 2, (3 - math.sqrt(3)) / 2]
    expected = -sum(math.log(v + 1e-5) + 1 / (v + 1e-5) for v in values)
    assert jacobian_covariance_score(HalfSquare(), images) == pytest.approx(expected, rel=1e-9)
    assert covariance_score(images.double().numpy()) == pytest.approx(expected, rel=1e-9)
    # an image whose gradient is constant has no correlation: NaN, as the reference records
    assert math.isnan(covariance_score(np.array([[1.0, 1.0], [1.0, 2.0]])))


# -- (a) zc-pt's scores are the proxy of the masked supernet ---------------------------------


def _reference_nwot(net: NB201Supernet, images, weights, monkeypatch) -> float:
    """NASWOT as the reference's NB201 code runs it, written independently: an op of weight 0
    runs on its input times zero (``block_input``, a keyword that forward hooks never see), and
    every module whose type mentions ReLU is hooked."""

    def blocked_relu_conv_bn(self, x, block_input=False):
        return self.op(x * 0 if block_input else x)

    def reference_edge(self, x, row):
        terms = []
        for k, op in enumerate(self.ops):
            if isinstance(op, NotACandidate):
                continue
            if row[k] == 0:
                if isinstance(op, ReLUConvBN):  # the only ops with a ReLU
                    terms.append(op(x, block_input=True) * row[k])
            else:
                terms.append(op(x) * row[k])
        return sum_nodes(terms, x)

    monkeypatch.setattr(ReLUConvBN, "forward", blocked_relu_conv_bn)
    monkeypatch.setattr(MixedEdge, "forward", reference_edge)
    total = torch.zeros(len(images), len(images), dtype=torch.float64)

    def hook(module, inputs, output):
        nonlocal total
        codes = (inputs[0].reshape(len(images), -1) > 0).double()
        total = total + codes @ codes.T + (1 - codes) @ (1 - codes).T

    handles = [m.register_forward_hook(hook) for m in net.modules() if "ReLU" in str(type(m))]
    net.eval()
    with torch.no_grad():
        net(images, weights)
    for handle in handles:
        handle.remove()
    monkeypatch.undo()
    return float(np.linalg.slogdet(total.numpy())[1])


def test_nwot_scores_equal_the_proxy_of_each_masked_supernet(monkeypatch):
    fused = _nb201()
    data = _data()
    selection = ZcPt(edge_order="fixed", pool_size=1, batches="fixed", batch_size=12).select(
        fused, SelectionContext(data=data, seed=0)
    )
    reference = NB201Supernet(
        space=NB201Space(), channels=4, cells_per_stage=1, cell_impl="reference")
    reference.load_state_dict(fused.state_dict())
    images = next(data.weight_eval.epoch(0))[0][:12]  # split=train, fixed: the first batch
    choices = reference.space.decode(selection.arch)
    base = reference.mixing_weights().detach()
    # edge 0 decided first on the softmax matrix; edge 1 with row 0 one-hot, whose other ops
    # have weight 0 (the reference's blocked ops count there)
    for edge, decided in ((0, {}), (1, {0: choices[0]})):
        weights = fixed_weights(base, decided)
        for k in range(5):
            direct = _reference_nwot(reference, images, remove_op(weights, edge, k), monkeypatch)
            assert selection.scores[edge][k] == pytest.approx(-direct, rel=1e-9, abs=1e-9)
    assert selection.edge_order == list(range(6))


def test_jacob_cov_scores_equal_an_autograd_jacobian_of_each_masked_supernet():
    net = _nb201()
    data = _data()
    selection = ZcPt(
        proxy="jacob_cov", edge_order="fixed", pool_size=1, batches="fixed", batch_size=12
    ).select(net, SelectionContext(data=data, seed=0))
    images = next(data.weight_eval.epoch(0))[0][:12]
    weights = net.mixing_weights().detach()
    net.eval()
    for k in range(5):
        x = images.clone().requires_grad_(True)
        net(x, remove_op(weights, 0, k)).sum().backward()  # d(summed logits)/d(input)
        correlations = np.corrcoef(x.grad.reshape(12, -1).double().numpy())
        values = np.linalg.eig(correlations)[0].real  # the reference's general eig
        direct = -np.sum(np.log(values + 1e-5) + 1 / (values + 1e-5))
        assert selection.scores[0][k] == pytest.approx(-direct, rel=1e-6)
    assert selection.cost.forward_passes == selection.cost.backward_passes == 6 * 5


# -- the method -------------------------------------------------------------------------------


def test_every_op_is_scored_once_per_decision_and_the_lowest_proxy_is_kept():
    net = _nb201()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    selection = ZcPt(edge_order="fixed", pool_size=1).select(net, _context())
    assert selection.cost.forward_passes == 6 * 5 and selection.cost.backward_passes == 0
    choices = net.space.decode(selection.arch)
    assert choices == tuple(int(np.argmax(row)) for row in selection.scores)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def _all_rows(net, images, weights) -> np.ndarray:
    return np.array([[-naswot_score(net, images, remove_op(weights, e, k)) for k in range(5)]
                     for e in range(6)])  # fmt: skip


def test_global_op_iter_decides_the_pair_of_lowest_proxy_first():
    net = _nb201()
    data = _data()
    method = ZcPt(edge_order="global-op-iter", pool_size=1, batches="fixed", batch_size=16)
    selection = method.select(net, SelectionContext(data=data, seed=0))
    images = next(data.weight_eval.epoch(0))[0]
    rows = _all_rows(scoring_network(net), images, net.mixing_weights().detach())
    first = selection.edge_order[0]
    assert first == int(np.argmax(rows.max(axis=1)))
    assert selection.scores[first] == pytest.approx(rows[first].tolist())


@pytest.mark.parametrize("order", [o for o in EDGE_ORDERS if o != "global-op-iter"])  # above
def test_every_edge_order_runs(order):
    net = _nb201("nb201-s2")  # two ops an edge: the orders, at a share of the passes
    selection = ZcPt(edge_order=order, pool_size=1).select(net, _context())
    assert sorted(selection.edge_order) == list(range(6))
    if order in ("fixed", "reverse"):
        assert selection.edge_order == sorted(range(6), reverse=order == "reverse")
    assert selection.settings["edge_order"] == order


def test_same_seed_same_selection_other_seed_other_order():
    method = ZcPt(pool_size=2, validate_rounds=2)
    runs = [method.select(_nb201("nb201-s3"), _context(seed)) for seed in (5, 5)]
    assert _same(runs[0], runs[1])
    other = ZcPt(pool_size=1).select(_nb201("nb201-s3"), _context(6))
    assert runs[0].edge_order != other.edge_order


def test_the_pool_keeps_the_cell_with_the_highest_validation_total():
    net = _nb201()
    context = _context(seed=2)
    method = ZcPt(pool_size=4, validate_rounds=2, batches="fixed", batch_size=16,
                  validation_weights="supernet")  # fmt: skip
    choices, _, _, record = method.choose(net, context, SelectionCost())
    assert len(record["pool"]) > 1  # the seeded orders give different cells here
    reference = scoring_network(net)
    stream = context.data.weight_eval.epoch(0)  # fixed: the first V batches of epoch 0
    batches = [next(stream)[0] for _ in range(2)]
    totals = []
    for arch in record["pool"]:
        network = net.space.discrete_from_supernet(reference, net.space.decode(arch))
        totals.append(sum(naswot_score(network, images) for images in batches))
    assert record["validation"] == pytest.approx(totals)
    assert record["chosen"] == int(np.argmax(totals))
    assert net.space.encode(choices) == record["pool"][record["chosen"]]


def test_an_untrained_supernet_with_the_reference_defaults():
    torch.manual_seed(0)
    # freshly initialised, alphas ~ 1e-3
    net = NB201Supernet(
        space=NB201Space(), channels=4, cells_per_stage=1)
    selection = ZcPt(pool_size=2, validate_rounds=3).select(net, _context())
    scores = np.array(selection.scores)
    assert np.isfinite(scores).all()  # every op of every edge scored, none included
    assert net.space.contains(net.space.decode(selection.arch))
    # two projections of 6 x 5 passes, and 3 rounds per cell if they differ
    assert selection.cost.forward_passes in (2 * 30, 2 * 30 + 2 * 3)


def test_a_singular_kernel_decides_as_the_reference_and_is_recorded_as_nan():
    data = _data()
    for batches in (data.weight_eval, data.weight_batches):
        batches.images[:] = batches.images[0]  # every image the same: K has rank one
    method = ZcPt(pool_size=1, batches="fixed")
    selection = method.select(_nb201(), SelectionContext(data=data, seed=0))
    assert np.isnan(np.array(selection.scores)).all()
    assert selection.arch == _nb201().space.encode([0] * 6)  # nanargmin's first op: none


# -- (c) valid cells in every registered space --------------------------------------------------


def _thinned_darts() -> DartsSupernet:
    """The full DARTS space with two ops active per edge (none, sep conv 5x5): the same
    encoding, topology and none fallback as all eight, at a share of the passes (the slow
    test below runs all eight)."""
    net = _darts("darts")
    active = torch.zeros_like(net.active_ops)
    active[:, [0, 5]] = True
    net.active_ops.copy_(active)
    return net


SPACE_RUNS = [  # DARTS spaces also exercise orders: their node order differs for reverse
    ("darts", "fixed"),
    ("darts-s1", "global-edge-once"),
    ("darts-s2", "random"),
    ("darts-s3", "reverse"),
    ("darts-s4", "random"),
]


def test_space_runs_cover_every_registered_space():
    covered = {"nb201", "nb201-s1", "nb201-s2", "nb201-s3"} | {name for name, _ in SPACE_RUNS}
    assert covered == set(space_names())


@pytest.mark.parametrize("name", ["nb201", "nb201-s1", "nb201-s2", "nb201-s3"])
def test_valid_cells_in_every_nb201_space(name):
    net = _nb201(name)
    selection = ZcPt(pool_size=2, validate_rounds=1).select(net, _context())
    assert net.space.contains(net.space.decode(selection.arch))
    scored = ~np.isnan(np.array(selection.scores, dtype=float))
    assert (scored == net.space.candidate_mask).all()


@pytest.mark.parametrize("name,order", SPACE_RUNS)
def test_valid_cells_in_every_darts_space(name, order):
    net = _thinned_darts() if name == "darts" else _darts(name)
    # unaugmented: a 4 x 4 image cropped from its 4-pixel padding can come out blank
    method = ZcPt(edge_order=order, pool_size=1, batch_size=4, batches="fixed")
    selection = method.select(net, _context(size=4, count=16, batch_size=4))
    check_genotype(parse_genotype(selection.arch), net.space.op_names)  # two distinct inputs
    choices = net.space.decode(selection.arch)
    topology = selection.topology
    assert topology["rule"] == ZcPt.topology_rule and len(topology["dropped"]) == 12
    assert all(choices[e] == net.space.none for e in topology["dropped"])
    assert topology["pool"] == [selection.arch] and topology["chosen"] == 0
    if order == "reverse":  # the last node of each cell first, as the reference's reverse
        assert topology["node_order"][:2] == [list(range(9, 14)), list(range(23, 28))]


@pytest.mark.slow
def test_all_eight_ops_of_the_darts_space():
    net = _darts("darts")
    method = ZcPt(pool_size=1, batch_size=4, batches="fixed")
    selection = method.select(net, _context(size=4, batch_size=4))
    check_genotype(parse_genotype(selection.arch), net.space.op_names)


# -- options -------------------------------------------------------------------------------


def test_variants_by_name_and_bad_options():
    method = make_method("methods.selection.zc_pt:ZcPt[reverse,jacob-cov,pool_size=3]")
    assert method.display_name == "zc-pt[reverse,jacob-cov,pool_size=3]"
    assert (method.options.edge_order, method.options.proxy) == ("reverse", "jacob_cov")
    for bad in ({"edge_order": "order"}, {"proxy": "synflow"}, {"pool_size": 0},
                {"batch_size": 1}, {"units": "all"}):  # fmt: skip
        with pytest.raises(HarnessError):
            ZcPt(**bad)
    with pytest.raises(HarnessError, match="fused"):
        naswot_score(_nb201(), torch.zeros(2, 3, 8, 8), _nb201().mixing_weights())


def test_a_fused_darts_supernet_scores_as_its_op_by_op_equal():
    # The fused DARTS cell applies its ReLUs inside grouped kernels, where no hook sees
    # them: zc-pt scores its op-by-op equal (same parameters), so the selection is the one
    # the reference cell gives.
    reference = _darts("darts-s2")
    torch.manual_seed(0)
    fused = DartsSupernet(DartsSpace("darts-s2"), channels=2, layers=3, num_classes=10,
                          cell_impl="fused")  # fmt: skip
    fused.load_state_dict(reference.state_dict())
    assert scoring_network(reference) is reference
    twin = scoring_network(fused)
    assert twin is not fused and twin.cell_impl == "reference"
    assert all(torch.equal(a, b) for a, b in zip(twin.state_dict().values(),
                                                 reference.state_dict().values(), strict=True))
    method = ZcPt(pool_size=1)
    expected = method.select(reference, _context(3))
    found = method.select(fused, _context(3))
    assert (found.arch, found.edge_order) == (expected.arch, expected.edge_order)
    assert np.allclose(np.array(found.scores, dtype=float), np.array(expected.scores, dtype=float),
                       equal_nan=True)
