"""harness.api checks the kind of every argument at its boundary, as the command line's
parser does: a wrong kind is one HarnessError sentence naming the argument and what it
takes, before any work starts, never a TypeError from deep inside."""

from __future__ import annotations

import dataclasses
import inspect
from collections import namedtuple
from pathlib import Path

import pytest

from harness import api
from harness.api_arguments import RULES
from harness.api_requests import RetrainRequest, RunRequest, TrainRequest
from harness.errors import HarnessError
from harness.retraining import canonical_genotype
from spaces.darts.genotype import DARTS_V2

FUNCTIONS = [name for name in api.__all__ if inspect.isfunction(getattr(api, name))]

WRONG = [
    ("run", {"seeds": None}, "seeds takes a range like '0-4'", "not None"),
    ("run", {"seeds": 3.5}, "seeds takes a range like '0-4'", "not 3.5 (float)"),
    ("run", {"seeds": True}, "seeds takes", "not True (bool)"),
    ("run", {"methods": None}, "methods takes a spec like 'magnitude,ostr[taylor]'", "None"),
    ("run", {"algorithm": 123}, "algorithm takes an algorithm name", "not 123 (int)"),
    ("run", {"cluster": 42}, "cluster takes a scheduler address", "not 42 (int)"),
    ("run", {"jobs": "2"}, "jobs takes a whole number", "not '2'"),
    ("run", {"threads": 1.0}, "threads takes a whole number", "not 1.0 (float)"),
    ("run", {"progress": "yes"}, "progress takes True or False", "not 'yes'"),
    ("run", {"notes": "stderr"}, "notes takes a function", "not 'stderr'"),
    ("run", {"data": 7}, "data takes a path", "not 7 (int)"),
    ("run", {"settings": 5}, "settings takes a mapping like", "not 5 (int)"),
    ("run", {"settings": {1: 2}}, "settings takes a mapping like", "{1: 2} (dict)"),
    ("run", {"data_source": "ftp"}, "data_source takes 'folder' or 'torchvision'", "'ftp'"),
    ("train", {"epochs": 2.5}, "epochs takes a whole number or None", "not 2.5 (float)"),
    ("train", {"algorithm": ["darts"]}, "algorithm takes an algorithm name", "['darts']"),
    ("train", {"device": None}, "device takes 'cpu', 'cuda' or 'cuda:N'", "not None"),
    ("select", {"checkpoints": 42, "methods": "magnitude"}, "checkpoints takes a checkpoint "
     "path", "not 42 (int)"),
    ("select", {"checkpoints": "x.pt", "methods": 3}, "methods takes a spec", "not 3 (int)"),
    ("select", {"checkpoints": "x.pt", "methods": "magnitude", "ground_truth": 1},
     "ground_truth takes a CSV path", "not 1 (int)"),
    ("retrain", {"genotypes": 3}, "genotypes takes a genotype as DARTS prints it", "3 (int)"),
    ("retrain", {"epoch": "x"}, "epoch takes 'final', 'all' or an epoch number", "not 'x'"),
    ("retrain", {"epoch": -1}, "epoch takes 'final', 'all' or an epoch number", "-1 (int)"),
    ("retrain", {"methods": 5}, "methods takes method names", "not 5 (int)"),
    ("retrain", {"protocol": None}, "protocol takes a protocol name", "not None"),
    ("retrain", {"dataset": 10}, "dataset takes 'cifar10', 'cifar100' or 'svhn'", "10 (int)"),
    ("load", {"results": 3}, "results takes a path (str or pathlib.Path) or None", "3 (int)"),
    ("report", {"out": None}, "out takes a folder path", "not None"),
    ("report", {"preset": 1}, "preset takes a preset name or None", "not 1 (int)"),
    ("experiment_config", {"preset": None}, "preset takes a preset name", "not None"),
    ("experiment_config", {"checkpoint_every": "2"}, "checkpoint_every takes a whole", "'2'"),
    ("selection_methods", {"methods": None}, "methods takes a spec", "not None"),
    ("selection_methods", {"methods": "all", "search_space": "darts"}, "search_space takes a "
     "SearchSpace or None", "not 'darts'"),
    ("parse_seeds", {"seeds": None}, "seeds takes a range like '0-4'", "not None"),
    ("parse_seeds", {"seeds": b"01"}, "seeds takes", "not b'01' (bytes)"),
]  # fmt: skip


