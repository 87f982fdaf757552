"""Selection protocol, registry and the simple methods (magnitude, random, oracle)."""

import math

import numpy as np
import pytest
import torch
from planted import SIGNAL_EDGE, SIGNAL_OP, SKIP, planted_data, planted_supernet

from harness.errors import HarnessError
from harness.ground_truth import GroundTruth
from methods.selection import Selection, SelectionContext, make_method, parse_method_list
from methods.selection.base import SelectionCost
from methods.selection.scoring import measure
from spaces.nb201 import OP_NAMES, NB201Space, decode


def _context(seed=0, ground_truth=None):
    return SelectionContext(data=planted_data(), seed=seed, ground_truth=ground_truth)


def test_planted_supernet_carries_its_signal_through_one_convolution():
    net = planted_supernet()
    data = planted_data()
    cost = SelectionCost()
    full = measure(net, net.mixing_weights().detach(), data.alpha_eval, None, cost)
    assert full.accuracy == 1.0
    removed = net.mixing_weights().detach().clone()
    removed[SIGNAL_EDGE, SIGNAL_OP] = 0.0
    assert measure(net, removed, data.alpha_eval, None, cost).accuracy == 0.5
    assert cost.forward_passes == 2 * len(data.alpha_eval)


def test_magnitude_picks_the_largest_alpha():
    selection = make_method("magnitude").select(planted_supernet(), _context())
    assert decode(selection.arch) == (SKIP,) * 6
    assert selection.method == "magnitude"
    assert selection.settings == {"method": "magnitude", "exclude_none": False}
    assert selection.cost.forward_passes == 0


def test_magnitude_none_handling_is_an_option():
    net = planted_supernet()
    with torch.no_grad():
        net.alphas[0, OP_NAMES.index("none")] = 5.0
    assert decode(make_method("magnitude").select(net, _context()).arch)[0] == 0
    no_none = make_method("magnitude[no-none]")
    assert no_none.display_name == "magnitude[no-none]"
    selection = no_none.select(net, _context())
    assert decode(selection.arch)[0] == SKIP
    assert selection.settings["exclude_none"] is True


def test_random_is_seeded_per_seed():
    method = make_method("random")
    a = method.select(planted_supernet(), _context(seed=3))
    b = method.select(planted_supernet(), _context(seed=3))
    c = [method.select(planted_supernet(), _context(seed=s)).arch for s in range(10)]
    assert a.arch == b.arch
    assert len(set(c)) > 5
    assert all(math.isnan(v) for row in a.scores for v in row)


def test_oracle_reads_the_best_cell(ground_truth_csv):
    truth = GroundTruth.from_csv(ground_truth_csv)
    selection = make_method("oracle").select(planted_supernet(), _context(ground_truth=truth))
    assert selection.upper_bound
    assert truth.accuracy(selection.arch) == pytest.approx(94.37, abs=0.01)
    with pytest.raises(HarnessError, match="ground truth"):
        make_method("oracle").select(planted_supernet(), _context())


def test_selection_round_trips_through_json():
    selection = make_method("random").select(planted_supernet(), _context())
    again = Selection.from_dict(selection.to_dict())
    assert again.arch == selection.arch and again.cost == selection.cost
    assert math.isnan(again.scores[0][0])


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nope", "unknown selection method 'nope'"),
        ("magnitude[bogus]", "unknown variant 'bogus'"),
        ("magnitude[colour=1]", "unknown option"),
        ("magnitude[[", "cannot read method"),
    ],
)
def test_bad_method_specs_raise_one_clear_error(spec, message):
    with pytest.raises(HarnessError, match=message):
        make_method(spec)


def test_method_lists():
    methods = parse_method_list("magnitude,magnitude[exclude_none=true],random")
    assert [m.display_name for m in methods] == ["magnitude", "magnitude[no-none]", "random"]
    assert {m.name for m in parse_method_list("all")} >= {"magnitude", "random", "oracle"}
    with pytest.raises(HarnessError, match="twice"):
        parse_method_list("random,random")


@pytest.mark.parametrize("spec", ["magnitude", "darts-pt", "ostr", "ostr[taylor]", "opp-loss",
                                  "random", "oracle"])  # fmt: skip
def test_every_method_is_deterministic_and_leaves_the_supernet_alone(spec, tiny_arrays,
                                                                     ground_truth_csv):  # fmt: skip
    from harness.config import DataSettings
    from harness.presets import SELECTION_DEFAULTS
    from harness.search_data import make_search_data
    from spaces.nb201 import NB201Supernet

    torch.manual_seed(0)
    net = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    data = make_search_data(DataSettings(resolution=8, images_per_split=64), tiny_arrays, 0, 32)
    truth = GroundTruth.from_csv(ground_truth_csv)
    method = make_method(spec, SELECTION_DEFAULTS["smoke"])
    runs = []
    for _ in range(2):
        context = SelectionContext(data=data, seed=3, ground_truth=truth)
        runs.append(method.select(net, context))
    a, b = runs
    assert (a.arch, a.edge_order, a.settings) == (b.arch, b.edge_order, b.settings)
    np.testing.assert_array_equal(np.array(a.scores), np.array(b.scores))  # NaNs compare equal
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, before[name]), name
