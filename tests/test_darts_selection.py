"""Selection in the DARTS space: every method returns a valid genotype (two distinct inputs
per node), and the topology step keeps what each method's measurement says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from planted import planted_images

from harness.cli import main
from harness.data import Batches
from harness.search_data import SearchData
from methods.selection import SelectionContext, make_method
from methods.selection.base import SelectionCost
from methods.selection.progressive import EdgeScorer
from methods.selection.topology import prune_inputs
from spaces.darts.genotype import INPUTS, STEPS, check_genotype, parse_genotype
from spaces.darts.search import DartsSupernet
from spaces.darts.space import NODES, DartsSpace


def _data(batch_size: int = 16) -> SearchData:
    images, labels = planted_images(count=32, size=8)

    def batches(stream: int, augment: bool = False) -> Batches:
        return Batches(images, labels, batch_size, seed=stream, augment=augment)

    return SearchData(
        weight_batches=batches(1, True),
        alpha_batches=batches(2, True),
        weight_eval=batches(3),
        alpha_eval=batches(4),
        fingerprint="planted",
        num_classes=2,
    )


def _supernet(name: str) -> DartsSupernet:
    torch.manual_seed(0)
    net = DartsSupernet(DartsSpace(name), channels=2, layers=5, num_classes=2)
    with torch.no_grad():
        net.alphas.normal_()  # a trained-looking, uneven supernet
    return net


def _check(selection, space: DartsSpace) -> None:
    genotype = parse_genotype(selection.arch)
    check_genotype(genotype, space.op_names)  # two distinct earlier inputs per node
    choices = space.decode(selection.arch)  # every op a candidate of its edge
    assert sum(k != space.none for k in choices) == 2 * 2 * STEPS


SPACE_METHODS = [
    ("darts-s2", "magnitude"),
    ("darts-s2", "random"),
    ("darts-s2", "darts-pt[num_batches=1,finetune_epochs=0.5]"),
    ("darts-s2", "darts-pt[num_batches=1,edge_order=independent,finetune_epochs=0]"),
    ("darts-s2", "ostr[num_batches=1]"),
    ("darts-s2", "ostr[taylor,num_batches=1]"),
    ("darts-s2", "opp-loss[num_batches=1,edge_order=independent]"),
    ("darts-s4", "ostr[num_batches=1]"),
    ("darts-s1", "opp-loss[num_batches=1]"),
    ("darts", "magnitude"),
    ("darts", "ostr[taylor,num_batches=1,edge_order=independent]"),
]


@pytest.mark.parametrize("space_name,spec", SPACE_METHODS)
def test_every_method_returns_a_valid_genotype(space_name, spec):
    net = _supernet(space_name)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    selection = make_method(spec).select(net, SelectionContext(data=_data(), seed=3))
    _check(selection, net.space)
    assert selection.topology["rule"] == make_method(spec).topology_rule
    if not spec.startswith(("magnitude", "random")):
        topology = selection.topology
        # node 2 has two inputs; nodes 3, 4, 5 drop 1, 2, 3 of theirs, in both cells
        assert len(topology["dropped"]) == 12
        measured = [e for e, v in enumerate(topology["importance"]) if v is not None]
        assert measured == [e for e in range(28) if e % 14 not in (0, 1)]
        choices = net.space.decode(selection.arch)
        assert all(choices[e] == net.space.none for e in topology["dropped"])
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_progressive_selection_is_deterministic_and_seeded():
    method = make_method("ostr[taylor,num_batches=1]")
    runs = [method.select(_supernet("darts-s2"), SelectionContext(data=_data(), seed=s))
            for s in (0, 0, 1)]  # fmt: skip
    assert runs[0].arch == runs[1].arch and runs[0].topology == runs[1].topology
    assert runs[0].edge_order != runs[2].edge_order
    # one normal and one reduction edge per step, normal first
    assert [e < 14 for e in runs[0].edge_order[:4]] == [True, False, True, False]


def test_ostr_and_opp_loss_never_decide_an_op_to_none_in_the_darts_space():
    net = _supernet("darts")
    with torch.no_grad():
        net.alphas[:, net.space.none] = 10.0
    for spec in ("ostr[taylor,num_batches=1,edge_order=independent]", "magnitude"):
        selection = make_method(spec).select(net, SelectionContext(data=_data(), seed=0))
        _check(selection, net.space)
        if spec.startswith("ostr"):
            scores = np.array(selection.scores, dtype=float)
            assert np.isnan(scores[:, net.space.none]).all()


class ScriptedImportance(EdgeScorer):
    """Edge importance read from a table: the rule under test is the pruning, not a measure."""

    def __init__(self, table: dict[int, float]) -> None:
        self.table, self.calls = table, []

    def edge_importance(self, net, weights, edges):
        self.calls.append((list(edges), weights.clone()))
        return {e: self.table[e] for e in edges}


def test_pruning_keeps_the_two_most_needed_inputs_of_every_node():
    space = DartsSpace("darts-s2")
    net = _supernet("darts-s2")
    skip, sep = space.op_names.index("skip_connect"), space.op_names.index("sep_conv_3x3")
    decided = {e: sep for e in range(28)}
    table = {e: float(e % 5) for e in range(28)}  # node 5's inputs 9..13 -> 4, 0, 1, 2, 3
    table[5] = table[6] = table[7] = 1.0  # node 4 (edges 5..8): a three-way tie, then 8
    scorer = ScriptedImportance(table)
    choices, record = prune_inputs(
        net, SelectionContext(data=_data(), seed=0), SelectionCost(), scorer, decided,
        "sequential", 0, 0.0025, True,
    )  # fmt: skip
    kept = {node: [e for e in edges if choices[e] != space.none] for node, edges in NODES.items()}
    assert kept[INPUTS] == [0, 1]
    assert kept[3] == [3, 4]  # importances 2, 3, 4: edge 2 drops
    assert kept[4] == [5, 8]  # 1, 1, 1, 3: among equals the later edges go (7, then 6)
    assert kept[5] == [9, 13]  # 4, 0, 1, 2, 3
    assert record["node_order"][:3] == [[2, 3, 4], [16, 17, 18], [5, 6, 7, 8]]
    assert sorted(record["dropped"]) == record["dropped"] and len(record["dropped"]) == 12
    # earlier nodes' drops feed nothing when later nodes are measured (sequential order)
    last_weights = scorer.calls[-1][1]
    assert last_weights[2, space.none] == 1 and last_weights[2].sum() == 1
    assert all(choices[e] == sep for node in kept.values() for e in node)
    assert skip not in choices


def test_a_kept_edge_decided_to_none_takes_its_first_other_candidate():
    space = DartsSpace("darts")
    net = _supernet("darts")
    decided = {e: space.none for e in range(28)}
    scorer = ScriptedImportance({e: float(e) for e in range(28)})
    choices, _ = prune_inputs(
        net, SelectionContext(data=_data(), seed=0), SelectionCost(), scorer, decided,
        "random", 0, 0.0025, True,
    )  # fmt: skip
    kept = [k for k in choices if k != space.none]
    assert len(kept) == 16 and set(kept) == {space.op_names.index("max_pool_3x3")}


@pytest.mark.parametrize("algorithm", ["darts-2nd", "lambda-darts", "opp-darts",
                                       "darts-fixed-alpha"])  # fmt: skip
def test_every_supernet_algorithm_trains_in_the_darts_space(tmp_path, run_args, algorithm):
    args = run_args("--space", "darts-s2", "--algorithm", algorithm, "--epochs", "2",
                    "--seeds", "0", "--methods", "magnitude", "--threads", "1",
                    "--set", "space.channels=2", "--set", "data.images_per_split=64")  # fmt: skip
    assert main(args) == 0
    records = pd.read_parquet(tmp_path / "results" / "records.parquet")
    assert set(records["space"]) == {"darts-s2"} and set(records["algorithm"]) == {algorithm}
    assert set(records["fidelity"]) == {"not-retrained"}


def test_records_never_claim_a_compute_setting_the_darts_supernet_cannot_run():
    from harness.errors import HarnessError
    from harness.experiment import build_config
    from harness.keys import run_key

    darts = {"space": {"name": "darts-s3"}}
    config = build_config("smoke", darts)
    # fused cells by default (issue 28), in the default memory format
    assert (config.compute.cell, config.compute.channels_last) == ("fused", False)
    assert build_config("smoke").compute.cell == "fused"
    # The op-by-op cell when asked for ...
    reference = build_config("smoke", {**darts, "compute": {"cell": "reference"}})
    assert reference.compute.cell == "reference"
    # ... under a key of its own: stores of one are never reused for the other
    assert run_key(reference, 0, "data") != run_key(config, 0, "data")
    for asked in ({"channels_last": True}, {"autocast": "bf16"}, {"compile": True}):
        with pytest.raises(HarnessError, match="space darts-s3 cannot run compute"):
            build_config("smoke", {**darts, "compute": asked})
