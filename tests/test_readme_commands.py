"""CI runs the README's set-up and test commands as written: .ci/run reads them from the
README's marked blocks (.ci/readme_commands.py) and installs nothing of its own."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "readme_commands.py"


def _reader():
    spec = importlib.util.spec_from_file_location("readme_commands", SCRIPT)
    reader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reader)
    return reader


def _ci(kind: str) -> list[str]:
    done = subprocess.run([sys.executable, str(SCRIPT), kind], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout.splitlines()


def test_ci_takes_the_readme_set_up_and_test_commands():
    setup, tests = _ci("set-up"), _ci("test")
    # the set-up line installs the project with its test extra and the example plugin whose
    # tests the suite collects (testpaths in pyproject.toml)
    assert setup[0].startswith("pip install -e \".[test]\"")
    assert "examples/harness-snip" in setup[0]
    # the official NB201 code the parity tests compare with (its pinned numpy may not build)
    assert setup[1:] == ["pip install --no-deps xautodl"]
    assert tests == ["ruff check . && python -m pytest -q"]
    readme = (ROOT / "README.md").read_text()
    assert readme.index(setup[0]) < readme.index(tests[0])


def test_ci_installs_and_runs_nothing_the_readme_does_not_say():
    run = (ROOT / ".ci" / "run").read_text()
    code = "\n".join(line for line in run.splitlines() if not line.lstrip().startswith("#"))
    assert "pip install" not in code and "pytest" not in code  # comments may name them
    assert 'eval "$setup"' in run and 'eval "$tests"' in run


def test_a_missing_or_broken_marker_is_one_sentence():
    reader = _reader()
    with pytest.raises(ValueError, match="no ci: test block"):
        reader.commands("# title\n```bash\nls\n```\n", "test")
    with pytest.raises(ValueError, match="right above a fenced code block"):
        reader.commands("<!-- ci: test -->\ntext\n", "test")
    with pytest.raises(ValueError, match="not closed"):
        reader.commands("<!-- ci: test -->\n```bash\nls\n", "test")
    two = "<!-- ci: set-up -->\n```bash\n# note\na\n\nb\n```\n<!-- ci: set-up x -->\n```\nc\n```"
    assert reader.commands(two, "set-up") == ["a", "b", "c"]