@pytest.mark.parametrize(("function", "arguments", "takes", "got"), WRONG)
def test_a_wrong_kind_of_argument_is_one_sentence(tmp_path, monkeypatch, function, arguments,
                                                  takes, got):  # fmt: skip
    monkeypatch.chdir(tmp_path)  # where the default store and report would go
    with pytest.raises(HarnessError) as refused:
        getattr(api, function)(**arguments)
    message = str(refused.value)
    assert message.startswith(f"api.{function}: {takes}"), message
    assert got in message and "\n" not in message, message
    assert not list(tmp_path.iterdir())  # nothing written


REQUESTS = {"run": RunRequest, "train": TrainRequest, "retrain": RetrainRequest}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_parameter_of_every_public_function_is_checked(function):
    # run, train and retrain take their request's fields as keywords (harness.api_requests)
    names = [n for n in inspect.signature(getattr(api, function)).parameters if n != "fields"]
    if function in REQUESTS:
        names += [f.name for f in dataclasses.fields(REQUESTS[function])]
    for name in names:
        assert (function, name) in RULES or name in RULES, f"api.{function}({name}=...)"


def test_an_unknown_keyword_names_the_request_fields():
    with pytest.raises(HarnessError, match=r"api.run\(\) got unknown argument\(s\) epoch_count; "
                       r"it takes .*epochs"):  # fmt: skip
        api.run("magnitude", epoch_count=3)


def test_a_request_is_checked_when_it_is_made():
    with pytest.raises(HarnessError, match="api.train: seeds takes"):
        api.TrainRequest(seeds=None)
    request = api.RunRequest(methods="magnitude", seeds="0-1", preset="smoke")
    assert dataclasses.replace(request, jobs=2).jobs == 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: api.parse_seeds([1, 2.5]), "seeds must be whole numbers, got [1, 2.5]"),
        (lambda: api.selection_methods(["magnitude", 3]), "3 is not a method"),
        (lambda: api.selection_methods([int]), "is not a subclass of"),
        (lambda: api.select(["x.pt", 3], "magnitude"), "a checkpoint is a path (str or "
         "pathlib.Path), not 3 (int)"),
        (lambda: api.retrain([DARTS_V2._replace(normal=3)]), "genotype normal must be a list"),
        (lambda: api.retrain([DARTS_V2._replace(reduce_concat=[True])]), "reduce_concat must"),
        (lambda: api.retrain([DARTS_V2, 3]), "a genotype is text as DARTS prints it or a "
         "Genotype, not 3"),
    ],
)  # fmt: skip
def test_a_wrong_item_in_a_list_is_one_sentence(call, message):
    with pytest.raises(HarnessError) as refused:
        call()
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_right_kinds_pass_the_boundary():
    # A path object, a single setting as text, a tuple of algorithm names, seeds as a range.
    config = api.experiment_config("smoke", settings="train.lr=0.05")
    assert config.train.lr == 0.05
    assert api.parse_seeds(range(3)) == [0, 1, 2] and api.parse_seeds((4,)) == [4]
    assert [m.name for m in api.selection_methods(("magnitude", "ostr"))] == ["magnitude", "ostr"]
    with pytest.raises(HarnessError, match="does not exist"):
        api.select(Path("missing.pt"), "magnitude")


@pytest.fixture
def planned(monkeypatch, tmp_path, tiny_image_folder):
    """api.retrain up to the training: the jobs it would run."""
    jobs = []

    def capture(planned_jobs, *args, **kwargs):
        jobs.extend(planned_jobs)
        return []

    monkeypatch.setattr(api, "run_jobs", capture)

    def retrain(genotypes):
        api.retrain(genotypes, protocol="smoke", results=tmp_path, data=tiny_image_folder,
                    cache=tmp_path / "cache")  # fmt: skip
        return [job.genotype for job in jobs]

    return retrain


def test_retrain_takes_the_genotype_namedtuple(planned):
    assert planned([DARTS_V2]) == [canonical_genotype(repr(DARTS_V2))]


def test_retrain_takes_one_genotype_and_the_darts_codes_own_namedtuple(planned):
    # quark0/darts's genotypes.py: namedtuple('Genotype', ...) with concat=range(2, 6)
    theirs = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
    v2 = theirs(DARTS_V2.normal, range(2, 6), DARTS_V2.reduce, range(2, 6))
    assert planned(v2) == [canonical_genotype(repr(DARTS_V2))]
