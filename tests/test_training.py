"""Supernet training: caching, exact resumption after a kill, recorded settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness.cli import main
from harness.experiment import build_config
from harness.records import collect_tables
from harness.store import RunStore, load_checkpoint_file
from harness.training import compute_platform, train_supernet


def _config(epochs=3, every=1, algorithm="darts"):
    return build_config(
        "smoke", {"train": {"epochs": epochs, "checkpoint_every": every}}, algorithm=algorithm
    )


def _final_state(results: Path) -> dict:
    (run_dir,) = (results / "runs").iterdir()
    checkpoints = sorted((run_dir / "checkpoints").glob("epoch_*.pt"))
    return load_checkpoint_file(checkpoints[-1])


def _assert_same_model(a: dict, b: dict) -> None:
    assert a["epoch"] == b["epoch"]
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name


def test_training_writes_checkpoints_metrics_and_settings(tmp_path, tiny_arrays):
    config = _config(epochs=3, every=2)
    outcome = train_supernet(config, seed=0, store_root=tmp_path, data=tiny_arrays, progress=False)
    assert outcome.epochs_trained == 3 and outcome.checkpoint_epochs == [2, 3]
    run = RunStore(tmp_path, outcome.run_key)
    settings = json.loads(run.settings_path.read_text())
    assert settings["seed"] == 0 and settings["config"]["train"]["epochs"] == 3
    assert settings["algorithm"]["arch_optimizer"]["type"] == "Adam"
    assert settings["data_fingerprint"] == tiny_arrays.fingerprint
    metrics = pd.read_csv(run.metrics_path)
    assert list(metrics["epoch"]) == [1, 2, 3]
    assert {"train_loss", "valid_acc", "argmax_arch", "w[1<-0][skip_connect]"} <= set(metrics)
    weights = metrics.filter(like="w[1<-0]").sum(axis=1)
    assert weights.round(5).eq(1).all()
    state = run.load_checkpoint(3)
    assert set(state) >= {"model", "algorithm", "rng", "metrics", "epoch", "settings"}
    assert set(state["algorithm"]) >= {"weight_optimizer", "arch_optimizer", "scheduler"}


def test_second_identical_call_trains_nothing(tmp_path, tiny_arrays, monkeypatch):
    config = _config(epochs=2)
    train_supernet(config, seed=1, store_root=tmp_path, data=tiny_arrays, progress=False)
    (run_dir,) = (tmp_path / "runs").iterdir()
    stamps = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}

    def fail(*args, **kwargs):
        raise AssertionError("a cached run must not build a search data stream or train")

    monkeypatch.setattr("harness.training.make_search_data", fail)
    outcome = train_supernet(config, seed=1, store_root=tmp_path, data=tiny_arrays, progress=False)
    assert outcome.epochs_trained == 0
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == stamps


def test_different_settings_and_seeds_get_different_keys(tmp_path, tiny_arrays):
    a = train_supernet(_config(epochs=1), 0, tmp_path, tiny_arrays, progress=False)
    b = train_supernet(_config(epochs=1), 1, tmp_path, tiny_arrays, progress=False)
    c = train_supernet(_config(epochs=2), 0, tmp_path, tiny_arrays, progress=False)
    assert len({a.run_key, b.run_key, c.run_key}) == 3


def test_resume_in_process_is_identical_to_uninterrupted(tmp_path, tiny_arrays):
    config = _config(epochs=4, every=2)
    train_supernet(config, 0, tmp_path / "straight", tiny_arrays, progress=False)
    # Simulate a run that stopped after its epoch-2 checkpoint: drop the later one.
    partial = tmp_path / "partial"
    train_supernet(config, 0, partial, tiny_arrays, progress=False)
    (run_dir,) = (partial / "runs").iterdir()
    (run_dir / "checkpoints" / "epoch_0004.pt").unlink()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    del manifest["epoch_0004.pt"]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    outcome = train_supernet(config, 0, partial, tiny_arrays, progress=False)
    assert outcome.resumed_from == 2 and outcome.epochs_trained == 2
    _assert_same_model(_final_state(tmp_path / "straight"), _final_state(partial))


def test_second_order_darts_trains_and_records_its_options(tmp_path, tiny_arrays):
    config = _config(epochs=1, algorithm="darts-2nd")
    outcome = train_supernet(config, 0, tmp_path, tiny_arrays, progress=False)
    settings = RunStore(tmp_path, outcome.run_key).read_settings()
    assert settings["algorithm"]["name"] == "darts-2nd"
    assert settings["algorithm"]["options"] == {"hessian_radius": 0.01}


def _harness(*args: str, env: dict | None = None, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _train_args(folder: Path, results: Path, cache: Path) -> list[str]:
    return [
        "train", "--preset", "smoke", "--epochs", "6", "--checkpoint-every", "2", "--seeds", "0",
        "--data", str(folder), "--results", str(results), "--cache", str(cache), "--quiet",
    ]  # fmt: skip


def _wait_for(path_glob, root: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(root.glob(path_glob)):
            return
        time.sleep(0.05)
    raise AssertionError(f"{path_glob} never appeared under {root}")


def test_kill_9_mid_run_then_resume_gives_identical_weights(tmp_path, tiny_image_folder):
    cache = tmp_path / "cache"
    straight = tmp_path / "straight"
    assert main(_train_args(tiny_image_folder, straight, cache)) == 0

    killed = tmp_path / "killed"
    # The same thread count as this process (see conftest), so results can be bit-identical.
    process = _harness(*_train_args(tiny_image_folder, killed, cache), env={"OMP_NUM_THREADS": "1"})
    _wait_for("runs/*/checkpoints/epoch_0002.pt", killed)
    process.send_signal(signal.SIGKILL)
    process.wait()
    states = sorted(p.name for p in killed.glob("runs/*/checkpoints/epoch_*.pt"))
    assert "epoch_0006.pt" not in states, "the kill came too late to test resumption"

    assert main(_train_args(tiny_image_folder, killed, cache)) == 0
    _assert_same_model(_final_state(straight), _final_state(killed))


def test_crash_during_checkpoint_write_resumes_from_previous(tmp_path, tiny_image_folder):
    """Die inside the atomic rename of the epoch-4 checkpoint, as a kill -9 there would."""
    cache = tmp_path / "cache"
    args = _train_args(tiny_image_folder, tmp_path / "crashed", cache)
    script = textwrap.dedent(
        f"""
        import os, sys
        import harness.store as store
        real_replace = os.replace
        def dying_replace(src, dst):
            if str(dst).endswith("epoch_0004.pt"):
                os._exit(9)
            return real_replace(src, dst)
        store.os.replace = dying_replace
        from harness.cli import main
        sys.exit(main({args!r}))
        """
    )
    crashed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert crashed.returncode == 9
    run_dir = next((tmp_path / "crashed" / "runs").iterdir())
    assert list(run_dir.glob("checkpoints/.epoch_0004.pt.*.tmp")), "a partial file is left behind"
    assert json.loads((run_dir / "manifest.json").read_text()).keys() == {"epoch_0002.pt"}

    assert main(args) == 0
    assert not list(run_dir.glob("checkpoints/*.tmp"))
    assert main(_train_args(tiny_image_folder, tmp_path / "straight", cache)) == 0
    _assert_same_model(_final_state(tmp_path / "straight"), _final_state(tmp_path / "crashed"))


def test_corrupt_checkpoint_is_reported_in_one_sentence(tmp_path, tiny_arrays, capsys):
    config = _config(epochs=2, every=1)
    train_supernet(config, 0, tmp_path, tiny_arrays, progress=False)
    (run_dir,) = (tmp_path / "runs").iterdir()
    path = run_dir / "checkpoints" / "epoch_0002.pt"
    path.write_bytes(path.read_bytes()[:1000])
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="corrupt or partial"):
        load_checkpoint_file(path)


def test_every_epoch_records_its_platform(tmp_path, tiny_arrays):
    config = build_config("smoke")
    outcome = train_supernet(config, 0, tmp_path, tiny_arrays, progress=False)
    metrics = pd.read_csv(outcome.run_dir / "metrics.csv")
    expected = f"{torch.backends.cpu.get_cpu_capability()} torch {torch.__version__}"
    assert compute_platform() == expected
    assert list(metrics["platform"]) == [expected] * config.train.epochs
    runs = collect_tables(tmp_path, truth=None)["runs"]
    assert list(runs["platform"]) == [expected]
