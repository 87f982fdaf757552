"""Op-subset spaces on NAS-Bench-201: supernets, methods, oracle, ground truth, settings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harness.cli import main
from harness.config import DataSettings, SpaceSettings
from harness.errors import HarnessError
from harness.experiment import build_config
from harness.ground_truth import GroundTruth
from harness.search_data import make_search_data
from harness.store import RunStore
from methods.selection import SELECTION_METHODS, SelectionContext, make_method
from spaces import make_space
from spaces.base import NotACandidate
from spaces.nb201 import OP_NAMES, NB201Space, NB201Supernet
from spaces.nb201.space import NAMED_SUBSETS, S1_PAIRS, nb201_space, strongest_pairs

NAMES = {name: OP_NAMES.index(name) for name in OP_NAMES}
PER_EDGE = "nor_conv_3x3,skip_connect;none,avg_pool_3x3;nor_conv_1x1;skip_connect,nor_conv_3x3;none,nor_conv_3x3,avg_pool_3x3;skip_connect"  # noqa: E501
SPACES = [
    SpaceSettings(name="nb201-s1"),
    SpaceSettings(name="nb201-s2"),
    SpaceSettings(name="nb201-s3"),
    SpaceSettings(name="nb201", edge_ops=PER_EDGE),
]


def _tiny(settings: SpaceSettings) -> SpaceSettings:
    return SpaceSettings(
        name=settings.name, ops=settings.ops, edge_ops=settings.edge_ops,
        channels=4, cells_per_stage=1,
    )  # fmt: skip


def _supernet(settings: SpaceSettings, seed: int = 0) -> NB201Supernet:
    torch.manual_seed(seed)
    return make_space(settings).build_supernet(_tiny(settings), num_classes=10)


@pytest.mark.parametrize(
    "settings", SPACES, ids=lambda s: s.name + ("+edges" if s.edge_ops else "")
)
def test_subset_supernet_only_builds_and_mixes_its_candidate_ops(settings):
    space = make_space(settings)
    net = _supernet(settings)
    mask = torch.from_numpy(space.candidate_mask)
    assert torch.equal(net.active_ops, mask)
    weights = net.mixing_weights()
    assert torch.all(weights[~mask] == 0) and torch.all(weights[mask] > 0)
    assert torch.allclose(weights.sum(dim=1), torch.ones(space.num_edges))
    for cell in net.search_cells():
        for e, edge in enumerate(cell.edges):
            for k, module in enumerate(edge.ops):
                assert isinstance(module, NotACandidate) == (k not in space.candidates[e])
    # No parameter of an op outside the space exists, so none is trained or decayed.
    full = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1, num_classes=10)
    missing = set(full.state_dict()) - set(net.state_dict())
    assert missing and all(
        int(name.split(".")[5]) not in space.candidates[int(name.split(".")[3])] for name in missing
    )
    assert set(net.state_dict()) <= set(full.state_dict())


def test_a_diverged_alpha_never_runs_an_op_outside_the_space():
    # A NaN alpha spreads over its softmax row; ops outside the candidates still get
    # exactly 0, so the forward gives NaN logits (the training loop's one-sentence stop)
    # instead of calling a placeholder op.
    settings = SpaceSettings(name="nb201-s2", channels=4, cells_per_stage=1)
    space = make_space(settings)
    net = _supernet(settings)
    with torch.no_grad():
        net.alphas[0, space.candidates[0][0]] = float("nan")
    weights = net.mixing_weights()
    mask = torch.from_numpy(space.candidate_mask)
    assert torch.all(weights[~mask] == 0)
    assert torch.isnan(weights[0, list(space.candidates[0])]).all()
    logits = net(torch.randn(2, 3, 8, 8))
    assert torch.isnan(logits).any()


def test_subset_supernet_equals_the_full_supernet_with_the_other_ops_weighted_zero():
    settings = SpaceSettings(name="nb201-s3")
    full = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1, num_classes=10)
    subset = _supernet(settings)
    subset.load_state_dict(
        {k: v for k, v in full.state_dict().items() if k in subset.state_dict()}
        | {"alphas": full.alphas.detach(), "active_ops": subset.active_ops}  # fmt: skip
    )
    x = torch.randn(6, 3, 8, 8)
    weights = subset.mixing_weights().detach()
    full.eval(), subset.eval()
    assert torch.allclose(subset(x), full(x, weights), atol=1e-6)
    # The alphas of ops outside the space get no gradient.
    loss = subset(x).logsumexp(dim=1).mean()
    loss.backward()
    assert torch.all(subset.alphas.grad[~subset.active_ops] == 0)


def _context(seed, truth):
    data = make_search_data(DataSettings(resolution=8, images_per_split=64), _arrays(), seed, 16,
                            "cpu")  # fmt: skip
    return SelectionContext(data=data, seed=seed, ground_truth=truth)


def _arrays():
    from conftest import make_arrays

    return make_arrays(train=200, test=20, size=8)


SPECS = [
    "magnitude", "magnitude[no-none]", "darts-pt[finetune_epochs=0.25,num_batches=1]",
    "darts-pt[fix-alpha,finetune_epochs=0.25,num_batches=1]", "ostr[num_batches=1]",
    "ostr[no-none,num_batches=1]", "ostr[taylor,num_batches=1]",
    "ostr[greedy,num_batches=1]", "ostr[candidate_batch=4,num_batches=1]",
    "opp-loss[num_batches=1]", "shapley[samples=2,num_batches=1,bn_mode=train]",
    "zc-pt[pool_size=1,validate_rounds=1]", "random", "oracle",
]  # fmt: skip


@pytest.mark.parametrize(
    "settings", SPACES, ids=lambda s: s.name + ("+edges" if s.edge_ops else "")
)
def test_every_method_returns_a_cell_inside_the_space(settings, ground_truth_csv):
    assert {s.split("[")[0] for s in SPECS} == set(SELECTION_METHODS)  # every registered one
    truth = GroundTruth.from_csv(ground_truth_csv)
    space = make_space(settings)
    for seed in (0, 1):
        net = _supernet(settings, seed)
        with torch.no_grad():  # alphas that favour ops the space leaves out, where it can
            net.alphas.normal_(0, 1)
            net.alphas[:, NAMES["nor_conv_1x1"]] += 5
        for spec in SPECS:
            selection = make_method(spec).select(net, _context(seed, truth))
            choices = space.decode(selection.arch)
            assert space.contains(choices), (spec, selection.arch)
            scores = np.asarray(selection.scores)
            assert np.isnan(scores[~space.candidate_mask]).all(), spec


@pytest.mark.parametrize("name", sorted(NAMED_SUBSETS))
def test_oracle_is_the_best_cell_inside_the_space(name, ground_truth_csv):
    truth = GroundTruth.from_csv(ground_truth_csv)
    space = nb201_space(name)
    cells = list(space.cells())
    assert len(cells) == space.num_cells == len(set(cells))
    best = max(truth.accuracy(c) for c in cells)
    net = _supernet(SpaceSettings(name=name))
    arch = make_method("oracle").select(net, _context(0, truth)).arch
    assert space.contains(space.decode(arch))
    assert truth.accuracy(arch) == best
    assert best <= truth.best()[2]


def test_ground_truth_of_a_subset_run_is_the_full_tables(run_args, ground_truth_csv):
    methods = "magnitude,ostr,random,oracle"
    assert (
        main(
            run_args("--space", "nb201-s3", "--methods", methods, "--seeds", "0", "--threads", "1")
        )
        == 0
    )
    results = Path(run_args()[run_args().index("--results") + 1])
    truth = GroundTruth.from_csv(ground_truth_csv)
    space = nb201_space("nb201-s3")
    records = pd.read_parquet(results / "records.parquet")
    assert set(records["space"]) == {"nb201-s3"}
    for row in records.itertuples():
        assert space.contains(space.decode(row.arch))
        expected = truth.accuracy(row.arch, row.dataset, row.metric, int(row.fidelity[:-2]))
        assert row.accuracy == expected or (math.isnan(row.accuracy) and math.isnan(expected))
        assert row.benchmark_index == truth.index_of(row.arch)
    selections = pd.read_parquet(results / "selections.parquet")
    for row in selections.itertuples():
        importance = np.asarray(json.loads(row.gt_importance), dtype=float)
        assert np.isnan(importance[~space.candidate_mask]).all()
        assert not np.isnan(importance[space.candidate_mask]).any()
    # The training record has only the candidate ops' weights.
    (run_dir,) = (results / "runs").iterdir()
    metrics = pd.read_csv(run_dir / "metrics.csv")
    weight_columns = [c for c in metrics.columns if c.startswith("w[")]
    assert len(weight_columns) == int(space.candidate_mask.sum()) == 18
    assert not any("nor_conv_1x1" in c or "avg_pool_3x3" in c for c in weight_columns)


def test_space_settings_have_one_canonical_spelling_and_key():
    def key(**space):
        return build_config("smoke", {"space": space}).to_dict()["space"]

    assert key() == key(ops=",".join(OP_NAMES)) == key(edge_ops=";".join([",".join(OP_NAMES)] * 6))
    assert "ops" not in key()  # the full space records as it did before spaces were a setting
    assert key(ops="nor_conv_3x3, skip_connect") == key(ops="skip_connect,nor_conv_3x3")
    assert key(edge_ops=";".join(["skip_connect,nor_conv_3x3"] * 6)) == key(
        ops="skip_connect,nor_conv_3x3"
    )
    assert key(ops="skip_connect,nor_conv_3x3") != key(name="nb201-s2")  # named apart
    assert key(name="nb201-s2") != key(name="nb201-s3") != key()
    assert make_space(SpaceSettings(ops="skip_connect,nor_conv_3x3")).label == (
        "nb201[skip_connect,nor_conv_3x3]"
    )


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"name": "nb201-s9"}, "unknown search space 'nb201-s9'; available: nb201, nb201-s1"),
        ({"ops": "skip_connect,conv_7x7"}, "'conv_7x7' is not a NAS-Bench-201 op"),
        ({"ops": "skip_connect,skip_connect"}, "names an op twice"),
        ({"edge_ops": "skip_connect;none"}, "has 2 set.* 6 edges"),
        ({"name": "nb201-s2", "ops": "none"}, "nb201-s2 fixes its candidate ops"),
        ({"ops": "none", "edge_ops": ";".join(["none"] * 6)}, "not both"),
        ({"ops": 3}, "space.ops must be text or none"),
    ],
)
def test_bad_space_settings_are_one_sentence(space, message):
    with pytest.raises(HarnessError, match=message):
        build_config("smoke", {"space": space})


def test_bad_space_on_the_command_line_exits_before_any_work(run_args, capsys, tmp_path):
    code = main(
        run_args("--space", "nb201", "--set", "space.ops=skip,conv", "--methods", "magnitude")
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'skip', 'conv' is not a NAS-Bench-201 op" in err
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def test_a_cell_outside_the_space_is_refused_by_name():
    space = nb201_space("nb201-s2")
    with pytest.raises(HarnessError, match="edge 1<-0 holds nor_conv_1x1, but its candidates"):
        space.encode((NAMES["nor_conv_1x1"],) + (NAMES["skip_connect"],) * 5)
    net = _supernet(SpaceSettings(name="nb201-s2"))
    with pytest.raises(HarnessError, match="not in space nb201-s2"):
        space.discrete_from_supernet(net, (NAMES["none"],) * 6)
    inside = (NAMES["nor_conv_3x3"],) * 6
    network = space.discrete_from_supernet(net, inside)
    assert network(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_s1_pairs_follow_their_documented_rule():
    # Mean softmax weights at epoch 30 of the proxy darts runs, seeds 0-4 (spaces/nb201/space.py).
    recorded = {  # skip, conv1x1, conv3x3, pool
        "1<-0": (.1986, .1995, .2199, .1783), "2<-0": (.2048, .2033, .2129, .1881),
        "2<-1": (.2008, .1976, .2068, .1918), "3<-0": (.2204, .1983, .2012, .1993),
        "3<-1": (.2065, .2015, .1965, .1952), "3<-2": (.2148, .1937, .1909, .2002),
    }  # fmt: skip
    weights = np.array([[0.25, *row] for row in recorded.values()])  # none weighs most: ignored
    assert strongest_pairs(weights) == S1_PAIRS
    space = nb201_space("nb201-s1")
    assert all(len(c) == 2 and NAMES["none"] not in c for c in space.candidates)


def test_opp_darts_grows_through_the_space_ops_and_refuses_per_edge_sets(tmp_path, tiny_arrays):
    from harness.training import train_supernet

    config = build_config(
        "smoke", {"space": {"name": "nb201-s3"}, "train": {"epochs": 4}}, algorithm="opp-darts"
    )
    outcome = train_supernet(config, 0, tmp_path, tiny_arrays, progress=False)
    state = torch.load(RunStore(tmp_path, outcome.run_key).checkpoint_path(4), weights_only=False)
    admitted = state["algorithm"]["admitted"]
    s3 = [NAMES[n] for n in ("none", "skip_connect", "nor_conv_3x3")]
    assert admitted == [NAMES["nor_conv_3x3"], NAMES["none"], NAMES["skip_connect"]]
    assert sorted(admitted) == s3
    with pytest.raises(HarnessError, match="different candidate ops per edge"):
        build_config("smoke", {"space": {"name": "nb201-s1"}}, algorithm="opp-darts")
    with pytest.raises(HarnessError, match="has no skip_connect"):
        build_config("smoke", {"space": {"ops": "none,nor_conv_3x3"}}, algorithm="opp-darts",
                     algorithm_options={"skip_epoch": 3})  # fmt: skip
    with pytest.raises(HarnessError, match="starts from a parametric op"):
        build_config("smoke", {"space": {"ops": "none,skip_connect"}}, algorithm="opp-darts")
