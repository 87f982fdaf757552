"""shapley (selection) and shapley-nas (algorithm): the estimator against exact Shapley
values, the reference's truncation, valid cells in every space, seeds, training."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from planted import SIGNAL_EDGE, SIGNAL_OP, SKIP, planted_data, planted_supernet

from harness.config import DataSettings, SpaceSettings
from harness.errors import HarnessError
from harness.experiment import build_config
from harness.search_data import make_search_data
from harness.store import RunStore
from harness.training import train_supernet
from methods.selection.base import SelectionContext, SelectionCost
from methods.selection.magnitude import Magnitude
from methods.selection.shapley import (
    Shapley,
    SupernetGame,
    estimate_shapley,
    first_batches,
    shapley_values,
)
from methods.supernet import get_algorithm
from methods.supernet.shapley_nas import reference_bn_mode, standardised
from spaces import make_space
from spaces.darts.genotype import STEPS, check_genotype, parse_genotype
from spaces.nb201 import OP_NAMES, NB201Space, NB201Supernet, decode

NONE = OP_NAMES.index("none")


def exact_shapley(value_of, n: int) -> np.ndarray:
    """The Shapley values of the game ``value_of(present players)``, by the subset formula."""
    phi = np.zeros(n)
    for i in range(n):
        others = [p for p in range(n) if p != i]
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for subset in itertools.combinations(others, size):
                phi[i] += weight * (value_of({*subset, i}) - value_of(set(subset)))
    return phi


def test_every_permutation_without_truncation_gives_the_exact_shapley_values():
    n = 4
    table = np.random.default_rng(0).uniform(0, 1, size=2**n)

    def value_of(present):  # any set function: interactions included
        return table[sum(1 << p for p in present)]

    def accuracy(sample, removed):
        return value_of({p for p in range(n) if not removed[p]})

    permutations = list(itertools.permutations(range(n)))
    estimate = estimate_shapley(accuracy, permutations, threshold=0.0)
    exact = exact_shapley(value_of, n)
    assert estimate.mean == pytest.approx(exact, abs=1e-12)
    assert exact.sum() == pytest.approx(value_of(set(range(n))) - value_of(set()))
    # The reference's value is mean - population std of the contributions.
    assert estimate.value == pytest.approx(exact - estimate.contributions.std(axis=1, ddof=0))
    assert estimate.removed == (n,) * len(permutations)


def _tiny_data(arrays, images=32, batch_size=16):
    return make_search_data(
        DataSettings(resolution=8, images_per_split=images), arrays, seed=0, batch_size=batch_size
    )


def test_the_supernet_game_removes_weights_without_renormalising(tiny_arrays):
    torch.manual_seed(0)
    net = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1)
    with torch.no_grad():
        net.alphas.normal_(0, 1)
    weights = net.mixing_weights().detach()
    batches = first_batches(_tiny_data(tiny_arrays).alpha_eval, 0, 2)
    players = [(3, 1), (3, 2), (3, 3)]  # three ops of one edge; the rest of W stays mixed

    def value_of(present):
        w = weights.clone()
        for p, (e, k) in enumerate(players):
            if p not in present:
                w[e, k] = 0.0  # zeroed, the edge's other weights as they were
        net.eval()
        with torch.no_grad():
            hits = sum((net(x, w).argmax(1) == y).sum().item() for x, y in batches)
        return hits / sum(len(y) for _, y in batches)

    cost = SelectionCost()
    game = SupernetGame(net, weights, players, lambda sample: batches, cost)
    permutations = list(itertools.permutations(range(3)))
    estimate = shapley_values(game, permutations, threshold=0.0, bn_mode="eval")
    assert estimate.mean == pytest.approx(exact_shapley(value_of, 3), abs=1e-12)
    assert cost.forward_passes == len(permutations) * 4 * len(batches)


def test_truncation_stops_where_the_reference_stops():
    # Accuracy by how many players are gone; threshold 0.5 of 0.8 is 0.4.
    script = [0.8, 0.7, 0.5, 0.4, 0.1, 0.0]
    calls = []

    def accuracy(sample, removed):
        calls.append(int(removed.sum()))
        return script[int(removed.sum())]

    order = [2, 0, 3, 1, 4]
    estimate = estimate_shapley(accuracy, [order, order], threshold=0.5)
    # 0.4 is not below 0.4 (strict); 0.1 is: that player's drop is recorded, then it stops.
    assert calls == [0, 1, 2, 3, 4] * 2
    assert estimate.removed == (4, 4)
    drops = {2: 0.1, 0: 0.2, 3: 0.1, 1: 0.3, 4: 0.0}  # player 4 never reached: 0
    for player, drop in drops.items():
        assert estimate.contributions[player] == pytest.approx([drop, drop])
    # The zeros of unreached players count in the mean and the std.
    mixed = estimate_shapley(accuracy, [order, [4, 0, 1, 2, 3]], threshold=0.5)
    assert mixed.contributions[4] == pytest.approx([0.0, 0.1])
    assert mixed.value[4] == pytest.approx(0.05 - 0.05)
    assert estimate_shapley(accuracy, [order], threshold=0.0).removed == (5,)


def test_shapley_finds_the_planted_convolution_that_magnitude_misses():
    net = planted_supernet()
    context = SelectionContext(data=planted_data(), seed=0)
    assert decode(Magnitude().select(net, context).arch)[SIGNAL_EDGE] == SKIP
    selection = Shapley(samples=3, num_batches=1).select(net, context)
    assert decode(selection.arch)[SIGNAL_EDGE] == SIGNAL_OP
    row = np.array(selection.scores[SIGNAL_EDGE])
    assert row[SIGNAL_OP] > 0 and row[SIGNAL_OP] > np.nanmax(np.delete(row, SIGNAL_OP))


def _space_supernet(name: str) -> torch.nn.Module:
    channels = 2 if name.startswith("darts") else 4
    settings = SpaceSettings(name=name, channels=channels, cells_per_stage=1)
    torch.manual_seed(0)
    net = make_space(settings).build_supernet(settings, num_classes=10)
    with torch.no_grad():
        net.alphas.normal_(0, 1)  # an uneven, trained-looking supernet
    return net


@pytest.mark.parametrize(
    "name", ["nb201", "nb201-s2", "darts", "darts-s1", "darts-s2", "darts-s3", "darts-s4"]
)
def test_valid_cells_in_every_space(name, tiny_arrays):
    net = _space_supernet(name)
    space = net.space
    data = _tiny_data(tiny_arrays, images=16, batch_size=16)
    # Train-mode BatchNorm: an untrained supernet in eval mode predicts one class whatever
    # is removed, so no permutation would truncate and the full DARTS space is slow.
    samples = 1 if name.startswith("darts") else 2
    method = Shapley(samples=samples, num_batches=1, bn_mode="train")
    selection = method.select(net, SelectionContext(data=data, seed=0))
    choices = space.decode(selection.arch)  # refuses an op outside an edge's candidates
    scores = np.array(selection.scores)
    active = net.active_ops.numpy().copy()
    if "none" in space.op_names:
        active[:, space.op_names.index("none")] = False  # not a player by default
    assert np.isfinite(scores[active]).all() and np.isnan(scores[~active]).all()
    if space.topology == "every-edge":
        assert choices == tuple(int(np.nanargmax(row)) for row in scores)
        return
    check_genotype(parse_genotype(selection.arch), space.op_names)  # two distinct inputs
    kept = [e for e, k in enumerate(choices) if k != space.none]
    assert len(kept) == 2 * 2 * STEPS
    for e in kept:
        assert choices[e] == int(np.nanargmax(scores[e]))
    assert selection.topology["rule"] == Shapley.topology_rule
    for group in space.node_inputs:  # the two kept inputs are the strongest of their node
        for inputs in group:
            strength = {e: selection.topology["importance"][e] for e in inputs}
            assert {e for e in inputs if e in kept} == set(
                sorted(inputs, key=lambda e: (-strength[e], e))[:2]
            )


def _without_time(selection):
    return dataclasses.replace(selection, cost=dataclasses.replace(selection.cost, wall_seconds=0))


def test_same_seed_same_selection_and_the_supernet_is_untouched(tiny_arrays):
    net = _space_supernet("nb201")
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    data = _tiny_data(tiny_arrays)
    options = {"samples": 3, "num_batches": 1, "bn_mode": "train"}
    first = Shapley(**options).select(net, SelectionContext(data=data, seed=5))
    again = Shapley(**options).select(net, SelectionContext(data=data, seed=5))
    other = Shapley(**options).select(net, SelectionContext(data=data, seed=6))
    assert _without_time(first).to_dict() == _without_time(again).to_dict()
    assert first.scores != other.scores
    assert net.training
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, before[name]), name  # running statistics too
    assert first.settings == {
        "method": "shapley", "samples": 3, "threshold": 0.5, "num_batches": 1,
        "scoring_data": "reshuffled", "bn_mode": "train", "none_player": False,
    }  # fmt: skip
    assert first.cost.forward_passes >= 3 * 2
    # As a player, none is worth exactly 0: taking it out changes no output.
    with_none = Shapley(**options, none_player=True).select(net, SelectionContext(data, 5))
    assert np.array(with_none.scores)[:, NONE] == pytest.approx(np.zeros(6), abs=0)


def test_the_shapley_step_standardises_each_group_with_momentum():
    values = np.array([[1.0, 2.0, np.nan], [3.0, 4.0, 5.0], [7.0, 7.0, 7.0]])
    z = standardised(values, [(0, 1), (2,)]).numpy()
    played = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    expected = (played - played.mean()) / played.std(ddof=1)  # torch's std: unbiased
    assert z[0, :2] == pytest.approx(expected[:2]) and z[1] == pytest.approx(expected[2:])
    assert z[0, 2] == 0.0 and (z[2] == 0.0).all()  # a non-player; a group without spread

    torch.manual_seed(0)
    config = build_config("smoke", {"train": {"epochs": 4}}, algorithm="shapley-nas")
    net = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1)
    algo = get_algorithm("shapley-nas")(net, config.train, config.algorithm_options)
    assert not net.active_ops[:, NONE].any()  # the reference's ops have no none
    shape = tuple(net.alphas.shape)
    values = np.random.default_rng(0).normal(size=shape)
    before = net.alphas.detach().clone().double()
    algo._step(values, seed=3)
    initial = 1e-3 * torch.randn(shape, generator=torch.Generator().manual_seed(3),
                                 dtype=torch.float64)  # fmt: skip
    accumulator = 0.8 * initial + 0.2 * standardised(values, net.space.edge_groups)
    assert torch.allclose(algo.accumulator, accumulator)
    assert torch.allclose(net.alphas.double(), before + 0.1 * accumulator, atol=1e-6)
    assert [reference_bn_mode(e) for e in (25, 26, 48, 49)] == ["eval", "train", "train", "eval"]


def test_settings_the_algorithm_refuses():
    with pytest.raises(HarnessError, match="no epoch is left"):
        build_config("smoke", algorithm="shapley-nas", algorithm_options={"pretrain_epochs": 2})
    with pytest.raises(HarnessError, match="algorithm.clip_alphas"):
        build_config("smoke", {"train": {"clip_scope": "all"}}, algorithm="shapley-nas",
                     algorithm_options={"clip_alphas": False})  # fmt: skip


def test_shapley_nas_trains_records_its_options_and_resumes_exactly(tmp_path, tiny_arrays):
    options = {"samples": 2, "num_batches": 1, "pretrain_epochs": 1}
    config = build_config(
        "smoke", {"train": {"epochs": 3, "checkpoint_every": 1}},
        algorithm="shapley-nas", algorithm_options=options,
    )  # fmt: skip
    outcome = train_supernet(config, 0, tmp_path / "straight", tiny_arrays, progress=False)
    settings = json.loads((outcome.run_dir / "settings.json").read_text())
    recorded = {
        "pretrain_epochs": 1, "samples": 2, "threshold": 0.5, "shapley_momentum": 0.8,
        "step_size": 0.1, "num_batches": 1, "bn_mode": "reference", "none_op": False,
        "clip_alphas": True, "accumulator_init": 1e-3,
    }  # fmt: skip
    assert settings["algorithm"]["options"] == recorded
    assert settings["config"]["algorithm_options"] == recorded  # hence in the run key
    assert settings["algorithm"]["weight_optimizer"]["clip_scope"] == "all"
    metrics = pd.read_csv(outcome.run_dir / "metrics.csv")
    assert list(metrics["shapley_step"]) == [0, 1, 1]
    run = RunStore(tmp_path / "straight", outcome.run_key)
    states = [run.load_checkpoint(e) for e in (1, 2, 3)]
    alphas = [s["model"]["alphas"] for s in states]
    assert alphas[0].abs().max() < 0.01  # pre-training leaves the 1e-3 x randn start
    assert not states[2]["model"]["active_ops"][:, NONE].any()
    # A Shapley epoch moves the alphas by step_size x the momentum buffer, nothing else.
    moved = alphas[2].double() - alphas[1].double()
    assert torch.allclose(moved, 0.1 * states[2]["algorithm"]["shapley_accumulator"], atol=1e-6)

    # Resumed from epoch 2 (accumulator and the alphas' clipped gradient restored), the
    # last epoch comes out bit-identical.
    train_supernet(config, 0, tmp_path / "partial", tiny_arrays, progress=False)
    partial = RunStore(tmp_path / "partial", outcome.run_key)
    partial.checkpoint_path(3).unlink()
    manifest = partial.manifest()
    del manifest[partial.checkpoint_path(3).name]
    partial.manifest_path.write_text(json.dumps(manifest))
    resumed = train_supernet(config, 0, tmp_path / "partial", tiny_arrays, progress=False)
    assert resumed.resumed_from == 2
    again = partial.load_checkpoint(3)
    for name, tensor in states[2]["model"].items():
        assert torch.equal(tensor, again["model"][name]), name
    assert torch.equal(
        states[2]["algorithm"]["shapley_accumulator"], again["algorithm"]["shapley_accumulator"]
    )
