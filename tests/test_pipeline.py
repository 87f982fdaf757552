"""`harness run`: caching across invocations, adding methods later, records, bad input."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from harness.cli import main
from spaces.nb201 import PARAMETER_FREE_OPS, decode
from spaces.nb201.ops import OP_NAMES


def _calls(monkeypatch):
    calls = {"train": 0, "select": 0}
    import harness.pipeline as pipeline

    real_train, real_select = pipeline.train_supernet, pipeline.select_at_checkpoint

    def train(*args, **kwargs):
        calls["train"] += 1
        return real_train(*args, **kwargs)

    def select(path, methods, *args, **kwargs):
        calls["select"] += len(methods)
        return real_select(path, methods, *args, **kwargs)

    monkeypatch.setattr(pipeline, "train_supernet", train)
    monkeypatch.setattr(pipeline, "select_at_checkpoint", select)
    return calls


def test_run_twice_then_add_a_method(run_args, tmp_path, monkeypatch, capsys, ground_truth_csv):
    calls = _calls(monkeypatch)
    assert main(run_args("--methods", "magnitude,random")) == 0
    # 2 seeds x 2 checkpoints (smoke: 2 epochs, checkpoint every epoch) x 2 methods
    assert calls == {"train": 2, "select": 8}

    assert main(run_args("--methods", "magnitude,random")) == 0
    assert calls == {"train": 2, "select": 8}, "a second identical run must do nothing"

    assert main(run_args("--methods", "oracle")) == 0
    assert calls == {"train": 2, "select": 12}, "a new method runs selections only"

    results = tmp_path / "results"
    records = pd.read_parquet(results / "records.parquet")
    selections = pd.read_parquet(results / "selections.parquet")
    runs = pd.read_parquet(results / "runs.parquet")
    assert len(runs) == 2 and set(runs["seed"]) == {0, 1}
    assert len(selections) == 2 * 2 * 3
    assert set(selections["method"]) == {"magnitude", "random", "oracle"}
    # One record per selection x ground-truth column (9 in the offline table).
    assert len(records) == len(selections) * 9
    truth = pd.read_csv(ground_truth_csv).set_index("arch_str")
    for row in records.sample(20, random_state=0).itertuples():
        column = f"{row.dataset}_{row.metric}_{row.fidelity}"
        assert row.accuracy == pytest.approx(truth.loc[row.arch, column])
        ops = [OP_NAMES[k] for k in decode(row.arch)]
        assert row.param_free_ops == sum(op in PARAMETER_FREE_OPS for op in ops)
    oracle = records[(records.method == "oracle") & (records.dataset == "cifar10")]
    assert oracle[oracle.metric == "test"].accuracy.max() == pytest.approx(94.37, abs=0.01)


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--methods", "nope"), "unknown selection method 'nope'"),
        (("--seeds", "3-1"), "runs backwards"),
        (("--seeds", "a-b"), "cannot read seeds"),
        (("--algorithm", "nope"), "unknown supernet algorithm"),
        (("--jobs", "0"), "--jobs must be at least 1"),
        (("--set", "train.nope=1"), "unknown train setting"),
        (("--ground-truth", "/no/such.csv"), "does not exist"),
    ],
)
def test_bad_input_is_one_sentence_and_computes_nothing(run_args, tmp_path, capsys, extra, message):
    assert main(run_args(*extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


def test_missing_data_folder(run_args, tmp_path, capsys):
    assert main(run_args("--data", str(tmp_path / "nowhere"))) == 2
    assert "CIFAR-10 image folder" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def _checkpoint_tensors(results):
    import torch

    states = {}
    for path in sorted(results.glob("runs/*/checkpoints/epoch_*.pt")):
        state = torch.load(path, map_location="cpu", weights_only=False)
        states[(state["settings"]["seed"], state["epoch"])] = state["model"]
    return states


@pytest.mark.parametrize("parallel", [("--jobs", "2"), ("--jobs", "2", "--cluster", "local")])
def test_parallel_execution_matches_in_process(tmp_path, tiny_image_folder, ground_truth_csv,
                                               parallel, capsys):  # fmt: skip
    def args(results, *extra):
        return [
            "run", "--preset", "smoke", "--seeds", "0-1", "--quiet",
            "--methods", "magnitude,random",
            "--data", str(tiny_image_folder), "--cache", str(tmp_path / "cache"),
            "--results", str(tmp_path / results), "--ground-truth", str(ground_truth_csv),
            *extra,
        ]  # fmt: skip

    assert main(args("serial", "--threads", "1")) == 0
    capsys.readouterr()
    assert main(args("parallel", *parallel)) == 0  # 2 cores / 2 jobs = 1 thread each
    # Each job reports where it ran; only a job running on a Dask worker can say "Dask".
    summary = capsys.readouterr().out
    if "--cluster" in parallel:
        assert re.search(r"jobs ran on \d+ Dask worker\(s\): tcp://127\.0\.0\.1:\d+", summary)
    else:
        assert re.search(r"jobs ran in [12] worker process\(es\)", summary)
        assert "Dask" not in summary
    serial, par = (
        _checkpoint_tensors(tmp_path / "serial"),
        _checkpoint_tensors(tmp_path / "parallel"),
    )
    assert serial.keys() == par.keys() and len(serial) == 4
    for key, model in serial.items():
        for name, tensor in model.items():
            assert tensor.equal(par[key][name]), (key, name)
    columns = ["seed", "epoch", "method", "dataset", "metric", "fidelity", "arch", "accuracy"]
    a = pd.read_parquet(tmp_path / "serial" / "records.parquet")[columns]
    b = pd.read_parquet(tmp_path / "parallel" / "records.parquet")[columns]
    pd.testing.assert_frame_equal(
        a.sort_values(columns[:6]).reset_index(drop=True),
        b.sort_values(columns[:6]).reset_index(drop=True),
    )


def test_select_command_prints_cells_and_reuses_the_run(run_args, tmp_path, capsys):
    assert main(run_args("--methods", "magnitude")) == 0
    checkpoint = next((tmp_path / "results").glob("runs/*/checkpoints/epoch_0002.pt"))
    capsys.readouterr()
    args = [
        "select", "--checkpoint", str(checkpoint), "--methods", "magnitude,ostr[taylor]",
        *run_args()[run_args().index("--data"):],
    ]  # fmt: skip
    args = [a for a in args if a not in ("--quiet",)]
    args = args[: args.index("--results")] + args[args.index("--results") + 2 :]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["seed", "epoch", "method", "C10"]
    assert {line.split()[2] for line in lines[1:]} == {"magnitude", "ostr[taylor]"}
    stored = list(checkpoint.parent.parent.glob("selections/epoch_0002/*.json"))
    assert len(stored) == 2
    assert (
        main(["select", "--checkpoint", str(tmp_path / "missing.pt"), "--methods", "random"]) == 2
    )
