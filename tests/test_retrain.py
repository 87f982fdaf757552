"""``harness retrain``: settings, keys, cached and resumable jobs, records and report."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_arrays

from harness import api
from harness.cli import main
from harness.errors import HarnessError
from harness.experiment import build_config, searched_as
from harness.locations import resolve_data_location
from harness.pipeline import Execution
from harness.report import build_report
from harness.report import genotypes as genotype_report
from harness.retrain_jobs import RetrainJob, plan_jobs, run_jobs
from harness.retrain_settings import PROTOCOLS, fidelity, retrain_settings
from harness.retraining import canonical_genotype, retrain_genotype, retrain_key
from spaces import space_named
from spaces.darts.genotype import DARTS_V2, Genotype
from spaces.darts.networks import DartsEvalNetwork, parameter_count

V2 = repr(DARTS_V2)
# DARTS_V2 with each node's two pairs listed the other way round: the same cell.
SWAPPED = repr(Genotype(
    [p for s in range(4) for p in reversed(DARTS_V2.normal[2 * s: 2 * s + 2])], [2, 3, 4, 5],
    [p for s in range(4) for p in reversed(DARTS_V2.reduce[2 * s: 2 * s + 2])], [2, 3, 4, 5],
))  # fmt: skip
TINY = {"train_images": 96, "test_images": 40}


@pytest.fixture(scope="module")
def arrays():
    return make_arrays(train=200, test=60, size=16)


def _settings(**values):
    return retrain_settings("smoke", {**TINY, **values})


def test_protocols_are_valid_and_paper_is_darts_evaluation():
    for settings in PROTOCOLS.values():
        settings.validate()
    paper = PROTOCOLS["paper"]
    assert (paper.channels, paper.layers, paper.epochs, paper.batch_size) == (36, 20, 600, 96)
    assert (paper.cutout, paper.auxiliary_weight, paper.drop_path) == (16, 0.4, 0.2)
    assert (paper.lr, paper.weight_decay, paper.train_images) == (0.025, 3e-4, None)
    assert fidelity(paper) == "retrain-paper" and fidelity(PROTOCOLS["proxy"]) == "retrain-proxy"
    assert fidelity(retrain_settings("proxy", {"epochs": 3})).startswith("retrain-proxy-custom-")
    # the checkpoint cadence is not part of what the network becomes
    assert fidelity(retrain_settings("proxy", {"checkpoint_every": 5})) == "retrain-proxy"


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"auxiliary_weight": 0.4}, "auxiliary head is built for the 8x8 maps"),
        ({"epochs": 0}, "retrain.epochs must be positive"),
        ({"lr_min": 1.0}, "lr_min must be in [0, lr]"),
        ({"colour": 1}, "unknown retrain setting(s) colour"),
        ({"epochs": "many"}, "retrain.epochs must be a whole number"),
    ],
)
def test_bad_settings_are_one_sentence(overrides, message):
    with pytest.raises(HarnessError, match=re.escape(message)):
        retrain_settings("proxy", overrides)


def test_a_cell_has_one_canonical_genotype():
    assert SWAPPED != V2
    assert canonical_genotype(SWAPPED) == canonical_genotype(V2)
    with pytest.raises(HarnessError, match="cannot read genotype"):
        canonical_genotype("Genotype(normal=")
    with pytest.raises(HarnessError, match="two distinct"):
        plan_jobs([(V2.replace("('sep_conv_3x3', 1)", "('sep_conv_3x3', 0)", 1), "cifar10")], [0])


def test_darts_retrain_keys_are_what_they_were_before_spaces_named_them():
    # The key of DARTS_V2 at the smoke protocol, as retrain_key computed it before retraining
    # went through the space: the DARTS spaces add nothing to it, so no store is orphaned.
    # (In the default memory format, which retrains had then: tests/test_darts_eval_network.py.)
    settings = retrain_settings("smoke", {"channels_last": False})
    for name in ("darts", "darts-s2", "darts-s4"):
        space = space_named(name)
        key = retrain_key(space.canonical_key(SWAPPED), settings, 0, "fp", "cifar10",
                          space.retrain_key_fields())  # fmt: skip
        assert key == "a7a077b1bf5d0054"
    # one cell selected in two DARTS spaces is one job per seed, whichever space asked
    jobs = plan_jobs([(V2, "cifar10", "darts-s2"), (SWAPPED, "cifar10", "darts")], [0, 1])
    assert [(job.seed, job.space) for job in jobs] == [(0, "darts-s2"), (1, "darts-s2")]
    # a pair without a space is read by the first registered space whose codec reads it
    assert plan_jobs([(V2, "cifar10")], [0])[0].space == "darts"


def test_retrain_records_size_and_accuracy_and_is_stored_once(tmp_path, arrays):
    settings = _settings()
    first = retrain_genotype(V2, settings, 0, arrays, tmp_path)
    result = first.result
    net = DartsEvalNetwork(DARTS_V2, settings.channels, settings.layers, 10, auxiliary=False)
    assert result["params"] == parameter_count(net) and result["madds"] > 0
    assert 0 <= result["test_acc"] <= 100 and result["fidelity"] == "retrain-smoke-custom-" + (
        result["fidelity"].rsplit("-", 1)[1]
    )
    assert first.epochs_trained == settings.epochs
    again = retrain_genotype(SWAPPED, settings, 0, arrays, tmp_path)  # the same cell
    assert again.epochs_trained == 0 and again.result == result
    other_seed = retrain_genotype(V2, settings, 1, arrays, tmp_path)
    assert other_seed.key != first.key
    metrics = pd.read_csv(tmp_path / "retrains" / first.key / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2] and metrics["lr"].iloc[1] < metrics["lr"].iloc[0]


def test_retraining_is_deterministic(tmp_path, arrays):
    settings = _settings(epochs=1)
    a = retrain_genotype(V2, settings, 3, arrays, tmp_path / "a")
    b = retrain_genotype(V2, settings, 3, arrays, tmp_path / "b")
    assert a.result["test_acc"] == b.result["test_acc"]
    final = Path("checkpoints") / "epoch_0001.pt"  # only the newest checkpoint is kept
    state_a = torch.load(tmp_path / "a" / "retrains" / a.key / final, weights_only=False)
    state_b = torch.load(tmp_path / "b" / "retrains" / b.key / final, weights_only=False)
    assert all(torch.equal(state_a["model"][k], state_b["model"][k]) for k in state_a["model"])


def test_cifar100_retrain_builds_a_100_way_classifier(tmp_path):
    arrays = make_arrays(train=200, test=60, size=16)
    arrays.train_labels = torch.arange(200) % 100
    arrays.test_labels = torch.arange(60) % 100
    outcome = retrain_genotype(V2, _settings(epochs=1), 0, arrays, tmp_path, dataset="cifar100")
    final = tmp_path / "retrains" / outcome.key / "checkpoints" / "epoch_0001.pt"
    state = torch.load(final, weights_only=False)
    assert state["model"]["classifier.weight"].shape[0] == 100
    assert outcome.result["dataset"] == "cifar100"


@pytest.mark.parametrize("cluster,where", [(None, "process "), ("local", "dask tcp://127.0.0.1")])
def test_jobs_run_in_worker_processes_or_on_dask(tmp_path, tiny_image_folder, cluster, where):
    location = resolve_data_location(str(tiny_image_folder), "folder", str(tmp_path / "c"))
    jobs = [RetrainJob(canonical_genotype(V2), "cifar10", s) for s in (0, 1)]
    rows = run_jobs(jobs, _settings(epochs=1), {"cifar10": location}, tmp_path,
                    Execution(jobs=2, threads=1, cluster=cluster), progress=False)  # fmt: skip
    assert sorted(r["seed"] for r in rows) == [0, 1]
    assert all(r["executor"].startswith(where) and not r["cached"] for r in rows)
    with pytest.raises(HarnessError, match="nothing to retrain"):
        run_jobs([], _settings(), {}, tmp_path, Execution())


def _retrain_args(folder: Path, results: Path, cache: Path) -> list[str]:
    return [
        "retrain", "--protocol", "smoke", "--genotype", V2, "--seeds", "0", "--threads", "1",
        "--set", "retrain.epochs=6", "--set", "retrain.train_images=300",
        "--set", "retrain.test_images=50", "--set", "retrain.channels=8",
        "--set", "retrain.resolution=16", "--set", "retrain.cutout=8",
        "--data", str(folder), "--results", str(results), "--cache", str(cache), "--quiet",
    ]  # fmt: skip


def test_kill_9_during_retraining_resumes_identically(tmp_path, tiny_image_folder):
    cache = tmp_path / "cache"
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(_retrain_args(tiny_image_folder, straight, cache)) == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", *_retrain_args(tiny_image_folder, killed, cache)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(killed.glob("retrains/*/checkpoints/epoch_*.pt")):
        assert time.monotonic() < deadline, "no retrain checkpoint appeared"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not list(killed.glob("retrains/*/result.json")), "the kill came too late"
    partial = next(killed.glob("retrains/*/checkpoints/epoch_*.pt"))
    partial = torch.load(partial, weights_only=False)
    assert partial["epoch"] < 6

    assert main(_retrain_args(tiny_image_folder, killed, cache)) == 0
    [done_straight] = straight.glob("retrains/*/checkpoints/epoch_*.pt")
    [done_killed] = killed.glob("retrains/*/checkpoints/epoch_*.pt")
    a = torch.load(done_straight, weights_only=False)
    b = torch.load(done_killed, weights_only=False)
    assert a["epoch"] == b["epoch"] == 6
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [m["test_acc"] for m in a["metrics"]] == [m["test_acc"] for m in b["metrics"]]


def test_selections_in_the_darts_space_are_retrained_into_records_and_report(
    tmp_path, run_args, capsys
):
    results = tmp_path / "results"
    assert main(run_args("--space", "darts-s2", "--seeds", "0", "--methods",
                         "magnitude,random", "--threads", "1")) == 0  # fmt: skip
    shared = run_args()[run_args().index("--data"):]  # data, cache, results, ground truth
    shared = [a for a in shared if a != "--quiet"]
    assert main(["retrain", "--protocol", "smoke", "--methods", "magnitude",
                 "--set", "retrain.test_images=40", "--threads", "1", *shared,
                 "--quiet"]) == 0  # fmt: skip
    assert "retrain-smoke-custom-" in capsys.readouterr().out
    records = pd.read_parquet(results / "records.parquet")
    final = records[records["epoch"] == records["final_epoch"]]
    magnitude = final[final["method"] == "magnitude"]
    assert len(magnitude) == 1 and magnitude["fidelity"].iloc[0].startswith("retrain-smoke")
    assert magnitude["params"].iloc[0] > 0 and magnitude["retrain_seeds"].iloc[0] == 1
    random = final[final["method"] == "random"]
    assert list(random["fidelity"]) == ["not-retrained"] and random["accuracy"].isna().all()
    # a genotype has at most 16 kept ops, whatever the 12 dropped edges hold
    assert (records["param_free_ops"] <= 16).all()

    summary = build_report(results, tmp_path / "report")
    text = (tmp_path / "report" / "tables" / "genotypes.md").read_text()
    assert "| darts-s2 |" in text and "figures/genotype-" in text
    assert any(p.suffix == ".png" for p in summary.figures)
    assert "Retrained cells" in summary.index_html.read_text()


def _run(run_key: str, preset: str, space: str, algorithm: str = "darts", **overrides):
    config = build_config(preset, {"space": {"name": space}, **overrides}, algorithm=algorithm)
    # The search protocol the records label the run with when they write the runs table.
    searched = "darts-paper" if searched_as(config.to_dict(), "darts-paper") else ""
    return {"run_key": run_key, "settings": json.dumps({"config": config.to_dict()}),
            "search_protocol": searched}  # fmt: skip


def test_published_numbers_show_only_beside_the_matching_protocol():
    row = {"space": "darts-s2", "algorithm": "darts", "preset": "darts-paper", "seed": 0,
           "method": "darts-pt", "dataset": "cifar10", "arch": V2, "param_free_ops": 2,
           "skip_ops": 1, "epoch": 50, "final_epoch": 50, "params": 3.3e6, "madds": 5e8,
           "retrain_seeds": 1, "accuracy": 97.0, "fidelity": "retrain-paper"}  # fmt: skip
    runs = pd.DataFrame([
        _run("paper", "darts-paper", "darts-s2"),
        _run("short", "darts-paper", "darts-s2", train={"epochs": 1}),
        _run("fixed", "darts-paper", "darts-s4", algorithm="darts-fixed-alpha"),
        _run("proxy", "darts-proxy", "darts-s2"),
    ])  # fmt: skip

    def shown(**changes) -> str:
        table = genotype_report.genotype_table(
            pd.DataFrame([{**row, "run_key": "paper", **changes}]), runs
        )
        return table["published error"].iloc[0]

    # DARTS-PT, Table 3: S2 CIFAR-10 +PT 2.79; S4 CIFAR-10 +PT fix-alpha 2.58
    assert shown().startswith("2.79 (DARTS-PT paper")
    assert shown(method="magnitude").startswith("4.85 (")
    assert shown(run_key="fixed", space="darts-s4", algorithm="darts-fixed-alpha",
                 method="darts-pt[fix-alpha]").startswith("2.58 (")  # fmt: skip
    assert shown(fidelity="retrain-proxy") == "—"  # not the paper's evaluation
    assert shown(run_key="short") == "—"  # labelled darts-paper, but 1 epoch
    assert shown(run_key="proxy", preset="darts-proxy") == "—"
    assert shown(method="ostr") == "—"  # the table has no OStr
    assert shown(method="darts-pt[fix-alpha]") == "—"  # fix-alpha needs its own supernet
    assert shown(space="darts") == "—"  # S1-S4 only
    assert len(genotype_report.PUBLISHED_S1_S4) == 36


def test_paper_protocol_on_a_cpu_warns_before_any_work(tmp_path):
    notes = []
    with pytest.raises(HarnessError, match="nothing to retrain"):
        api.retrain(results=tmp_path, protocol="paper", notes=notes.append)
    assert notes and "weeks on a CPU" in notes[0]


def test_the_darts_space_needs_no_nas_bench_201_table(tmp_path, tiny_image_folder, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ../shared/data here
    monkeypatch.delenv("HARNESS_GROUND_TRUTH", raising=False)
    where = ["--data", str(tiny_image_folder), "--cache", str(tmp_path / "cache"),
             "--results", str(tmp_path / "results"), "--quiet"]  # fmt: skip
    assert main(["run", "--preset", "smoke", "--space", "darts-s2", "--seeds", "0", "--epochs",
                 "1", "--methods", "magnitude", "--threads", "1", "--set", "space.channels=2",
                 "--set", "data.images_per_split=64", *where]) == 0  # fmt: skip
    assert main(["retrain", "--protocol", "smoke", "--set", "retrain.epochs=1",
                 "--set", "retrain.test_images=40", "--threads", "1", *where]) == 0  # fmt: skip
    records = pd.read_parquet(tmp_path / "results" / "records.parquet")
    assert list(records["fidelity"].str[:13]) == ["retrain-smoke"]
    # a NAS-Bench-201 study still needs its table, and says so before any work
    assert main(["run", "--preset", "smoke", "--seeds", "0", "--methods", "magnitude",
                 *where]) == 2  # fmt: skip
