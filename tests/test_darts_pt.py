"""darts-pt: perturbation-based selection with fine-tuning between decisions."""

import inspect
import math

import numpy as np
import pytest
import torch
from planted import SIGNAL_EDGE, SIGNAL_OP, SKIP, planted_data, planted_supernet

from harness.config import DataSettings
from harness.errors import HarnessError
from harness.search_data import make_search_data
from methods.selection import progressive
from methods.selection.base import SelectionContext, SelectionCost, edge_order
from methods.selection.darts_pt import DartsPT
from methods.selection.finetune import finetune, steps_for
from methods.selection.magnitude import Magnitude
from spaces.nb201 import NUM_EDGES, NUM_OPS, OP_NAMES, NB201Space, NB201Supernet, decode


def _planted_context(seed=0):
    # One batch of all 64 planted images: the same data, a quarter of the forward calls.
    return SelectionContext(data=planted_data(batch_size=64), seed=seed)


def _state(net):
    return {name: value.detach().clone() for name, value in net.state_dict().items()}


def _assert_same_state(before, net):
    after = net.state_dict()
    assert before.keys() == after.keys()
    for name, value in before.items():
        assert torch.equal(value, after[name]), name


@pytest.fixture
def tiny_context(tiny_arrays):
    settings = DataSettings(resolution=8, images_per_split=64)
    data = make_search_data(settings, tiny_arrays, seed=0, batch_size=32)
    return SelectionContext(data=data, seed=0)


def _tiny_supernet():
    torch.manual_seed(0)
    return NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1)


# Progressive decisions and ties: on signal-free edges every removal leaves accuracy at
# 1.0, so the accuracy criterion decides them to `none` (first op). That cannot cut the
# signal before edge 3 is decided, whatever the order: edge 3 (3<-0) is itself the
# direct input->output path of every cell, and while undecided it still carries
# skip_connect (weight ~0.65) in the later cells. Once edge 3 is decided it no longer
# matters. So both orders are tested with accuracy, and the loss criterion (whose
# picks on signal-free edges follow tiny loss differences) with the random order.
@pytest.mark.parametrize(
    "options",
    [
        {"edge_order": "sequential"},
        {},
        {"criterion": "loss"},
    ],
)
def test_darts_pt_finds_the_planted_convolution_that_magnitude_misses(options):
    net = planted_supernet()
    before = _state(net)
    selection = DartsPT(finetune_epochs=0.0, **options).select(net, _planted_context())
    _assert_same_state(before, net)
    # The expected pick depends on the method: argmax-alpha says skip_connect there.
    magnitude = Magnitude().select(planted_supernet(), _planted_context())
    assert decode(magnitude.arch)[SIGNAL_EDGE] == SKIP
    assert decode(selection.arch)[SIGNAL_EDGE] == SIGNAL_OP
    row = np.array(selection.scores[SIGNAL_EDGE])
    assert int(np.argmax(row)) == SIGNAL_OP
    others = np.delete(row, SIGNAL_OP)
    if selection.settings["criterion"] == "accuracy":
        # 100% with the conv, chance (50%) without it; removing anything else changes nothing.
        assert row[SIGNAL_OP] == pytest.approx(0.5)
        assert np.all(others == 0.0)
        # So on signal-free edges every removal ties, and ties go to the earlier op: `none`.
        none = OP_NAMES.index("none")
        expected = [SIGNAL_OP if e == SIGNAL_EDGE else none for e in range(NUM_EDGES)]
        assert list(decode(selection.arch)) == expected
    else:
        assert row[SIGNAL_OP] > 0.5 and np.all(others < 0.01)


def test_costs_follow_the_loop_and_inactive_ops_are_not_scored():
    net = planted_supernet()
    inactive = {0: [OP_NAMES.index("nor_conv_1x1")], 5: [0, OP_NAMES.index("avg_pool_3x3")]}
    for edge, ops in inactive.items():
        net.active_ops[edge, ops] = False
    context = SelectionContext(data=planted_data(batch_size=16), seed=0)  # 4 batches
    selection = DartsPT(num_batches=2, finetune_epochs=0.0).select(net, context)
    active_per_edge = net.active_ops.sum(1).tolist()
    # One baseline plus one measurement per active op, per decision, num_batches each.
    assert selection.cost.forward_passes == sum(2 * (1 + n) for n in active_per_edge)
    everything = DartsPT(finetune_epochs=0.0).select(planted_supernet(), context)
    assert everything.cost.forward_passes == NUM_EDGES * (1 + NUM_OPS) * 4
    assert selection.cost.backward_passes == 0 and selection.cost.finetune_steps == 0
    scores = np.array(selection.scores)
    for edge in range(NUM_EDGES):
        for op in range(NUM_OPS):
            assert math.isnan(scores[edge, op]) == (op in inactive.get(edge, []))
    chosen = decode(selection.arch)
    assert all(chosen[e] not in ops for e, ops in inactive.items())
    assert sorted(selection.edge_order) == list(range(NUM_EDGES))


