"""One resolved experiment: from ``harness.api.run`` to the first epoch, the space is built,
the split file read, each run key computed and the algorithm's options parsed once.

Calls are counted with ``sys.setprofile`` on the functions' code objects, so a call counts
however the function was imported (``from spaces import make_space`` or a module
attribute) and whoever calls it; counting stops when the training loop begins its first
epoch (the algorithm's ``begin_epoch``). "Space built" counts spaces made from the
experiment's space settings (``spaces.make_space``); the ground-truth table builds its
benchmark's own space once when it loads, which is not the experiment's. "Options parsed"
counts the supernet algorithm's (selection methods parse their own, once per method).
"""

from __future__ import annotations

import json
import sys
from collections import Counter

import pytest
import torch
from test_datasets import make_cifar10_pickles

from harness import api
from harness.errors import HarnessError
from harness.experiment import experiment_of, resolve_experiment
from harness.keys import run_key, run_key_of
from harness.split_file import read_split_file
from methods.supernet.base import SupernetAlgorithm, parse_options
from spaces import make_space

COUNTED = {
    make_space.__code__: "space built",
    read_split_file.__code__: "split file read",
    run_key_of.__code__: "run key computed",
    parse_options.__code__: "algorithm options parsed",
}
FIRST_EPOCH = SupernetAlgorithm.begin_epoch.__code__.co_name


class CallCounter:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.reached_first_epoch = False

    def __call__(self, frame, event, arg) -> None:
        if event != "call" or self.reached_first_epoch:
            return
        code = frame.f_code
        if code.co_name == FIRST_EPOCH and "self" in frame.f_locals:
            self.reached_first_epoch = isinstance(frame.f_locals["self"], SupernetAlgorithm)
        elif code in COUNTED:
            what = COUNTED[code]
            if what == "algorithm options parsed" and frame.f_locals.get("algorithm") != "darts":
                return  # a selection method's options
            self.counts[what] += 1


@pytest.fixture
def official_files(tmp_path):
    """A tiny CIFAR-10 in the official files' format and a split file of its 40 images."""
    make_cifar10_pickles(tmp_path / "data", n=8)
    split = tmp_path / "cifar-split.txt"
    split.write_text(json.dumps({"train": list(range(0, 40, 2)), "valid": list(range(1, 40, 2))}))
    return tmp_path / "data", split


def test_api_run_derives_each_thing_once_before_the_first_epoch(
    tmp_path, official_files, ground_truth_csv
):
    data, split = official_files
    counter = CallCounter()
    sys.setprofile(counter)
    try:
        api.run(
            "magnitude", "0", preset="smoke", data=data, data_source="torchvision",
            cache=tmp_path / "cache", results=tmp_path / "results",
            ground_truth=ground_truth_csv,
            settings={"data.split_file": str(split), "data.images_per_split": 16},
        )  # fmt: skip
    finally:
        sys.setprofile(None)
    assert counter.reached_first_epoch
    assert counter.counts == {
        "space built": 1,
        "split file read": 1,
        "run key computed": 1,  # one seed
        "algorithm options parsed": 1,
    }


def test_the_resolved_experiment_gives_the_keys_settings_alone_give(tmp_path, tiny_arrays):
    split = tmp_path / "split.txt"
    split.write_text(json.dumps({"train": [0, 2, 4], "valid": [1, 3, 5]}))
    overrides = {"data": {"source": "torchvision", "split_file": str(split), "images_per_split": 3}}
    experiment = resolve_experiment("smoke", overrides, "lambda-darts")
    bound = experiment.on_data(tiny_arrays, [0, 3])
    for seed in (0, 3):
        assert bound.run_key(seed) == run_key(experiment.config, seed, tiny_arrays.fingerprint)
    # The split is the file's halves, and the options are the algorithm's parsed defaults.
    weight, alpha = bound.split
    assert weight.tolist() == [0, 2, 4] and alpha.tolist() == [1, 3, 5]
    assert experiment.options == experiment_of(experiment.config).options
    assert experiment.config.algorithm_options == vars(experiment.options)
    with pytest.raises(HarnessError, match="not one of this experiment's seeds"):
        bound.run_key(1)


def test_an_algorithm_built_from_the_experiment_takes_its_options_as_they_are(tiny_arrays):
    experiment = resolve_experiment("smoke", None, "lambda-darts", {"lambda_": 0.5})
    torch.manual_seed(0)
    algorithm = experiment.build_algorithm(experiment.build_supernet())
    assert algorithm.options is experiment.options
    assert algorithm.options.lambda_ == 0.5
