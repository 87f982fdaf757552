"""opp-loss: the OPP-DARTS criterion (largest training loss) applied as a selection rule."""

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
from methods.selection.base import SelectionContext, SelectionCost, edge_order
from methods.selection.magnitude import Magnitude
from methods.selection.opp_loss import OppLoss
from methods.selection.progressive import remove_op
from methods.selection.scoring import measure
from spaces.nb201 import NUM_EDGES, OP_NAMES, NB201Space, NB201Supernet, decode


def _context(seed=0, data=None):
    return SelectionContext(data=data or planted_data(), seed=seed)


def _swapped(batches: Batches, seed: int) -> Batches:
    """The same images with the two planted classes' labels exchanged."""
    return Batches(batches.images, 1 - batches.labels, batches.batch_size, seed, augment=False)


@pytest.mark.parametrize("order, seed", [("random", 1), ("sequential", 0), ("independent", 0)])
def test_opp_loss_keeps_the_op_the_training_fit_relies_on(order, seed):
    net = planted_supernet()
    assert decode(Magnitude().select(net, _context()).arch)[SIGNAL_EDGE] == SKIP
    # Seed 1 decides 3<-0 last. Robust in any order: 3<-0 is a direct input-to-output edge,
    # so while it is undecided its mixed skip carries the signal through every later cell
    # whatever the earlier decisions; removing its conv always drops the fit to chance (ln 2),
    # removing any other op only rescales the signal (a change below 1e-6).
    assert edge_order(1, list(range(NUM_EDGES)))[-1] == SIGNAL_EDGE
    selection = OppLoss(edge_order=order, num_batches=2).select(net, _context(seed=seed))
    assert decode(selection.arch)[SIGNAL_EDGE] == SIGNAL_OP
    row = np.array(selection.scores[SIGNAL_EDGE])
    assert row[SIGNAL_OP] > 0.5
    assert np.abs(np.delete(row, SIGNAL_OP)).max() < 1e-4


def test_scores_are_training_loss_increases_on_removal():
    net = planted_supernet()
    data = planted_data()
    selection = OppLoss(edge_order="independent").select(net, _context(data=data))
    weights = net.mixing_weights().detach()
    base = measure(net, weights, data.weight_eval, None, SelectionCost()).loss
    for e in range(NUM_EDGES):
        for k in range(len(OP_NAMES)):
            removed = measure(
                net, remove_op(weights, e, k), data.weight_eval, None, SelectionCost()
            )
            assert selection.scores[e][k] == pytest.approx(removed.loss - base, abs=1e-12)
    assert selection.scores[SIGNAL_EDGE][SIGNAL_OP] == pytest.approx(math.log(2) - base, abs=1e-3)


def test_remove_op_zeroes_one_weight_without_renormalising():
    weights = planted_supernet().mixing_weights().detach()
    removed = remove_op(weights, SIGNAL_EDGE, SKIP)
    assert removed[SIGNAL_EDGE, SKIP] == 0.0
    changed = torch.zeros_like(weights, dtype=torch.bool)
    changed[SIGNAL_EDGE, SKIP] = True
    assert torch.equal(removed[~changed], weights[~changed])
    assert weights[SIGNAL_EDGE, SKIP] > 0  # the caller's matrix is untouched


def test_criterion_reads_the_training_split():
    data = planted_data()
    # Wrong validation labels change nothing; wrong training labels make the conv the op
    # whose removal lowers the training loss most, so it is the one op never kept there.
    valid_swapped = dataclasses.replace(data, alpha_eval=_swapped(data.alpha_eval, 4))
    train_swapped = dataclasses.replace(data, weight_eval=_swapped(data.weight_eval, 3))
    method = OppLoss(edge_order="independent", num_batches=1)
    kept = decode(method.select(planted_supernet(), _context(data=valid_swapped)).arch)
    assert kept[SIGNAL_EDGE] == SIGNAL_OP
    flipped = method.select(planted_supernet(), _context(data=train_swapped))
    assert decode(flipped.arch)[SIGNAL_EDGE] != SIGNAL_OP
    assert flipped.scores[SIGNAL_EDGE][SIGNAL_OP] < -1.0


def test_cost_counts_a_baseline_per_decision_and_a_removal_per_active_op():
    net = planted_supernet()
    with torch.no_grad():
        net.active_ops[:, OP_NAMES.index("none")] = False
    active = int(net.active_ops.sum())
    progressive = OppLoss(num_batches=2).select(net, _context())
    # Unlike ostr, the decided one-hot matrix is never a removal candidate: a fresh baseline.
    assert progressive.cost.forward_passes == (NUM_EDGES + active) * 2
    assert progressive.cost.backward_passes == 0
    assert np.isnan(np.array(progressive.scores)[:, OP_NAMES.index("none")]).all()
    independent = OppLoss(edge_order="independent", num_batches=2).select(net, _context())
    assert independent.cost.forward_passes == (1 + active) * 2


def test_caller_untouched_deterministic_and_fine_tunes_on_request(tiny_arrays):
    data = make_search_data(
        DataSettings(resolution=8, images_per_split=64), tiny_arrays, seed=0, batch_size=32
    )
    torch.manual_seed(0)
    net = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    method = OppLoss(num_batches=1, finetune_epochs=0.5)  # one step between decisions
    first = method.select(net, _context(seed=5, data=data))
    second = method.select(net, _context(seed=5, data=data))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    for selection in (first, second):
        selection.cost.wall_seconds = 0.0
    assert first.to_dict() == second.to_dict()
    assert first.edge_order == edge_order(5, list(range(NUM_EDGES)))
    assert first.cost.finetune_steps == NUM_EDGES - 1
    assert OppLoss().select(net, _context(seed=5, data=data)).cost.finetune_steps == 0


def test_names_settings_and_bad_options():
    assert OppLoss().display_name == "opp-loss"
    assert OppLoss(edge_order="sequential").display_name == "opp-loss[sequential]"
    assert OppLoss(num_batches=4).display_name == "opp-loss[num_batches=4]"
    assert OppLoss().settings() == {
        "method": "opp-loss",
        "edge_order": "random",
        "num_batches": None,
        "bn_mode": "train",
        "finetune_epochs": 0.0,
        "finetune_lr": 0.0025,
        "candidate_batch": 1,
    }
    for options, message in (
        ({"edge_order": "backwards"}, "edge_order"),
        ({"num_batches": 0}, "num_batches"),
        ({"bn_mode": "frozen"}, "bn_mode"),
        ({"split": "valid"}, "unknown option"),  # the criterion is the training loss
        ({"edge_order": "independent", "finetune_epochs": 1.0}, "independent"),
    ):
        with pytest.raises(HarnessError, match=message):
            OppLoss(**options)
