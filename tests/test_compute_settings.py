"""How the supernet computes is a recorded setting: in the run key, checked at the boundary."""

from __future__ import annotations

import shutil

import pytest
import torch

from harness.checkpoints import load_supernet
from harness.cli import main
from harness.config import FORMAT_1_COMPUTE, ComputeSettings, ExperimentConfig
from harness.experiment import build_config
from harness.keys import STORE_FORMAT_VERSION, run_key
from harness.store import load_checkpoint_file
from harness.training import train_supernet


def test_defaults_are_the_fused_cell_in_channels_last_and_in_the_key():
    config = build_config("smoke")
    assert config.compute == ComputeSettings(cell="fused", channels_last=True)
    keys = {
        run_key(build_config("smoke", {"compute": change}), 0, "data")
        for change in ({}, {"cell": "reference"}, {"channels_last": False}, {"autocast": "bf16"})
    }
    assert len(keys) == 4
    assert STORE_FORMAT_VERSION == 2


def test_configs_written_before_the_compute_section_read_as_the_reference_cell():
    raw = build_config("smoke").to_dict()
    del raw["compute"]
    old = ExperimentConfig.from_dict(raw)
    assert old.compute == FORMAT_1_COMPUTE == ComputeSettings(cell="reference", channels_last=False)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"cell": "fast"}, "unknown compute.cell 'fast'"),
        ({"autocast": "fp16"}, "unknown compute.autocast 'fp16'"),
        ({"channels_last": "yes"}, "compute.channels_last must be true or false"),
    ],
)
def test_bad_compute_settings_are_one_sentence(override, message):
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match=message):
        build_config("smoke", {"compute": override})


def test_cli_rejects_a_bad_compute_setting_before_any_work(tmp_path, capsys):
    results = tmp_path / "results"
    code = main(
        ["train", "--preset", "smoke", "--seeds", "0", "--results", str(results),
         "--set", "compute.cell=fast"]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown compute.cell 'fast'" in err and "Traceback" not in err
    assert not results.exists()


def test_checkpoint_rebuilds_the_supernet_it_was_trained_with(tmp_path, tiny_arrays):
    config = build_config("smoke", {"train": {"epochs": 1}, "compute": {"cell": "reference"}})
    outcome = train_supernet(config, 0, tmp_path, tiny_arrays, progress=False)
    (checkpoint,) = (tmp_path / "runs" / outcome.run_key / "checkpoints").glob("*.pt")
    loaded = load_supernet(checkpoint)
    assert loaded.supernet.cell_impl == "reference" and loaded.supernet.channels_last
    # A format-1 checkpoint (no compute section) loads with the cell that made it.
    state = load_checkpoint_file(checkpoint)
    del state["settings"]["config"]["compute"]
    old = tmp_path / "old.pt"
    torch.save(state, old)
    rebuilt = load_supernet(old).supernet
    assert rebuilt.cell_impl == "reference" and not rebuilt.channels_last
    # A compiled run's checkpoint is rebuilt uncompiled for selection, and says how it trained.
    state = load_checkpoint_file(checkpoint)
    state["settings"]["config"]["compute"].update(cell="fused", compile=True)
    compiled = tmp_path / "compiled.pt"
    torch.save(state, compiled)
    loaded = load_supernet(compiled)
    assert loaded.config.compute.compile and not loaded.supernet.compile_cells


def test_fused_and_reference_training_agree_to_float_tolerance(tmp_path, tiny_arrays):
    states = {}
    for cell in ("reference", "fused"):
        config = build_config(
            "smoke",
            {"train": {"epochs": 1}, "compute": {"cell": cell, "channels_last": False}},
        )
        outcome = train_supernet(config, 0, tmp_path / cell, tiny_arrays, progress=False)
        (checkpoint,) = (tmp_path / cell / "runs" / outcome.run_key / "checkpoints").glob("*.pt")
        states[cell] = load_checkpoint_file(checkpoint)["model"]
    assert states["fused"].keys() == states["reference"].keys()
    for name, value in states["reference"].items():
        torch.testing.assert_close(states["fused"][name], value, rtol=1e-3, atol=1e-4, msg=name)


def test_compiling_on_the_cpu_without_a_cxx_compiler_is_refused_before_any_work(
    tmp_path, capsys
):
    inductor_config = pytest.importorskip("torch._inductor.config")
    results = tmp_path / "results"
    with inductor_config.patch({"cpp.cxx": (None, str(tmp_path / "no-such-g++"))}):
        code = main(["run", "--preset", "smoke", "--set", "compute.compile=true", "--methods",
                     "magnitude", "--seeds", "0", "--results", str(results)])  # fmt: skip
        build_config("smoke", {"compute": {"compile": False}})  # not compiling: no compiler needed
    assert code == 2
    err = capsys.readouterr().err
    assert "needs a C++ compiler" in err and "no-such-g++" in err and "Traceback" not in err
    assert not results.exists()
    if shutil.which("g++"):
        build_config("smoke", {"compute": {"compile": True}})  # the compiler this machine has


def test_a_new_compiled_graph_changes_compiled_keys_only(monkeypatch):
    import harness.keys as keys_module

    compiled = build_config("smoke", {"compute": {"compile": True}})
    eager = build_config("smoke")
    before = {c.compute.compile: run_key(c, 0, "data") for c in (compiled, eager)}
    groups_before = keys_module.config_key(compiled.to_dict(), "data")
    monkeypatch.setattr(keys_module, "COMPILED_GRAPH_REVISION", 1)
    assert run_key(compiled, 0, "data") != before[True]
    assert keys_module.config_key(compiled.to_dict(), "data") != groups_before
    assert run_key(eager, 0, "data") == before[False]
