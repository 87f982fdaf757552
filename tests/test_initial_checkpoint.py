"""Checkpoint 0: the untrained supernet kept and selected from (Zero-Cost-PT at
initialisation is one command), without changing the keys of runs that do not ask for it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from harness.checkpoints import build_supernet
from harness.cli import main
from harness.experiment import build_config
from harness.keys import run_key
from harness.store import RunStore


def test_zc_pt_at_initialisation_is_one_command(run_args):
    args = run_args("--seeds", "0", "--methods", "zc-pt,magnitude", "--epochs", "1",
                    "--set", "train.initial_checkpoint=true")  # fmt: skip
    assert main(args) == 0
    results = Path(args[args.index("--results") + 1])
    selections = pd.read_parquet(results / "selections.parquet")
    assert sorted(set(selections["epoch"])) == [0, 1]
    assert set(selections[selections["epoch"] == 0]["method"]) == {"zc-pt", "magnitude"}
    # checkpoint 0 is the supernet as built for the seed, before any step
    runs = pd.read_parquet(results / "runs.parquet")
    run = RunStore(results, runs["run_key"].iloc[0])
    state = run.load_checkpoint(0)["model"]
    config = build_config("smoke", {"train": {"epochs": 1, "initial_checkpoint": True}})
    torch.manual_seed(0)
    fresh = build_supernet(config.space, 10, config.compute).state_dict()
    assert all(torch.equal(state[name], fresh[name]) for name in fresh)


def test_runs_without_it_keep_their_keys():
    plain = build_config("smoke")
    assert "initial_checkpoint" not in plain.to_dict()["train"]
    with_zero = build_config("smoke", {"train": {"initial_checkpoint": True}})
    assert run_key(with_zero, 0, "d") != run_key(plain, 0, "d")
