"""`harness run` then `harness report` on the smoke preset, checked against the Parquet table."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from harness.cli import main

DATASET_COLUMNS = {"CIFAR-10": "cifar10", "CIFAR-100": "cifar100", "ImageNet16-120": "imagenet16"}


def _markdown_rows(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        for line in lines[2:]
    ]


def test_run_then_report(tmp_path, tiny_image_folder, ground_truth_csv, capsys):
    results, out = tmp_path / "results", tmp_path / "report"
    args = [
        "run", "--preset", "smoke", "--seeds", "0-2", "--quiet",
        "--methods", "magnitude,darts-pt[finetune_epochs=0.25],random,oracle",
        "--data", str(tiny_image_folder), "--cache", str(tmp_path / "cache"),
        "--results", str(results), "--ground-truth", str(ground_truth_csv),
    ]  # fmt: skip
    assert main(args) == 0
    assert main(["report", "--results", str(results), "--out", str(out), "--table"]) == 0
    printed = capsys.readouterr().out
    assert "| magnitude |" in printed

    for name in ("degeneration", "collapse", "rank_correlation"):
        for suffix in ("png", "pdf"):
            assert (out / "figures" / f"{name}.{suffix}").stat().st_size > 1000
    html = (out / "index.html").read_text()
    assert "image folder: not the official pixels" in html  # what produced it, recorded
    assert "seeded (split_seed 0)" in html
    for png in (out / "figures").glob("*.png"):
        assert f"figures/{png.name}" in html
    assert (out / "tables" / "paper_table.tex").read_text().count("\\toprule") >= 1

    records = pd.read_parquet(results / "records.parquet")
    final = records[
        (records.epoch == records.final_epoch) & (records.metric == "test")
        & (records.fidelity == "200ep")
    ]  # fmt: skip
    rows = _markdown_rows((out / "tables" / "paper_table.md").read_text())
    checked = 0
    for row in rows:
        method = row["method"].replace(" (upper bound)", "")
        for title, dataset in DATASET_COLUMNS.items():
            values = final[(final.method == method) & (final.dataset == dataset)].accuracy
            mean, std = re.match(r"([\d.]+) ± ([\d.]+)", row[title]).groups()
            assert float(mean) == pytest.approx(values.mean(), abs=0.006)
            assert float(std) == pytest.approx(values.std(ddof=1), abs=0.006)
            checked += 1
    assert checked == 4 * 3


def test_ostr_ablation_runs_and_gets_its_own_table(tmp_path, run_args):
    from methods.selection.ostr import ABLATION

    results, out = tmp_path / "results", tmp_path / "report"
    assert main(run_args("--seeds", "0", "--methods", "ostr-ablation")) == 0
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    table = out / "tables" / "ostr_ablation.md"
    text = table.read_text()
    assert "every other choice the harness's" in text
    methods = [row["method"] for row in _markdown_rows(text)]
    assert len(methods) == len(ABLATION) and set(methods) == set(ABLATION)
    assert "tables/ostr_ablation.md" in (out / "index.html").read_text()
