"""ostr: operation strength by replacement, exact and first-order, on real modules and data."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from planted import SIGNAL_EDGE, SIGNAL_OP, SKIP, planted_data, planted_supernet

from harness.config import DataSettings
from harness.data import Batches
from harness.errors import HarnessError
from harness.search_data import make_search_data
from methods.selection.base import SelectionContext, SelectionCost, edge_order, fixed_weights
from methods.selection.magnitude import Magnitude
from methods.selection.ostr import OStr
from methods.selection.scoring import measure
from spaces.nb201 import NUM_EDGES, OP_NAMES, NB201Space, NB201Supernet, decode


def _context(seed=0, data=None):
    return SelectionContext(data=data or planted_data(), seed=seed)


def _tiny_data(arrays):
    return make_search_data(
        DataSettings(resolution=8, images_per_split=64), arrays, seed=0, batch_size=32
    )


def _same(a, b):
    """Equal selections, wall time aside."""
    a, b = (
        dataclasses.replace(s, cost=dataclasses.replace(s.cost, wall_seconds=0)) for s in (a, b)
    )
    return a.to_dict() == b.to_dict()


def test_seed_one_decides_the_signal_edge_last():
    # The progressive cases below rely on this order to exercise the hard case.
    assert edge_order(1, list(range(NUM_EDGES)))[-1] == SIGNAL_EDGE


@pytest.mark.parametrize(
    "options",
    [
        {"num_batches": 1},
        {"num_batches": 1, "edge_order": "independent"},
        {"num_batches": 1, "edge_order": "greedy"},
        {"estimate": "taylor"},
        {"estimate": "taylor", "edge_order": "independent"},
    ],
)
def test_ostr_finds_the_planted_convolution_that_magnitude_misses(options):
    net = planted_supernet()
    assert decode(Magnitude().select(net, _context()).arch)[SIGNAL_EDGE] == SKIP
    # Seed 1 decides 3<-0 last, after every edge that could cut the signal's route through the
    # later cells. None does: while 3<-0 is undecided its mixed skip (a direct input-to-output
    # edge) carries the signal through every later cell, so earlier edges only scale it, and
    # skip/pool keep it largest. The final train-mode BatchNorm removes that scale up to its
    # eps, so those edges' ops score within ~1e-7 of each other, still far above float32
    # resolution on a loss of ~1e-4: skip/pool win and keep a route open for the conv. Once
    # 3<-0 holds the conv, cutting the last route would cost ln 2 and is never chosen, so the
    # selected cell itself classifies perfectly.
    selection = OStr(**options).select(net, _context(seed=1))
    choices = decode(selection.arch)
    assert choices[SIGNAL_EDGE] == SIGNAL_OP
    cell = fixed_weights(net.mixing_weights().detach(), dict(enumerate(choices)))
    assert measure(net, cell, planted_data().alpha_eval, None, SelectionCost()).accuracy == 1.0
    row = np.array(selection.scores[SIGNAL_EDGE])
    assert row[SIGNAL_OP] > np.delete(row, SIGNAL_OP).max()


def test_exact_strengths_on_the_signal_edge():
    net = planted_supernet()
    data = planted_data()
    selection = OStr(edge_order="independent").select(net, _context(data=data))
    weights = net.mixing_weights().detach()
    base = measure(net, weights, data.alpha_eval, None, SelectionCost()).loss
    row = selection.scores[SIGNAL_EDGE]
    for k in range(len(OP_NAMES)):
        alone = fixed_weights(weights, {SIGNAL_EDGE: k})
        loss = measure(net, alone, data.alpha_eval, None, SelectionCost()).loss
        assert row[k] == pytest.approx(base - loss, abs=1e-12)
    # Alone, the conv keeps the fit; any other op alone cuts the signal: loss ln 2.
    assert abs(row[SIGNAL_OP]) < 1e-4
    others = np.delete(np.array(row), SIGNAL_OP)
    assert np.allclose(others, base - math.log(2), atol=1e-4)
    assert row[SIGNAL_OP] - others.max() > 0.5


def test_kept_weight_keeps_the_op_at_its_trained_weight():
    net = planted_supernet()
    data = planted_data()
    kept = OStr(edge_order="independent", replacement="kept-weight").select(
        net, _context(data=data)
    )
    one_hot = OStr(edge_order="independent").select(net, _context(data=data))
    weights = net.mixing_weights().detach()
    base = measure(net, weights, data.alpha_eval, None, SelectionCost()).loss
    for k in range(len(OP_NAMES)):
        alone = torch.zeros_like(weights[SIGNAL_EDGE])
        alone[k] = weights[SIGNAL_EDGE, k]  # the others removed, no renormalisation
        perturbed = weights.clone()
        perturbed[SIGNAL_EDGE] = alone
        loss = measure(net, perturbed, data.alpha_eval, None, SelectionCost()).loss
        assert kept.scores[SIGNAL_EDGE][k] == pytest.approx(base - loss, abs=1e-12)
    assert kept.settings["replacement"] == "kept-weight"
    # added later: at its default it stays out of the key, so older ostr stores are reused
    assert "replacement" not in one_hot.settings
    assert OStr(replacement="kept-weight").display_name == "ostr[replacement=kept-weight]"


def test_kept_weight_and_one_hot_replacement_measure_different_things(tiny_arrays):
    data = _tiny_data(tiny_arrays)
    torch.manual_seed(0)
    net = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1)
    with torch.no_grad():
        net.alphas.normal_()  # weights well below one, so the two readings part
    scores = {
        replacement: np.array(OStr(edge_order="independent", num_batches=1,
                                   replacement=replacement).select(net, _context(data=data)).scores)
        for replacement in ("one-hot", "kept-weight")
    }  # fmt: skip
    assert np.abs(scores["one-hot"] - scores["kept-weight"]).max() > 1e-3


class _DoubleBatches:
    """A split in float64, so finite differences are limited by the kinks, not rounding."""

    def __init__(self, batches: Batches) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def epoch(self, index):
        for x, y in self.batches.epoch(index):
            yield x.double(), y


@pytest.mark.parametrize(
    "bn_mode, replacement", [("train", "one-hot"), ("eval", "one-hot"), ("train", "kept-weight")]
)
def test_taylor_strength_is_the_directional_derivative(tiny_arrays, bn_mode, replacement):
    data = _tiny_data(tiny_arrays)
    data = dataclasses.replace(data, alpha_eval=_DoubleBatches(data.alpha_eval))
    torch.manual_seed(0)
    net = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1).double()
    with torch.no_grad():
        net.alphas.normal_()  # an uneven W, so the W_e term of the estimate matters
    method = OStr(estimate="taylor", edge_order="independent", num_batches=1, bn_mode=bn_mode,
                  replacement=replacement)  # fmt: skip
    taylor = np.array(method.select(net, _context(data=data)).scores)
    weights = net.mixing_weights().detach()
    # S_t(e,k) = L(W) - L(W + t d), d = r_k - W_e with r_k = onehot(k) (or W[e,k] onehot(k)
    # for kept-weight): S_t / t -> -g.d, which is the estimate. Central differences; t small
    # enough that no ReLU kink falls inside +-t.
    t, exact = 1e-6, np.zeros_like(taylor)
    for e in range(NUM_EDGES):
        for k in range(len(OP_NAMES)):
            d = torch.zeros_like(weights)
            d[e] = -weights[e]
            d[e, k] += 1.0 if replacement == "one-hot" else weights[e, k]
            lower, upper = (
                measure(net, weights + s * t * d, data.alpha_eval, 1, SelectionCost(), bn_mode)
                for s in (-1, 1)
            )
            exact[e, k] = (lower.loss - upper.loss) / (2 * t)
    assert np.abs(taylor).max() > 1e-3
    np.testing.assert_allclose(taylor, exact, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("order, estimations", [("independent", 1), ("random", 6), ("greedy", 6)])
def test_taylor_costs_one_forward_and_backward_per_batch_per_estimate(order, estimations):
    batches = len(planted_data().alpha_eval)
    cost = OStr(estimate="taylor", edge_order=order).select(planted_supernet(), _context()).cost
    assert cost.forward_passes == cost.backward_passes == estimations * batches
    two = OStr(estimate="taylor", edge_order=order, num_batches=2)
    assert two.select(planted_supernet(), _context()).cost.forward_passes == estimations * 2


def test_exact_cost_and_inactive_ops():
    net = planted_supernet()
    with torch.no_grad():
        net.active_ops[:, OP_NAMES.index("none")] = False
        net.active_ops[0, OP_NAMES.index("nor_conv_1x1")] = False
    active = net.active_ops.numpy()
    per_batch = 1 + int(active.sum())  # the baseline and one replacement per active op
    for order in ("independent", "random"):
        # Progressive costs no more: the matrix a step decides on is a candidate it already
        # measured, so the next step's baseline is free.
        selection = OStr(edge_order=order, num_batches=2).select(net, _context())
        assert selection.cost.forward_passes == per_batch * 2
        assert selection.cost.backward_passes == 0
        scores = np.array(selection.scores)
        assert np.isnan(scores[~active]).all() and not np.isnan(scores[active]).any()
        assert all(active[e, k] for e, k in enumerate(decode(selection.arch)))
    greedy = OStr(edge_order="greedy", num_batches=2).select(net, _context())
    order = greedy.edge_order
    rescored = sum(int(active[order[step:]].sum()) for step in range(NUM_EDGES))
    assert greedy.cost.forward_passes == (1 + rescored) * 2


def test_inactive_signal_op_is_never_chosen():
    net = planted_supernet()
    with torch.no_grad():
        net.active_ops[SIGNAL_EDGE, SIGNAL_OP] = False
    selection = OStr(num_batches=1).select(net, _context())
    assert decode(selection.arch)[SIGNAL_EDGE] != SIGNAL_OP
    assert math.isnan(selection.scores[SIGNAL_EDGE][SIGNAL_OP])


def test_split_option_chooses_the_data():
    # Validation labels swapped: the planted fit is wrong there, so on the valid split the
    # conv alone is the worst choice, on the train split the best.
    images, labels = planted_data().alpha_eval.images, planted_data().alpha_eval.labels
    swapped = Batches(images, 1 - labels, 16, seed=4, augment=False)
    data = dataclasses.replace(planted_data(), alpha_eval=swapped)
    for split, picks_conv in (("valid", False), ("train", True)):
        method = OStr(edge_order="independent", split=split, num_batches=1)
        choices = decode(method.select(planted_supernet(), _context(data=data)).arch)
        assert (choices[SIGNAL_EDGE] == SIGNAL_OP) == picks_conv


def test_finetuning_works_on_a_copy_and_is_deterministic(tiny_arrays):
    data = _tiny_data(tiny_arrays)
    torch.manual_seed(0)
    net = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    method = OStr(finetune_epochs=0.5, num_batches=1)  # one step between decisions
    first = method.select(net, _context(seed=3, data=data))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert _same(first, method.select(net, _context(seed=3, data=data)))
    assert first.edge_order == edge_order(3, list(range(NUM_EDGES)))
    cost = first.cost
    assert cost.finetune_steps == NUM_EDGES - 1
    # Each step measures a fresh baseline (the weights moved) and every candidate, on one
    # batch; each fine-tuning step is one alpha and one weight step.
    assert cost.forward_passes == NUM_EDGES + NUM_EDGES * len(OP_NAMES) + 2 * cost.finetune_steps
    assert cost.backward_passes == 2 * cost.finetune_steps
    assert first.settings["finetune_epochs"] == 0.5


@pytest.mark.parametrize("options", [{}, {"estimate": "taylor"}, {"edge_order": "greedy"}])
def test_caller_untouched_and_same_seed_same_selection(options):
    net = planted_supernet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    method = OStr(num_batches=1, **options)
    first = method.select(net, _context(seed=2))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert _same(first, method.select(net, _context(seed=2)))


def test_display_names_and_recorded_settings():
    assert OStr().display_name == "ostr"
    assert OStr(estimate="taylor").display_name == "ostr[taylor]"
    assert OStr(edge_order="independent").display_name == "ostr[independent]"
    assert OStr(edge_order="greedy").display_name == "ostr[greedy]"
    both = OStr(estimate="taylor", edge_order="greedy", num_batches=3)
    assert both.display_name == "ostr[taylor,greedy,num_batches=3]"
    for values in OStr.aliases.values():
        OStr(**values)
    assert OStr().settings() == {
        "method": "ostr",
        "edge_order": "random",
        "estimate": "exact",
        "split": "valid",
        "none_competes": True,
        "num_batches": None,
        "bn_mode": "train",
        "finetune_epochs": 0.0,
        "finetune_lr": 0.0025,
        "candidate_batch": 1,
    }


@pytest.mark.parametrize(
    "options, message",
    [
        ({"edge_order": "backwards"}, "edge_order"),
        ({"estimate": "second-order"}, "estimate"),
        ({"split": "test"}, "split"),
        ({"bn_mode": "frozen"}, "bn_mode"),
        ({"num_batches": 0}, "num_batches"),
        ({"num_batches": "3"}, "num_batches"),
        ({"finetune_epochs": -1.0}, "finetune_epochs"),
        ({"finetune_epochs": "lots"}, "finetune_epochs"),
        ({"finetune_lr": 0.0}, "finetune_lr"),
        ({"edge_order": "independent", "finetune_epochs": 1.0}, "independent"),
        ({"colour": 1}, "unknown option"),
    ],
)
def test_bad_options_raise_one_clear_error(options, message):
    with pytest.raises(HarnessError, match=message):
        OStr(**options)


NONE = OP_NAMES.index("none")


@pytest.mark.parametrize("estimate", ["exact", "taylor"])
def test_no_none_never_scores_or_chooses_none(tiny_arrays, estimate):
    torch.manual_seed(0)
    net = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1)
    with torch.no_grad():
        net.alphas.normal_(0, 1.0)
    context = SelectionContext(data=_tiny_data(tiny_arrays), seed=0)
    without = OStr(num_batches=1, estimate=estimate, none_competes=False).select(net, context)
    assert NONE not in decode(without.arch)
    assert all(math.isnan(row[NONE]) for row in without.scores)
    assert without.settings["none_competes"] is False and "no-none" in without.method
    with_none = OStr(num_batches=1, estimate=estimate).select(net, context)
    assert all(not math.isnan(row[NONE]) for row in with_none.scores)


def test_no_none_keeps_none_where_it_is_the_only_active_op(tiny_arrays):
    torch.manual_seed(0)
    net = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1)
    net.active_ops[2] = False
    net.active_ops[2, NONE] = True
    context = SelectionContext(data=_tiny_data(tiny_arrays), seed=0)
    chosen = decode(OStr(num_batches=1, none_competes=False).select(net, context).arch)
    assert chosen[2] == NONE
    assert NONE not in chosen[:2] + chosen[3:]


def test_ostr_ablation_group_expands_to_its_variants():
    from methods.selection import parse_method_list
    from methods.selection.ostr import ABLATION

    names = [m.display_name for m in parse_method_list("magnitude,ostr-ablation")]
    assert names == ["magnitude", *ABLATION]
    assert len(set(names)) == len(names)
