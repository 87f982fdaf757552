"""The fixed-alpha supernet (DARTS-PT's "blank") and the published number it carries."""

from __future__ import annotations

import json

import pandas as pd
import torch

from harness.checkpoints import build_supernet
from harness.experiment import build_config
from harness.store import RunStore
from harness.training import train_supernet


def _config(algorithm):
    return build_config(
        "smoke", {"train": {"epochs": 3, "checkpoint_every": 1}}, algorithm=algorithm
    )


def test_fixed_alpha_keeps_alphas_bit_identical_and_trains_weights(tmp_path, tiny_arrays):
    config = _config("darts-fixed-alpha")
    outcome = train_supernet(config, 3, tmp_path, tiny_arrays, progress=False)
    torch.manual_seed(3)
    initial = build_supernet(config.space, num_classes=10, compute=config.compute)
    store = RunStore(tmp_path, outcome.run_key)
    for epoch in (1, 2, 3):
        model = store.load_checkpoint(epoch)["model"]
        assert torch.equal(model["alphas"], initial.alphas.detach()), epoch
    final = store.load_checkpoint(3)["model"]
    moved = [n for n, p in initial.state_dict().items() if not torch.equal(p, final[n])]
    assert any("conv" in n or "weight" in n for n in moved)  # the weights did train

    metrics = pd.read_csv(outcome.run_dir / "metrics.csv")
    weight_columns = [c for c in metrics.columns if c.startswith("w[")]
    assert (metrics[weight_columns].nunique() == 1).all()
    recorded = json.loads((outcome.run_dir / "settings.json").read_text())["algorithm"]
    assert recorded["name"] == "darts-fixed-alpha"
    assert "none" in recorded["arch_optimizer"]["type"]


def test_fixed_alpha_differs_from_darts_in_run_key(tmp_path, tiny_arrays):
    darts = train_supernet(_config("darts"), 3, tmp_path, tiny_arrays, progress=False)
    fixed = train_supernet(_config("darts-fixed-alpha"), 3, tmp_path, tiny_arrays, progress=False)
    assert darts.run_key != fixed.run_key
    moved = RunStore(tmp_path, darts.run_key).load_checkpoint(3)["model"]["alphas"]
    kept = RunStore(tmp_path, fixed.run_key).load_checkpoint(3)["model"]["alphas"]
    assert not torch.equal(moved, kept)
