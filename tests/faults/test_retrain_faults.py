"""Damaged retrains: a checkpoint that fails its hash or its load restarts from a freshly built
network (exactly the uninterrupted result), a bad result.json is left out with one sentence,
filters that match nothing say which, and retrains of --genotype reach the records."""

from __future__ import annotations

import json
import logging
import shutil

import pandas as pd
import pytest
import torch
from cli_output import one_sentence
from conftest import make_arrays

import harness.retraining as retraining
from harness.cli import main
from harness.records import write_tables
from harness.report import build_report
from harness.retrain_settings import retrain_settings
from harness.retraining import canonical_genotype, retrain_genotype, retrain_key
from harness.store import CheckpointStore
from spaces.darts.genotype import DARTS_V2

V2 = canonical_genotype(repr(DARTS_V2))


@pytest.fixture(scope="module")
def arrays():
    return make_arrays(train=200, test=60, size=16)


@pytest.fixture(scope="module")
def settings():
    return retrain_settings("smoke", {"train_images": 96, "test_images": 40, "epochs": 2})


@pytest.fixture(scope="module")
def clean(tmp_path_factory, arrays, settings):
    """An uninterrupted retrain: its result and final weights."""
    root = tmp_path_factory.mktemp("clean")
    outcome = retrain_genotype(V2, settings, 0, arrays, root)
    return outcome, _final_state(root / "retrains" / outcome.key)


def _final_state(folder):
    [path] = (folder / "checkpoints").glob("epoch_*.pt")
    return torch.load(path, weights_only=False)


def _same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def _restart_warnings(caplog):
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return [m for m in messages if "retraining from epoch 0" in m]


class _Killed(Exception):
    pass


def test_a_flipped_bit_in_a_retrain_checkpoint_restarts_from_scratch(
    tmp_path, arrays, settings, clean, monkeypatch, caplog
):
    # Stop the retrain right after its epoch-1 checkpoint (as a kill there would) ...
    real_write = retraining.atomic_write_bytes

    def dying_write(path, data):
        if path.name == "metrics.csv":
            raise _Killed
        real_write(path, data)

    monkeypatch.setattr(retraining, "atomic_write_bytes", dying_write)
    with pytest.raises(_Killed):
        retrain_genotype(V2, settings, 0, arrays, tmp_path)
    monkeypatch.undo()
    [checkpoint] = tmp_path.glob("retrains/*/checkpoints/epoch_0001.pt")
    # ... then flip one bit inside a weight tensor of that checkpoint.
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0x10
    checkpoint.write_bytes(bytes(data))

    outcome = retrain_genotype(V2, settings, 0, arrays, tmp_path)
    [warning] = _restart_warnings(caplog)
    assert str(checkpoint) in warning and "does not match its manifest" in warning
    assert "freshly built network" in warning
    assert outcome.epochs_trained == settings.epochs  # retrained from epoch 0, not resumed
    done, reference = clean
    assert outcome.result["test_acc"] == done.result["test_acc"]
    _same_weights(_final_state(tmp_path / "retrains" / outcome.key)["model"], reference["model"])


def test_a_checkpoint_that_fails_to_load_gives_exactly_the_from_scratch_result(
    tmp_path, arrays, settings, clean, caplog
):
    """load_state_dict copies every tensor that fits before it raises: a retrain that went on
    from that network would start from trained weights. It must start from fresh ones."""
    done, reference = clean
    model = dict(reference["model"])  # trained weights, which a fresh network does not have
    model["classifier.bias"] = torch.zeros(3)  # the one tensor that does not fit
    key = retrain_key(V2, settings, 0, arrays.fingerprint, "cifar10")
    folder = tmp_path / "retrains" / key
    CheckpointStore(folder).save_checkpoint(1, {  # verified: the hash matches
        "epoch": 1, "model": model, "optimizer": reference["optimizer"],
        "metrics": reference["metrics"][:1],
    })  # fmt: skip

    outcome = retrain_genotype(V2, settings, 0, arrays, tmp_path)
    [warning] = _restart_warnings(caplog)
    assert "does not fit this retrain" in warning and key in warning
    assert outcome.epochs_trained == settings.epochs
    assert outcome.result["test_acc"] == done.result["test_acc"]
    final = _final_state(folder)
    _same_weights(final["model"], reference["model"])
    momentum = {k: v["momentum_buffer"] for k, v in final["optimizer"]["state"].items()}
    _same_weights(momentum, {k: v["momentum_buffer"]
                             for k, v in reference["optimizer"]["state"].items()})  # fmt: skip
    assert [m["test_acc"] for m in final["metrics"]] == [m["test_acc"] for m in
                                                         reference["metrics"]]  # fmt: skip