@pytest.mark.parametrize("fix_alpha", [False, True])
def test_finetuning_happens_between_decisions_on_a_copy(monkeypatch, tiny_context, fix_alpha):
    calls = []

    def spy(*args, **kwargs):
        bound = inspect.signature(finetune).bind(*args, **kwargs)
        bound.apply_defaults()
        call = dict(bound.arguments)
        alphas_before = call["supernet"].alphas.detach().clone()
        finetune(*args, **kwargs)
        call["decided"] = dict(call["decided"])
        call["alphas_changed"] = not torch.equal(alphas_before, call["supernet"].alphas)
        calls.append(call)

    monkeypatch.setattr(progressive, "finetune", spy)
    net = _tiny_supernet()
    before = _state(net)
    method = DartsPT(num_batches=1, finetune_epochs=0.5, fix_alpha=fix_alpha)
    selection = method.select(net, tiny_context)
    _assert_same_state(before, net)

    steps = steps_for(0.5, tiny_context.data.weight_batches)
    assert steps >= 1
    # Between the six decisions, not before the first or after the last.
    assert len(calls) == NUM_EDGES - 1
    assert [len(c["decided"]) for c in calls] == list(range(1, NUM_EDGES))
    assert len({c["stream"] for c in calls}) == len(calls)
    for call in calls:
        assert call["supernet"] is not net
        assert call["steps"] == steps and call["lr"] == 0.0025
        assert call["train_alphas"] is not fix_alpha
        assert call["alphas_changed"] is not fix_alpha
    order = selection.edge_order
    assert [list(c["decided"]) for c in calls] == [order[: i + 1] for i in range(len(calls))]

    tuning = (NUM_EDGES - 1) * steps
    passes_per_step = 1 if fix_alpha else 2
    assert selection.cost.finetune_steps == tuning
    assert selection.cost.backward_passes == passes_per_step * tuning
    assert selection.cost.forward_passes == NUM_EDGES * (1 + NUM_OPS) + passes_per_step * tuning
    assert selection.settings["fix_alpha"] is fix_alpha


def test_same_seed_same_selection_and_variants_differ(tiny_context):
    def run(**options):
        method = DartsPT(num_batches=1, finetune_epochs=0.5, criterion="loss", **options)
        selection = method.select(_tiny_supernet(), tiny_context)
        selection.cost.wall_seconds = 0.0
        return selection

    first, second = run(), run()
    assert first == second
    assert first.edge_order == edge_order(0, list(range(NUM_EDGES)))
    # Frozen alphas mean a different mixing matrix after the first fine-tuning phase.
    frozen = run(fix_alpha=True)
    assert frozen.scores[frozen.edge_order[0]] == first.scores[first.edge_order[0]]
    assert frozen.scores != first.scores


def test_random_order_follows_the_seed():
    method = DartsPT(finetune_epochs=0.0)
    orders = [method.select(planted_supernet(), _planted_context(s)).edge_order for s in (0, 1)]
    assert orders == [edge_order(s, list(range(NUM_EDGES))) for s in (0, 1)]
    assert orders[0] != orders[1]
    sequential = DartsPT(edge_order="sequential", finetune_epochs=0.0)
    assert sequential.select(planted_supernet(), _planted_context(1)).edge_order == list(
        range(NUM_EDGES)
    )


def test_settings_and_display_names():
    selection = DartsPT(finetune_epochs=0.0, num_batches=1).select(
        planted_supernet(), _planted_context()
    )
    assert selection.settings == {
        "method": "darts-pt",
        "edge_order": "random",
        "criterion": "accuracy",
        "num_batches": 1,
        "bn_mode": "train",
        "finetune_epochs": 0.0,
        "finetune_lr": 0.0025,
        "candidate_batch": 1,
        "fix_alpha": False,
        "scoring_data": "fixed",
    }
    assert DartsPT().display_name == "darts-pt"
    assert DartsPT(fix_alpha=True).display_name == "darts-pt[fix-alpha]"
    assert DartsPT(criterion="loss").display_name == "darts-pt[criterion=loss]"
    assert DartsPT(finetune_epochs=5).options.finetune_epochs == 5.0


@pytest.mark.parametrize(
    "options, message",
    [
        ({"edge_order": "backwards"}, "edge_order"),
        ({"criterion": "f1"}, "criterion"),
        ({"bn_mode": "frozen"}, "bn_mode"),
        ({"num_batches": 0}, "num_batches"),
        ({"num_batches": "two"}, "num_batches"),
        ({"num_batches": 1.5}, "num_batches"),
        ({"finetune_epochs": -1.0}, "finetune_epochs"),
        ({"finetune_epochs": math.nan}, "finetune_epochs"),
        ({"finetune_epochs": "lots"}, "finetune_epochs"),
        ({"finetune_lr": 0.0}, "finetune_lr"),
        ({"colour": 1}, "unknown option"),
    ],
)
def test_bad_options_raise_one_clear_error(options, message):
    with pytest.raises(HarnessError, match=message):
        DartsPT(**options)


def test_finetuning_trains_only_the_decided_op_on_a_decided_edge(tiny_context):
    net = _tiny_supernet()
    conv3, conv1 = OP_NAMES.index("nor_conv_3x3"), OP_NAMES.index("nor_conv_1x1")
    before = _state(net)
    finetune(net, tiny_context, {0: conv3}, steps=3, lr=0.05, train_alphas=False,
             cost=SelectionCost())  # fmt: skip
    after = net.state_dict()

    def moved(edge, op):
        prefix = f".edges.{edge}.ops.{op}."
        names = [n for n in before if prefix in n and n.endswith("weight")]
        assert names, prefix
        return any(not torch.equal(before[n], after[n]) for n in names)

    # Edge 0 is one-hot on conv3x3 in every forward: its conv1x1 gets no gradient (and
    # so no weight decay); the conv3x3 it kept trains, as does conv1x1 on undecided edge 1.
    assert not moved(0, conv1)
    assert moved(0, conv3)
    assert moved(1, conv1)
    assert torch.equal(before["alphas"], after["alphas"])  # train_alphas=False
