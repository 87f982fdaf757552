"""harness report: figures, tables and HTML from synthetic but realistic result tables."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.errors import HarnessError
from harness.report import build_report, format_table_for_terminal
from harness.report.correlations import matrix_correlation, row_correlations
from harness.report.load import load_results, select_results
from harness.report.markup import latex_escape
from harness.report.statistics import bootstrap_ci, holm_bonferroni
from harness.report.tables import paired_test, sign_flip_p_value
from spaces.nb201.codec import encode
from spaces.nb201.ops import OP_NAMES, PARAMETER_FREE_OPS
from spaces.nb201.space import NB201Space

ALGORITHMS = {"darts": "d0d0d0d0d0d0d0d0", "lambda-darts": "1a1a1a1a1a1a1a1a"}
SEEDS = (0, 1, 2)
EPOCHS = (2, 4, 6)
METHODS = {  # display name -> (base name, upper bound)
    "magnitude": ("magnitude", False),
    "ostr[taylor]": ("ostr", False),
    "random": ("random", False),
    "oracle": ("oracle", True),
}
DATASETS = {"cifar10": 0.0, "cifar100": -20.0, "imagenet16": -45.0}


def _cell(method: str, seed: int, epoch: int, rng: np.random.Generator) -> tuple[int, ...]:
    if method == "oracle":
        return (3, 3, 3, 3, 3, 3)
    if method == "magnitude":  # collapses: more skip_connect the longer it trains
        skips = min(6, epoch // 2 + seed % 2)
        return tuple([1] * skips + [3] * (6 - skips))
    return tuple(int(v) for v in rng.integers(0, 5, 6))


def _accuracy(method: str, algorithm: str, seed: int, epoch: int, dataset: str) -> float:
    base = {"magnitude": 80.0, "ostr[taylor]": 90.0, "random": 70.0, "oracle": 94.37}[method]
    if method != "oracle":
        base += (-1.5 if method == "magnitude" else 0.4) * epoch + 0.7 * seed
        base += 2.0 if algorithm == "lambda-darts" else 0.0
    return base + DATASETS[dataset]


def make_tables(
    algorithms: dict[str, str] = ALGORITHMS, preset: str = "proxy", final_epoch: int = 6
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    records, selections, runs = [], [], []
    for algorithm, key in algorithms.items():
        for seed in SEEDS:
            run_key = f"{key[:8]}{seed:08d}"
            runs.append({
                "config_key": key, "preset": preset, "algorithm": algorithm, "run_key": run_key,
                "seed": seed, "epochs": final_epoch, "train_seconds": 100.0 + seed,
                "final_valid_acc": 0.6,
                "settings": json.dumps({"algorithm": algorithm, "preset": preset, "seed": seed,
                                        "train": {"epochs": final_epoch, "lr": 0.025}}),
            })  # fmt: skip
            for epoch in EPOCHS:
                alphas = rng.normal(size=(6, 5))
                for method, (name, upper) in METHODS.items():
                    cell = _cell(method, seed, epoch, rng)
                    ident = {
                        "config_key": key, "preset": preset, "algorithm": algorithm,
                        "run_key": run_key, "seed": seed, "epoch": epoch,
                        "final_epoch": final_epoch, "method": method, "method_name": name,
                        "method_key": f"{name}-key", "upper_bound": upper, "arch": encode(cell),
                    }  # fmt: skip
                    cost = {"wall_seconds": 0.5 if name == "ostr" else 0.01,
                            "forward_passes": 30 if name == "ostr" else 0,
                            "backward_passes": 0, "finetune_steps": 0}  # fmt: skip
                    truth = rng.uniform(10, 94, size=(6, 5))
                    truth[0, 0] = np.nan  # unknown cells happen
                    scores = None
                    if name == "magnitude":
                        scores = alphas.tolist()
                    elif name == "ostr":
                        scores = (truth + rng.normal(scale=5, size=truth.shape)).tolist()
                    selections.append({
                        **ident, **cost,
                        "scores": None if scores is None else json.dumps(scores),
                        "alphas": json.dumps(alphas.tolist()),
                        "gt_importance": json.dumps(truth.tolist()),
                        "edge_order": json.dumps(list(range(6))),
                    })  # fmt: skip
                    free = sum(OP_NAMES[c] in PARAMETER_FREE_OPS for c in cell)
                    disconnected = not NB201Space().output_reachable(cell)
                    for dataset in DATASETS:
                        for metric in ("test", "valid"):
                            for fidelity in ("200ep", "12ep"):
                                acc = _accuracy(method, algorithm, seed, epoch, dataset)
                                if fidelity == "12ep":
                                    acc -= 10.0
                                records.append({
                                    **ident, **cost, "benchmark_index": 7, "dataset": dataset,
                                    "metric": metric, "fidelity": fidelity, "accuracy": acc,
                                    "param_free_ops": free, "skip_ops": cell.count(1),
                                    "disconnected": disconnected,
                                })  # fmt: skip
    frame = pd.DataFrame(records)
    # A missing ground-truth value must be ignored, not poison the mean.
    unknown = (
        (frame["method"] == "random") & (frame["seed"] == 0) & (frame["dataset"] == "cifar100")
    )
    frame.loc[unknown, "accuracy"] = math.nan
    return frame, pd.DataFrame(selections), pd.DataFrame(runs)


def write_tables(directory: Path, frames: tuple[pd.DataFrame, ...]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in zip(("records", "selections", "runs"), frames, strict=True):
        frame.to_parquet(directory / f"{name}.parquet", index=False)
    return directory


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("report")
    frames = make_tables()
    results = write_tables(root / "results", frames)
    summary = build_report(results, root / "report")
    return summary, frames[0]


def test_every_output_exists_and_index_links_every_png(built) -> None:
    summary, _ = built
    out = summary.out_dir
    for stem in ("degeneration", "collapse", "rank_correlation"):
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{stem}.{ext}").stat().st_size > 1000
    for name in ("paper_table.md", "paper_table.tex", "rank_correlations.md"):
        assert (out / "tables" / name).stat().st_size > 100
    assert set(summary.files) >= {out / "index.html", out / "tables" / "paper_table.md"}
    page = (out / "index.html").read_text()
    for png in (out / "figures").glob("*.png"):
        assert f'src="figures/{png.name}"' in page
    assert "<details>" in page and "http" not in page  # offline: no external resources
    assert "d0d0d0d0d0d0d0d0" in page and "<table>" in page
    assert format_table_for_terminal(summary) == (out / "tables" / "paper_table.md").read_text()


def _parse_paper_table(text: str) -> dict[tuple[str, str], dict[str, str]]:
    cells, algorithm, header = {}, "", []
    for line in text.splitlines():
        if line.startswith("## "):
            algorithm, header = line[3:].split(" — ")[0], []
        elif line.startswith("|") and "---" not in line:
            row = [c.strip() for c in line.strip("|").split(" | ")]
            if not header:
                header = row
            else:
                cells[(algorithm, row[0])] = dict(zip(header, row, strict=True))
    return cells


# "mean ± std [low, high]", as the paper table prints an accuracy over seeds.
CELL = re.compile(r"^(?P<mean>[\d.]+) ± (?P<std>[\d.]+) \[(?P<low>[\d.]+), (?P<high>[\d.]+)\]$")


def test_paper_table_numbers_equal_recomputed_mean_std(built) -> None:
    summary, records = built
    table = _parse_paper_table(summary.paper_table_markdown)
    final = records[
        (records["fidelity"] == "200ep")
        & (records["metric"] == "test")
        & (records["epoch"] == records["final_epoch"])
    ].dropna(subset=["accuracy"])
    titles = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet16": "ImageNet16-120"}
    checked = 0
    for (algorithm, method, dataset), acc in final.groupby(["algorithm", "method", "dataset"]):
        label = "oracle (upper bound)" if method == "oracle" else method
        cell = CELL.match(table[(algorithm, label)][titles[dataset]])
        assert float(cell["mean"]) == pytest.approx(acc["accuracy"].mean(), abs=0.006)
        assert float(cell["std"]) == pytest.approx(acc["accuracy"].std(ddof=1), abs=0.006)
        # The interval is the percentile bootstrap of the mean, inside [0, 100], printed to
        # one decimal rounded outward (float noise below 1e-6 aside).
        low, high = bootstrap_ci(acc["accuracy"], bounds=(0.0, 100.0))
        assert low - 0.1 < float(cell["low"]) <= low + 1e-6
        assert high - 1e-6 <= float(cell["high"]) < high + 0.1
        assert 0.0 <= float(cell["low"]) <= float(cell["mean"]) <= float(cell["high"]) <= 100.0
        checked += 1
    assert checked == 2 * 4 * 3
    # These runs (6 epochs) are no published protocol: no number beside them (rows that
    # match one are checked in test_published.py).
    assert table[("darts", "magnitude")]["published (C10 / C100 / IN16)"] == "—"
    assert table[("lambda-darts", "magnitude")]["published (C10 / C100 / IN16)"] == "—"
    assert table[("darts", "ostr[taylor]")]["published (C10 / C100 / IN16)"] == "—"
    assert table[("darts", "oracle (upper bound)")]["p vs magnitude"] == "—"
    assert table[("darts", "ostr[taylor]")]["search s/run"] == "101"
    # ostr beats magnitude on all 3 seeds: the exact two-sided p is 2/8.
    assert table[("darts", "ostr[taylor]")]["p vs magnitude"] == "0.250"
    assert table[("darts", "ostr[taylor]")]["test"] == "sign-flip exact, n=3"
    # random beats it on every seed too: Holm over the two p-values of 0.25 doubles both.
    assert table[("darts", "random")]["p vs magnitude"] == "0.250"
    assert holm_bonferroni([0.25, 0.25]) == [0.5, 0.5]
    assert table[("darts", "ostr[taylor]")]["p Holm"] == "0.500"
    assert table[("darts", "oracle (upper bound)")]["p Holm"] == "—"
    # ostr is 21.40 points above magnitude on every seed: the interval is that point and
    # d_z, with no spread of the differences, is undefined.
    assert table[("darts", "ostr[taylor]")]["diff vs magnitude (C10)"] == "+21.40 [21.4, 21.4]"
    assert table[("darts", "ostr[taylor]")]["d_z"] == "n/a"
    # Magnitude's final cell (epoch 6) has 3 + seed % 2 skips: only seed 1 collapses.
    c10 = final[(final["algorithm"] == "darts") & (final["dataset"] == "cifar10")]
    for method in ("magnitude", "ostr[taylor]", "random"):
        row = table[("darts", method)]
        assert row["collapsed seeds"] == "1/3"
        on_seed_1 = c10.loc[(c10["method"] == method) & (c10["seed"] == 1), "accuracy"]
        assert row["C10 on collapsed seeds"] == f"{on_seed_1.item():.2f}"  # one seed: no CI
    # Disconnected final cells, counted from the records' flag.
    for method in ("magnitude", "ostr[taylor]", "random"):
        rows = records[(records["algorithm"] == "darts") & (records["method"] == method)
                       & (records["epoch"] == 6)].drop_duplicates("seed")  # fmt: skip
        expected = f"{int(rows['disconnected'].sum())}/3"
        assert table[("darts", method)]["disconnected cells"] == expected


def test_latex_is_booktabs_and_escaped(built) -> None:
    summary, _ = built
    tex = (summary.out_dir / "tables" / "paper_table.tex").read_text()
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert rule in tex
    assert "ostr{[}taylor{]}" in tex and "$\\pm$" in tex and "±" not in tex
    body = tex[tex.index("\\toprule") : tex.index("\\bottomrule")]
    assert not re.search(r"(?<!\\)_", body)
    assert latex_escape("a_b & 50% [x]") == r"a\_b \& 50\% {[}x{]}"


def test_sign_flip_permutation_p_values() -> None:
    assert sign_flip_p_value([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    assert sign_flip_p_value([-1.0, -2.0, -3.0]) == pytest.approx(2 / 8)
    d = np.array([1.0, -1.0, 3.0])
    patterns = [np.array(s) for s in np.ndindex(2, 2, 2)]
    expected = np.mean([abs(((1 - 2 * s) * d).sum()) >= 3 for s in patterns])
    assert sign_flip_p_value(d) == pytest.approx(expected)
    assert sign_flip_p_value([0.0, 0.0]) == 1.0
    seeds = pd.Series([1.0, 2.0, 3.0], index=[0, 1, 2])
    assert paired_test(seeds, seeds - 1) == (pytest.approx(0.25), "sign-flip exact, n=3")
    assert paired_test(seeds.iloc[:1], seeds.iloc[:1])[1] == "n/a"
    many = pd.Series(np.arange(12.0) ** 1.3 - 4)
    p, test = paired_test(many, pd.Series(np.zeros(12)))
    assert test.startswith("Wilcoxon") and p == pytest.approx(stats.wilcoxon(many).pvalue)


def test_kendall_tau_is_one_for_truth_and_minus_one_reversed() -> None:
    truth = np.random.default_rng(1).uniform(10, 90, size=(6, 5))
    truth[2, 4] = np.nan
    assert matrix_correlation(truth, truth)[:2] == (pytest.approx(1.0), pytest.approx(1.0))
    assert matrix_correlation(-truth, truth)[:2] == (pytest.approx(-1.0), pytest.approx(-1.0))
    constant = np.ones((6, 5))
    assert math.isnan(matrix_correlation(constant, truth)[0])
    _, selections, _ = make_tables({"darts": "d0d0d0d0d0d0d0d0"})
    row = selections[selections["method"] == "ostr[taylor]"].iloc[[0]].copy()
    row["scores"] = row["gt_importance"]
    per_row = row_correlations(row)
    assert per_row.set_index("method").at["ostr[taylor]", "tau"] == pytest.approx(1.0)
    row["scores"] = json.dumps((-np.array(json.loads(row["gt_importance"].iloc[0]))).tolist())
    assert row_correlations(row).set_index("method").at["ostr[taylor]", "tau"] == pytest.approx(-1)
    unscored = selections[selections["method"].isin(["random", "oracle"])]
    assert row_correlations(unscored).empty


def test_filters_and_ambiguous_configs(tmp_path: Path) -> None:
    records, selections, runs = make_tables()
    other = make_tables({"darts": "ffff0000ffff0000"}, preset="paper", final_epoch=8)
    both = tuple(pd.concat([a, b]) for a, b in zip((records, selections, runs), other, strict=True))
    tables = load_results(write_tables(tmp_path / "results", both))
    with pytest.raises(HarnessError, match="--preset or --config") as error:
        select_results(tables)
    assert "d0d0d0d0d0d0d0d0" in str(error.value) and "ffff0000ffff0000" in str(error.value)
    assert "8 epochs" in str(error.value)
    with pytest.raises(HarnessError, match="--preset or --config"):
        build_report(tmp_path / "results", tmp_path / "report")
    chosen = select_results(tables, preset="proxy")
    assert set(chosen.records["config_key"]) == set(ALGORITHMS.values())
    assert set(chosen.runs["config_key"]) == set(ALGORITHMS.values())
    darts = select_results(tables, algorithm="darts", config_key="ffff")
    assert set(darts.selections["config_key"]) == {"ffff0000ffff0000"}
    assert list(darts.records["algorithm"].unique()) == ["darts"]
    only_lambda = select_results(tables, algorithm="lambda-darts")
    assert only_lambda.algorithms == ["lambda-darts"]
    with pytest.raises(HarnessError, match="no results match"):
        select_results(tables, preset="nope")


def test_missing_tables_are_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="run `harness run` first"):
        build_report(tmp_path, tmp_path / "report")
    records, selections, runs = make_tables({"darts": "d0d0d0d0d0d0d0d0"})
    write_tables(tmp_path / "partial", (records, selections, runs))
    (tmp_path / "partial" / "runs.parquet").unlink()
    with pytest.raises(HarnessError, match="no results in"):
        load_results(tmp_path / "partial")
    assert not (tmp_path / "report").exists()  # nothing written before the error


def test_runs_from_different_platforms_are_flagged(tmp_path) -> None:
    records, selections, runs = make_tables({"darts": "abcdabcdabcdabcd"})
    same = runs.assign(platform="AVX2 torch 2.4.1")
    out = build_report(write_tables(tmp_path / "a", (records, selections, same)), tmp_path / "ra")
    page = (out.out_dir / "index.html").read_text()
    assert "AVX2 torch 2.4.1" in page and "different platforms" not in page
    mixed = runs.assign(platform=["AVX2 torch 2.4.1", "AVX512 torch 2.4.1"] * (len(runs) // 2)
                        + ["AVX2 torch 2.4.1"] * (len(runs) % 2))  # fmt: skip
    out = build_report(write_tables(tmp_path / "b", (records, selections, mixed)), tmp_path / "rb")
    page = (out.out_dir / "index.html").read_text()
    assert "trained on different platforms (AVX2 torch 2.4.1 / AVX512 torch 2.4.1)" in page