def test_a_result_with_text_accuracy_is_left_out_and_the_others_reach_the_tables(
    tmp_path, arrays, settings, caplog
):
    good = retrain_genotype(V2, settings, 0, arrays, tmp_path)
    bad = retrain_genotype(V2, settings, 1, arrays, tmp_path)
    path = tmp_path / "retrains" / bad.key / "result.json"
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "test_acc": "12.5 %"}))

    records = write_tables(tmp_path, None)["records"]
    [warning] = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert "(test_acc is '12.5 %')" in warning and "left out of the tables" in warning
    [row] = records.itertuples()  # the good seed alone: its accuracy, one retrain seed
    assert row.accuracy == good.result["test_acc"] and row.retrain_seeds == 1
    # The retrain that made it rewrites it from its last checkpoint, without training.
    again = retrain_genotype(V2, settings, 1, arrays, tmp_path)
    assert again.epochs_trained == 0 and again.result == bad.result
    assert json.loads(path.read_text())["test_acc"] == raw["test_acc"]


@pytest.fixture(scope="module")
def darts_store(tmp_path_factory, tiny_image_folder):
    """A DARTS-space (S2) smoke study, one seed, one epoch, magnitude; no ground truth."""
    root = tmp_path_factory.mktemp("darts")
    where = ["--data", str(tiny_image_folder), "--cache", str(root / "cache"),
             "--results", str(root / "results"), "--quiet"]  # fmt: skip
    assert main(["run", "--preset", "smoke", "--space", "darts-s2", "--seeds", "0", "--epochs",
                 "1", "--methods", "magnitude", "--threads", "1", "--set", "space.channels=2",
                 "--set", "data.images_per_split=64", *where]) == 0  # fmt: skip
    return root, where


RETRAIN = ["retrain", "--protocol", "smoke", "--set", "retrain.epochs=1",
           "--set", "retrain.test_images=40", "--threads", "1"]  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--epoch", "99"], ["--epoch 99 matches no stored selection", "epochs there: 1",
                             "--epoch all"]),
        (["--methods", "nosuch"], ["--methods nosuch matches no stored selection",
                                   "methods there: magnitude"]),
        (["--space", "nosuch"], ["--space nosuch matches no stored selection",
                                 "the store holds them in darts-s2"]),
        (["--space", "darts-s2", "--methods", "magnitude", "--epoch", "7"],
         ["--epoch 7 matches no stored selection in darts-s2 of magnitude"]),
    ],
)  # fmt: skip
def test_retrain_filters_that_match_nothing_say_which_and_what_exists(
    darts_store, capsys, flags, expected
):
    root, where = darts_store
    capsys.readouterr()
    assert main([*RETRAIN, *flags, *where]) == 2
    line = one_sentence(capsys)
    assert "select in a DARTS space first" not in line
    for text in expected:
        assert text in line, line
    assert not (root / "results" / "retrains").exists()  # refused before any work


@pytest.mark.parametrize("setting", ["retrain.lr", "train.lr=0.1", "retrain.colour=1"])
def test_a_bad_retrain_setting_names_the_form_and_only_retrain_fields(darts_store, capsys,
                                                                      setting):  # fmt: skip
    _, where = darts_store
    capsys.readouterr()
    assert main([*RETRAIN, "--set", setting, *where]) == 2
    line = one_sentence(capsys)
    assert "write --set retrain.FIELD=VALUE" in line and "batch_size" in line and "lr_min" in line
    assert "compute" not in line and "algorithm" not in line  # harness run's sections


def _genotype_rows(results):
    records = pd.read_parquet(results / "records.parquet")
    return records[records["method"] == "genotype"]


def test_a_genotype_retrain_reaches_the_records_and_the_report(darts_store, tmp_path, capsys):
    source, where = darts_store
    shutil.copytree(source / "results", tmp_path / "results")
    where = [*where[:4], "--results", str(tmp_path / "results"), "--quiet"]
    assert main([*RETRAIN, "--genotype", repr(DARTS_V2), *where]) == 0
    [result] = (tmp_path / "results").glob("retrains/*/result.json")
    result = json.loads(result.read_text())
    [row] = _genotype_rows(tmp_path / "results").itertuples()
    assert (row.arch, row.space, row.dataset) == (V2, "darts", "cifar10")
    assert row.fidelity == result["fidelity"] and row.fidelity.startswith("retrain-smoke")
    assert (row.accuracy, row.params, row.retrain_seeds) == (result["test_acc"], result["params"],
                                                             1)  # fmt: skip
    records = pd.read_parquet(tmp_path / "results" / "records.parquet")
    assert (records["method"] == "magnitude").any()  # the study's own rows stay
    summary = build_report(tmp_path / "results", tmp_path / "report")
    text = (tmp_path / "report" / "tables" / "genotypes.md").read_text()
    assert "| genotype |" in text and "Retrained cells" in summary.index_html.read_text()


def test_a_genotype_retrain_in_a_store_without_runs_still_reaches_the_records(
    darts_store, tmp_path
):
    _, where = darts_store
    where = [*where[:4], "--results", str(tmp_path / "results"), "--quiet"]
    assert main([*RETRAIN, "--genotype", repr(DARTS_V2), *where]) == 0
    [row] = _genotype_rows(tmp_path / "results").itertuples()
    assert row.arch == V2 and row.seed == -1
    assert main(["report", "--results", str(tmp_path / "results"), "--out",
                 str(tmp_path / "report")]) == 0  # fmt: skip
