"""Damaged or missing store files: one sentence or a rebuild, never a silent loss, and
nothing already finished is changed."""

from __future__ import annotations

import hashlib
import io
import re

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from cli_output import one_sentence

from harness.cli import main

COLUMNS = ["seed", "epoch", "method", "dataset", "metric", "fidelity", "arch", "accuracy"]


def _digests(results, exclude=()):
    """sha256 of every finished file in the store (checkpoints, selections, manifests)."""
    out = {}
    for path in sorted((results / "runs").rglob("*")):
        if path.is_file() and path.suffix in (".pt", ".json") and path not in exclude:
            out[path.relative_to(results)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _records(results):
    frame = pd.read_parquet(results / "records.parquet")[COLUMNS]
    return frame.sort_values(COLUMNS[:6]).reset_index(drop=True)


@pytest.fixture
def store(run_args, tmp_path):
    """A finished smoke study (2 seeds, checkpoints at epochs 1 and 2, magnitude + random)."""
    assert main(run_args("--methods", "magnitude,random")) == 0
    results = tmp_path / "results"
    return results, _records(results), _digests(results)


def _one_run(results):
    return sorted((results / "runs").iterdir())[0]


def test_a_deleted_settings_file_is_rebuilt_and_the_run_stays_in_the_tables(store, run_args):
    results, records, digests = store
    settings = _one_run(results) / "settings.json"
    original = settings.read_bytes()
    settings.unlink()
    assert main(run_args("--methods", "magnitude,random")) == 0
    assert settings.read_bytes() == original  # the checkpoints embed the same record
    pd.testing.assert_frame_equal(_records(results), records)
    assert _digests(results) == digests


@pytest.mark.parametrize("damage", [b"{not json", b""])
def test_damaged_settings_and_metrics_are_rebuilt(store, run_args, damage):
    results, records, digests = store
    run = _one_run(results)
    metrics = (run / "metrics.csv").read_text()
    (run / "settings.json").write_bytes(damage)
    (run / "metrics.csv").write_bytes(damage)
    assert main(run_args("--methods", "magnitude,random")) == 0
    rebuilt = pd.read_csv(run / "metrics.csv")
    pd.testing.assert_frame_equal(rebuilt, pd.read_csv(pd.io.common.StringIO(metrics)))
    pd.testing.assert_frame_equal(_records(results), records)
    assert _digests(results, exclude={run / "settings.json"}) == {
        k: v for k, v in digests.items() if k != (run / "settings.json").relative_to(results)
    }


def test_a_deleted_middle_checkpoint_is_remade_and_a_new_method_reaches_it(store, run_args):
    results, _, digests = store
    run = _one_run(results)
    middle = run / "checkpoints" / "epoch_0001.pt"
    before = torch.load(middle, map_location="cpu", weights_only=False)["model"]
    middle.unlink()
    assert main(run_args("--methods", "magnitude,random,oracle")) == 0
    after = torch.load(middle, map_location="cpu", weights_only=False)["model"]
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]), name  # bit-identical on the same machine
    frame = pd.read_parquet(results / "records.parquet")
    oracle = frame[(frame["method"] == "oracle") & (frame["run_key"] == run.name)]
    assert sorted(oracle["epoch"].unique()) == [1, 2]
    # The final checkpoint and every earlier selection were not touched.
    kept = _digests(results)
    for path, digest in digests.items():
        if path.name not in ("epoch_0001.pt", "manifest.json"):
            assert kept[path] == digest, path


