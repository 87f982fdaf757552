"""Published numbers: keyed by (algorithm, protocol, method variant, dataset), shown only
on the row of exactly that protocol."""

from __future__ import annotations

import itertools
import json
import math

import pandas as pd
import pytest

from harness.experiment import build_config, protocol_of
from harness.presets import PUBLISHED_PROTOCOL_PRESETS
from harness.report.published import BEST_CELL, DATASETS, PUBLISHED, reference_for
from harness.report.tables import paper_table

ALGORITHMS = ("darts", "darts-2nd", "darts-fixed-alpha", "lambda-darts", "opp-darts")
METHODS = (
    ("magnitude", "magnitude"),
    ("darts-pt", "darts-pt"),
    ("darts-pt", "darts-pt[fix-alpha]"),
    ("ostr", "ostr"),
    ("opp-loss", "opp-loss"),
)


def test_every_number_is_on_its_own_row_and_nowhere_else():
    expected = {(p.algorithm, p.preset, p.method, p.dataset): p.accuracy for p in PUBLISHED}
    shown = 0
    for algorithm, preset, (name, method) in itertools.product(
        ALGORITHMS, (*PUBLISHED_PROTOCOL_PRESETS, None), METHODS
    ):
        reference = reference_for(algorithm, preset, name, method, False)
        for dataset, value in zip(DATASETS, reference.accuracy, strict=True):
            wanted = expected.get((algorithm, preset, method, dataset))
            if wanted is None:
                assert math.isnan(value), (algorithm, preset, method, dataset)
            else:
                assert value == wanted
                shown += 1
    assert shown == len(PUBLISHED)
    # The four DESIGN.md protocols, spot-checked.
    assert reference_for("darts", "xautodl", "magnitude", "magnitude", False).accuracy == (
        54.30, 15.61, 16.32,
    )  # fmt: skip
    assert reference_for("darts", "paper", "darts-pt", "darts-pt", False).accuracy[0] == 88.11
    fixed = reference_for("darts-fixed-alpha", "paper", "darts-pt", "darts-pt[fix-alpha]", False)
    assert fixed.accuracy[0] == 93.80
    assert reference_for("lambda-darts", "paper", "magnitude", "magnitude", False).accuracy[
        1
    ] == pytest.approx(73.51)


def test_a_row_of_another_protocol_says_where_the_number_belongs():
    on_trained = reference_for("darts", "paper", "darts-pt", "darts-pt[fix-alpha]", False)
    assert math.isnan(on_trained.accuracy[0])
    assert "darts-fixed-alpha with preset paper" in on_trained.source
    proxy = reference_for("darts", None, "magnitude", "magnitude", False)
    assert "darts with preset xautodl" in proxy.source
    # The option spelling of the fix-alpha variant is the same variant.
    spelled = reference_for(
        "darts-fixed-alpha", "paper", "darts-pt", "darts-pt[fix_alpha=True]", False
    )
    assert spelled.accuracy[0] == 93.80


def test_the_oracle_row_gets_the_benchmark_maximum_under_any_protocol():
    for preset in (*PUBLISHED_PROTOCOL_PRESETS, None):
        assert reference_for("opp-darts", preset, "oracle", "oracle", True).accuracy == BEST_CELL


@pytest.mark.parametrize(
    ("preset", "overrides", "algorithm", "expected"),
    [
        ("paper", {}, "darts", "paper"),
        ("xautodl", {}, "darts", "xautodl"),
        ("xautodl", {}, "lambda-darts", "xautodl"),
        # Where the pixels come from and how often checkpoints are kept: recorded, not protocol.
        ("xautodl", {"data": {"source": "torchvision"}, "train": {"checkpoint_every": 1}},
         "darts", "xautodl"),  # fmt: skip
        ("xautodl", {"train": {"epochs": 10}}, "darts", None),
        ("xautodl", {"train": {"nesterov": False}}, "darts", None),
        ("paper", {"space": {"channels": 8}}, "darts", None),
        ("proxy", {}, "darts", None),
        ("smoke", {}, "darts", None),
    ],
)
def test_a_run_is_matched_to_a_protocol_by_its_values_not_its_label(
    preset, overrides, algorithm, expected
):
    config = build_config(preset, overrides, algorithm=algorithm).to_dict()
    assert protocol_of(config) == expected


def test_protocol_of_sees_changed_algorithm_options():
    config = build_config("paper", algorithm="lambda-darts", algorithm_options={"lambda_": 0.5})
    assert protocol_of(config.to_dict()) is None


def _tables(config: dict, algorithm: str):
    rows = []
    for seed, (name, method) in itertools.product((0, 1), METHODS[:3]):
        rows.append(
            {"algorithm": algorithm, "method": method, "method_name": name,
             "upper_bound": False, "dataset": "cifar10", "seed": seed,
             "accuracy": 90.0 + seed, "fidelity": "200ep", "metric": "test",
             "epoch": 50, "final_epoch": 50}  # fmt: skip
        )
    records = pd.DataFrame(rows)
    selections = records[["algorithm", "method"]].assign(wall_seconds=1.0, forward_passes=1)
    settings = json.dumps({"config": config})
    # The records label each run with the protocol its values match (harness.records).
    protocol = protocol_of(config) or ""
    runs = pd.DataFrame(
        {"algorithm": [algorithm] * 2, "train_seconds": [1.0, 1.0], "settings": [settings] * 2,
         "protocol": [protocol] * 2}
    )  # fmt: skip
    return records, selections, runs


def test_the_paper_table_prints_a_number_only_on_the_matching_row():
    xautodl = build_config("xautodl", algorithm="darts").to_dict()
    table = paper_table(*_tables(xautodl, "darts")).set_index("method")
    assert table.at["magnitude", "published"].startswith("54.30")
    assert table.at["darts-pt", "published"] == ""  # 88.11 is DARTS-PT's 100-epoch protocol
    assert table.at["darts-pt[fix-alpha]", "published"] == ""
    # Same label, other values: no number.
    shortened = build_config("xautodl", {"train": {"epochs": 10}}, algorithm="darts").to_dict()
    table = paper_table(*_tables(shortened, "darts")).set_index("method")
    assert (table["published"] == "").all()
    assert "preset xautodl" in table.at["magnitude", "published_source"]
