"""The command line: help texts and one-sentence errors for the foundation commands."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.cli import main


def test_help_lists_every_command_with_a_description():
    result = subprocess.run(
        [sys.executable, "-m", "harness", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("run", "report", "train", "select", "bench", "methods", "algorithms"):
        line = next(line for line in result.stdout.splitlines() if line.strip().startswith(command))
        assert len(line.split()) > 3, f"{command} has no description"


def test_bench_lookup_prints_the_all_skip_cell(ground_truth_csv, capsys):
    assert main(["bench", "lookup", "1835", "--ground-truth", str(ground_truth_csv)]) == 0
    out = capsys.readouterr().out
    assert "skip_connect~0|+|skip_connect~0|skip_connect~1|" in out
    assert "cifar10_test_200ep" in out and "54.30" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "lookup", "|conv~0|+|x~0|"], "is not a NAS-Bench-201 arch string"),
        (["bench", "lookup", "99999"], "99999"),
        (["bench", "lookup", "5", "--ground-truth", "/no/table.csv"], "does not exist"),
        (["train", "--data", "/no/folder", "--preset", "smoke"], "CIFAR-10 image folder"),
        (["train", "--seeds", "1-x"], "cannot read seeds"),
        (["bench", "import", "/no/file.pth", "--out", "x.csv"], "/no/file.pth"),
    ],
)
def test_user_errors_are_one_sentence_with_a_nonzero_exit(argv, message, capsys, ground_truth_csv,
                                                          monkeypatch):  # fmt: skip
    monkeypatch.setenv("HARNESS_GROUND_TRUTH", str(ground_truth_csv))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert err.startswith("harness: error: ") and len(err.splitlines()) == 1
    assert "Traceback" not in err
