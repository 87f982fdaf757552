"""docs/python-api.md's code blocks, executed in order in one namespace (smoke preset)."""

from __future__ import annotations

import re

import pandas as pd
from conftest import REPO

PAGE = REPO / "docs" / "python-api.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def test_the_python_api_walkthrough_runs(tmp_path, monkeypatch, tiny_image_folder,
                                         ground_truth_csv, capsys):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_CIFAR10", str(tiny_image_folder))
    monkeypatch.setenv("HARNESS_GROUND_TRUTH", str(ground_truth_csv))
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    blocks = BLOCK.findall(PAGE.read_text())
    assert len(blocks) == 5
    namespace: dict = {"__name__": "walkthrough"}
    for block in blocks:
        exec(compile(block, str(PAGE), "exec"), namespace)  # noqa: S102 - the page's own code

    study, tables, chosen = namespace["study"], namespace["tables"], namespace["chosen"]
    assert {"magnitude", "ostr", "param-magnitude"} == set(study.records["method"])
    assert sorted(study.runs["seed"]) == [0, 1]
    assert isinstance(tables.selections, pd.DataFrame) and len(tables.selections) == 12
    assert list(chosen["method"]) == ["magnitude", "ostr[taylor]"]
    assert chosen["computed"].tolist() == [False, True]  # magnitude was in the store
    # The rule in the page never picks a parameter-free op.
    final = study.records[study.records["method"] == "param-magnitude"]
    assert (final["param_free_ops"] == 0).all()
    assert "| param-magnitude |" in namespace["summary"].paper_table_markdown
    assert (tmp_path / "demo-report" / "index.html").is_file()
    assert "param-magnitude" in capsys.readouterr().out