def test_a_damaged_selection_is_recomputed_not_read(store, run_args):
    results, records, digests = store
    damaged = sorted(_one_run(results).glob("selections/epoch_0002/magnitude*.json"))[0]
    original = damaged.read_text()
    damaged.write_text(original[: len(original) // 2])
    assert main(run_args("--methods", "magnitude,random")) == 0
    assert damaged.read_text().count('"arch"') == original.count('"arch"')
    pd.testing.assert_frame_equal(_records(results), records)


def test_a_damaged_selection_of_another_method_does_not_block_runs(store, run_args, capsys):
    results, _, _ = store
    damaged = sorted(_one_run(results).glob("selections/epoch_0002/random*.json"))[0]
    damaged.write_text("[]")
    capsys.readouterr()
    # The run does all its work and writes the tables, then names the file it left out.
    assert main(run_args("--methods", "magnitude")) == 2
    line = one_sentence(capsys)
    assert str(damaged) in line and "(method random:" in line
    frame = pd.read_parquet(results / "records.parquet")
    assert not frame[frame["method"] == "magnitude"].empty


def test_a_damaged_manifest_is_one_sentence_naming_it(store, run_args, capsys):
    results, _, digests = store
    manifest = _one_run(results) / "manifest.json"
    manifest.write_text("{oops")
    capsys.readouterr()
    assert main(run_args("--methods", "magnitude,random")) != 0
    line = one_sentence(capsys)
    assert str(manifest) in line and "delete that file" in line
    assert _digests(results, exclude={manifest}) == {
        k: v for k, v in digests.items() if k != manifest.relative_to(results)
    }


@pytest.mark.parametrize(
    ("setting", "pattern"),
    [
        ("train.lr=nan", "train.lr must be a finite number > 0"),
        ("train.lr=inf", "train.lr must be a finite number > 0"),
        ("train.grad_clip=-1", "train.grad_clip must be a finite number > 0"),
        ("data.augment=maybe", "data.augment must be true or false"),
        ("train.lr=fast", "train.lr must be a number"),
        ("train.momentum=-5", r"train.momentum must be a finite number in \[0, 1\)"),
        ("train.epochs=2.5", "train.epochs must be a whole number"),
        ("space.channels=true", "space.channels must be a whole number"),
    ],
)
def test_bad_settings_are_refused_before_any_work(store, run_args, capsys, setting, pattern):
    results, _, digests = store
    capsys.readouterr()
    assert main(run_args("--methods", "magnitude", "--set", setting, "--seeds", "5")) == 2
    assert re.search(pattern, one_sentence(capsys))
    assert _digests(results) == digests
    assert len(list((results / "runs").iterdir())) == 2  # no new run directory


def test_a_diverging_run_stops_with_no_checkpoint_of_nans(run_args, tmp_path, capsys):
    assert main(run_args("--methods", "magnitude", "--set", "train.lr=1e30",
                         "--set", "train.grad_clip=1e30", "--seeds", "0")) != 0  # fmt: skip
    line = one_sentence(capsys)
    assert "the training loss became" in line and "lower train.lr" in line
    for path in (tmp_path / "results").rglob("epoch_*.pt"):
        state = torch.load(path, map_location="cpu", weights_only=False)
        floats = [t for t in state["model"].values() if t.is_floating_point()]
        assert all(torch.isfinite(t).all() for t in floats)


def test_a_corrupted_table_is_caught_by_its_page_checksums(store, tmp_path, capsys):
    results, _, _ = store
    table = results / "records.parquet"
    data = table.read_bytes()
    chunks = pq.ParquetFile(table).metadata.row_group(0)
    original = pd.read_parquet(table)
    accuracy = chunks.column(list(original.columns).index("accuracy"))
    start = accuracy.dictionary_page_offset or accuracy.data_page_offset
    # The first one-bit flip in the accuracy column that a reader without checksums takes
    # for valid data (a silently changed accuracy), written back.
    for position in range(start, start + accuracy.total_compressed_size):
        flipped = bytearray(data)
        flipped[position] ^= 0x01
        try:
            changed = not pd.read_parquet(io.BytesIO(bytes(flipped))).equals(original)
        except Exception:  # noqa: BLE001 - an error is no silent change
            continue
        if changed:
            break
    else:
        pytest.fail("no silent one-bit corruption found")
    table.write_bytes(bytes(flipped))
    capsys.readouterr()
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "out")]) == 2
    line = one_sentence(capsys)
    assert str(table) in line and "re-run `harness run`" in line
