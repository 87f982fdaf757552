"""Several `harness run` processes on one store at once: consistent store, each job once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pandas as pd
import pytest

from harness.cli import main
from harness.locks import job_lock, lock_path
from harness.store import RunStore, load_checkpoint_file

COLUMNS = ["seed", "epoch", "method", "dataset", "metric", "fidelity", "arch", "accuracy"]


def _args(results, folder, cache, truth):
    return [
        "run", "--preset", "smoke", "--seeds", "0-1", "--quiet", "--threads", "1",
        "--methods", "magnitude,random", "--data", str(folder), "--cache", str(cache),
        "--results", str(results), "--ground-truth", str(truth),
    ]  # fmt: skip


def _start(args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def _records(results):
    frame = pd.read_parquet(results / "records.parquet")[COLUMNS]
    return frame.sort_values(COLUMNS[:6]).reset_index(drop=True)


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, tiny_image_folder, ground_truth_csv):
    root = tmp_path_factory.mktemp("single")
    assert main(_args(root / "results", tiny_image_folder, root / "cache", ground_truth_csv)) == 0
    return _records(root / "results")


@pytest.mark.parametrize("processes", [2, 3])
def test_concurrent_runs_finish_with_one_consistent_store(
    tmp_path, tiny_image_folder, ground_truth_csv, single_run, processes
):
    args = _args(tmp_path / "results", tiny_image_folder, tmp_path / "cache", ground_truth_csv)
    started = [_start(args) for _ in range(processes)]
    outputs = [p.communicate(timeout=600) for p in started]
    for p, (_, err) in zip(started, outputs, strict=True):
        assert p.returncode == 0, err
    # Each job was computed by exactly one process: seeds trained and selections computed,
    # summed over the processes, are each run's 2 seeds and 2 x 2 x 2 selections once.
    trained, computed = [], 0
    for out, _ in outputs:
        match = re.search(r"trained seeds (\[[\d, ]*\]|none \(cached\)); selections computed "
                          r"(\d+)", out)  # fmt: skip
        assert match, out
        trained += [] if match[1].startswith("none") else json.loads(match[1])
        computed += int(match[2])
    assert sorted(trained) == [0, 1] and computed == 8
    # Every checkpoint agrees with its manifest, and the records equal a single run's.
    for run_dir in (tmp_path / "results" / "runs").iterdir():
        store = RunStore(tmp_path / "results", run_dir.name)
        assert store.completed_epochs() == [1, 2]
        for epoch in (1, 2):
            load_checkpoint_file(store.checkpoint_path(epoch))
    pd.testing.assert_frame_equal(_records(tmp_path / "results"), single_run)


def test_a_killed_lock_holder_does_not_block_the_next_run(
    tmp_path, tiny_image_folder, ground_truth_csv, single_run
):
    results = tmp_path / "results"
    path = lock_path(results, "tables")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from harness.locks import job_lock\n"
         f"with job_lock({str(path)!r}, 'test'):\n    print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    run = _start(_args(results, tiny_image_folder, tmp_path / "cache", ground_truth_csv))
    _, err = run.communicate(timeout=300)  # a lock left held would hang it past this
    assert run.returncode == 0, err
    pd.testing.assert_frame_equal(_records(results), single_run)


def test_a_lock_held_elsewhere_is_skipped_without_waiting_when_asked(tmp_path):
    path = lock_path(tmp_path, "train", "abc")
    with job_lock(path, "first") as first:
        assert first is True
        with job_lock(path, "second", wait=False) as second:  # another open file: refused
            assert second is False
    with job_lock(path, "third", wait=False) as third:
        assert third is True
