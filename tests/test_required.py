"""A test whose data is missing skips locally and fails where everything must exist."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO

TEST = "tests/test_cli.py::test_bench_lookup_prints_the_all_skip_cell"


def _pytest(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_REQUIRE_ALL"}
    env.update(HARNESS_GROUND_TRUTH=str(tmp_path / "absent.csv"), **extra)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_missing_ground_truth_skips_and_names_itself(tmp_path):
    result = _pytest(tmp_path)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout and "absent.csv" in result.stdout


def test_missing_ground_truth_fails_when_everything_is_required(tmp_path):
    result = _pytest(tmp_path, HARNESS_REQUIRE_ALL="1")
    assert result.returncode == 1, result.stdout  # a fixture that fails counts as an error
    assert "1 error" in result.stdout and "HARNESS_REQUIRE_ALL=1" in result.stdout
