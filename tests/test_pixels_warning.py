"""A published-protocol preset on anything but the official pixels says so, once."""

from __future__ import annotations

from harness.cli import main
from harness.experiment import build_config
from harness.presets import pixels_warning


def test_only_published_protocol_presets_off_the_official_files_warn():
    for preset in ("paper", "xautodl"):
        assert "not the official pixels" in pixels_warning(build_config(preset))
        official = build_config(preset, {"data": {"source": "torchvision"}})
        assert pixels_warning(official) is None
    for preset in ("proxy", "quick", "smoke"):
        assert pixels_warning(build_config(preset)) is None


def test_train_prints_one_warning_line_before_any_work(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    args = ["train", "--preset", "paper", "--seeds", "0", "--data", str(missing),
            "--results", str(tmp_path / "results")]  # fmt: skip
    assert main(args) != 0  # the missing folder stops it, after the warning
    err = capsys.readouterr().err
    assert sum("warning:" in line for line in err.splitlines()) == 1
    assert "--data-source torchvision" in err
    assert not (tmp_path / "results").exists()
