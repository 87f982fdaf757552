"""The report's statistics: bootstrap intervals, paired differences, Holm, collapse, cut cells."""

from __future__ import annotations

import inspect
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.ground_truth import GroundTruth
from harness.records import _accuracy_rows
from harness.report import curves
from harness.report.load import load_results
from harness.report.statistics import (
    bootstrap_ci,
    cohens_dz,
    collapsed_seeds,
    holm_bonferroni,
    mean_ci_by,
    means_on_seeds,
    paired_difference,
    summarise,
)
from harness.report.tables import display_table, format_interval, paper_table
from spaces.darts.space import darts_space
from spaces.nb201.codec import all_cells, decode, encode
from spaces.nb201.ops import OP_NAMES
from spaces.nb201.space import NB201Space, nb201_space

# Final-epoch CIFAR-10 accuracies of magnitude in the README's proxy example (seeds 0-4 as
# far as the text gives them; the rest plausible): a skewed sample with one collapsed seed.
SKEWED = [54.30, 88.18, 93.78, 92.41, 93.22]
NONE, SKIP, C1, C3, POOL = (OP_NAMES.index(n) for n in OP_NAMES)


def _scipy_percentile_interval(values, seed: int, resamples: int) -> tuple[float, float]:
    # scipy >= 1.15 takes ``rng``; older releases called the same argument ``random_state``.
    keyword = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    result = stats.bootstrap(
        (np.asarray(values, dtype=float),), np.mean, n_resamples=resamples,
        method="percentile", confidence_level=0.95, **{keyword: np.random.default_rng(seed)},
    )  # fmt: skip
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("values", [SKEWED, [71.0, 71.7, 72.4], list(np.linspace(40, 95, 12))])
def test_bootstrap_ci_equals_scipy_percentile_bootstrap(values, seed) -> None:
    # Both draw the same (resamples x n) index matrix from default_rng(seed) with one
    # ``integers`` call and take linear-interpolated quantiles of the resample means, so
    # they agree up to the summation order of a mean: 1e-9 points, far below the 0.01 the
    # table prints. bootstrap_ci sorts its input first, so scipy gets the sorted values.
    ours = bootstrap_ci(values, resamples=10_000, seed=seed)
    theirs = _scipy_percentile_interval(sorted(values), seed, 10_000)
    assert ours == pytest.approx(theirs, abs=1e-9)
    assert ours[0] < np.mean(values) < ours[1]


def test_bootstrap_ci_is_deterministic_order_free_and_needs_two_values() -> None:
    shuffled = [SKEWED[i] for i in (3, 0, 4, 1, 2)]
    assert bootstrap_ci(SKEWED) == bootstrap_ci(shuffled) == bootstrap_ci(SKEWED + [math.nan])
    spread = list(np.linspace(40, 95, 12))  # SKEWED's few distinct means may tie across seeds
    assert bootstrap_ci(spread, seed=1) != bootstrap_ci(spread)  # the seed is what fixes it
    assert all(math.isnan(v) for v in bootstrap_ci([88.18]))
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert bootstrap_ci([94.37, 94.37, 94.37]) == (94.37, 94.37)
    low90, high90 = bootstrap_ci(SKEWED, confidence=0.90)
    low95, high95 = bootstrap_ci(SKEWED)
    assert low95 <= low90 < high90 <= high95
    with pytest.raises(ValueError):
        bootstrap_ci(SKEWED, confidence=95)


def test_bootstrap_ci_agrees_with_the_normal_interval_on_a_large_sample() -> None:
    sample = np.random.default_rng(3).normal(70.0, 8.0, size=200)
    low, high = bootstrap_ci(sample)
    half = 1.96 * sample.std(ddof=1) / math.sqrt(len(sample))
    assert low == pytest.approx(sample.mean() - half, abs=0.15 * half)
    assert high == pytest.approx(sample.mean() + half, abs=0.15 * half)


def test_intervals_are_clipped_to_the_metric_range() -> None:
    # Values past 100 cannot come from the benchmark, but the guarantee must not rest on that.
    assert bootstrap_ci([99.0, 101.0, 104.0], bounds=(0.0, 100.0))[1] == 100.0
    assert bootstrap_ci([99.0, 101.0, 104.0])[1] > 100.0
    near_top = summarise([99.9, 100.0, 100.0, 99.8])
    assert 0.0 <= near_top.low <= near_top.mean <= near_top.high <= 100.0
    assert near_top.std == pytest.approx(np.std([99.9, 100.0, 100.0, 99.8], ddof=1))
    assert math.isnan(summarise([50.0]).std) and summarise([50.0]).mean == 50.0
    bands = mean_ci_by(pd.DataFrame({"m": ["a"] * 4, "v": [10.0, 0.0, 0.0, 0.5]}), ["m"], "v",
                       (0.0, 100.0))  # fmt: skip
    assert bands.loc[0, "low"] == 0.0 and bands.loc[0, "high"] <= 10.0 and bands.loc[0, "n"] == 4


def test_paired_difference_uses_the_shared_seeds_and_pairs_them() -> None:
    method = pd.Series({0: 90.0, 1: 92.0, 2: 85.0, 3: 88.0, 5: math.nan})
    baseline = pd.Series({0: 80.0, 1: 91.0, 2: 86.0, 4: 50.0, 5: 70.0})
    result = paired_difference(method, baseline)
    d = np.array([10.0, 1.0, -1.0])  # seeds 0, 1, 2: the only ones both have, as numbers
    assert result.n == 3
    assert result.mean == pytest.approx(d.mean())
    assert result.effect_size == pytest.approx(d.mean() / d.std(ddof=1))
    assert (result.low, result.high) == bootstrap_ci(d, bounds=(-100.0, 100.0))
    # Resampling whole seeds keeps the between-seed spread out of the difference: seeds
    # differ by 30 points, the method is 2-3 points better on every one of them.
    seeds = pd.Series({0: 60.0, 1: 75.0, 2: 90.0, 3: 80.0})
    better = seeds + pd.Series({0: 2.0, 1: 3.0, 2: 2.5, 3: 2.0})
    paired = paired_difference(better, seeds)
    assert 2.0 <= paired.low < paired.high <= 3.0
    unpaired_width = np.subtract(*bootstrap_ci(better)[::-1]) + np.subtract(
        *bootstrap_ci(seeds)[::-1]
    )
    assert unpaired_width > 10 * (paired.high - paired.low)


def test_effect_size_is_nan_where_undefined() -> None:
    assert math.isnan(cohens_dz([3.0]))
    assert math.isnan(cohens_dz([2.0, 2.0, 2.0]))  # sd 0: no finite effect to report
    assert cohens_dz([1.0, 2.0, 3.0]) == pytest.approx(2.0)
    empty = paired_difference(pd.Series({0: 1.0}), pd.Series({1: 1.0}))
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.low)


def test_holm_bonferroni_on_a_hand_example() -> None:
    # Sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> 0.06 (monotone).
    assert holm_bonferroni([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = holm_bonferroni([0.02, math.nan, 0.5])  # NaN is no test: the family has two
    assert adjusted[0] == pytest.approx(0.04) and math.isnan(adjusted[1])
    assert adjusted[2] == pytest.approx(0.5)
    assert holm_bonferroni([0.6, 0.7]) == [1.0, 1.0]
    assert holm_bonferroni([0.25, 0.25]) == [0.5, 0.5]


def test_holm_adjusted_p_is_the_smallest_level_where_step_down_rejects() -> None:
    def rejected(p: np.ndarray, alpha: float) -> set[int]:
        out: set[int] = set()
        for rank, i in enumerate(np.argsort(p, kind="stable")):
            if p[i] > alpha / (len(p) - rank):
                break
            out.add(int(i))
        return out

    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 7))
        adjusted = np.array(holm_bonferroni(p.tolist()))
        for alpha in (0.01, 0.05, 0.1):
            assert set(np.flatnonzero(adjusted <= alpha)) == rejected(p, alpha)


def _records(seed_cells: dict[str, dict[int, tuple[int, ...]]], accuracy) -> pd.DataFrame:
    """A records table: every method x seed x epoch (3 and final 6) x dataset row. At epoch 3
    every cell is all-skip, so only the final epoch can decide what counts as collapsed."""
    rows = []
    for method, cells in seed_cells.items():
        for seed, final_cell in cells.items():
            for epoch in (3, 6):
                cell = final_cell if epoch == 6 else (SKIP,) * 6
                names = [OP_NAMES[k] for k in cell]
                for dataset in ("cifar10", "cifar100"):
                    rows.append({
                        "algorithm": "darts", "config_key": "k", "method": method,
                        "method_name": method.split("[")[0], "upper_bound": method == "oracle",
                        "seed": seed, "epoch": epoch, "final_epoch": 6, "dataset": dataset,
                        "metric": "test", "fidelity": "200ep", "arch": encode(cell),
                        "accuracy": accuracy(method, seed, dataset, epoch),
                        "param_free_ops": sum(n in ("none", "skip_connect", "avg_pool_3x3")
                                              for n in names),
                        "skip_ops": names.count("skip_connect"),
                        "disconnected": not NB201Space().output_reachable(cell),
                    })  # fmt: skip
    return pd.DataFrame(rows)


ALL_SKIP = (SKIP,) * 6
FOUR_SKIPS = (SKIP, SKIP, C3, SKIP, C3, SKIP)
THREE_FREE = (SKIP, C3, C3, POOL, C3, NONE)
CUT = (NONE, NONE, C3, NONE, C3, C3)  # nothing leaves node 0
GOOD = (C3, C3, C1, SKIP, C3, C1)
CELLS = {
    "magnitude": {0: ALL_SKIP, 1: FOUR_SKIPS, 2: THREE_FREE, 3: GOOD, 4: FOUR_SKIPS},
    "darts-pt": {0: GOOD, 1: GOOD, 2: GOOD, 3: GOOD, 4: GOOD},
    "ostr": {0: GOOD, 2: CUT, 3: GOOD, 4: CUT},  # seed 1 missing
}
ACC = {  # CIFAR-10 final accuracy per method and seed; CIFAR-100 is 20 points lower
    "magnitude": [54.30, 88.18, 91.0, 93.5, 87.0],
    "darts-pt": [92.0, 93.1, 92.5, 93.0, 92.2],
    "ostr": [93.0, math.nan, 10.0, 93.6, 10.0],
}


def _accuracy(method: str, seed: int, dataset: str, epoch: int) -> float:
    value = ACC[method][seed] if epoch == 6 else 80.0
    return value - (20.0 if dataset == "cifar100" else 0.0)


def test_collapsed_seeds_and_means_on_exactly_those_seeds() -> None:
    records = _records(CELLS, _accuracy)
    # Every seed is all-skip at epoch 3; at the final epoch seeds 2 and 3 are not collapsed.
    seeds, looked_at = collapsed_seeds(records)
    assert seeds == [0, 1, 4] and looked_at == 5
    final = records[(records["epoch"] == 6) & (records["dataset"] == "cifar10")]
    means = means_on_seeds(final[["method", "seed", "accuracy"]], seeds)
    assert means["magnitude"].mean == pytest.approx(np.mean([54.30, 88.18, 87.0]))
    assert means["darts-pt"].mean == pytest.approx(np.mean([92.0, 93.1, 92.2]))
    assert means["ostr"].n == 2 and means["ostr"].mean == pytest.approx(np.mean([93.0, 10.0]))
    # Within the data's range, up to the rounding of a mean of three equal values.
    assert means["magnitude"].low >= 54.30 - 1e-9 and means["magnitude"].high <= 88.18 + 1e-9
    # The threshold decides: three parameter-free ops (seed 2) is not a collapse, five is.
    assert collapsed_seeds(records, threshold=3)[0] == [0, 1, 2, 4]
    assert collapsed_seeds(records, threshold=5)[0] == [0]


def _paper_rows(records: pd.DataFrame) -> dict[str, dict[str, str]]:
    selections = records[["algorithm", "method"]].drop_duplicates().assign(
        wall_seconds=0.1, forward_passes=1
    )
    runs = pd.DataFrame({"algorithm": ["darts"], "train_seconds": [9.0], "settings": ["{}"],
                         "protocol": [""]})  # fmt: skip
    shown = display_table(paper_table(records, selections, runs))
    return {row["method"]: row for row in shown.to_dict("records")}


def test_paper_table_shows_intervals_differences_holm_collapse_and_cut_cells() -> None:
    records = _records(CELLS, _accuracy)
    rows = _paper_rows(records)
    magnitude, darts_pt, ostr = rows["magnitude"], rows["darts-pt"], rows["ostr"]
    c10 = ACC["magnitude"]
    low, high = bootstrap_ci(c10, bounds=(0.0, 100.0))
    std = np.std(c10, ddof=1)
    assert magnitude["CIFAR-10"] == f"{np.mean(c10):.2f} ± {std:.2f} {format_interval(low, high)}"
    d = np.subtract(ACC["darts-pt"], c10)
    dlow, dhigh = bootstrap_ci(d)
    assert darts_pt["diff vs magnitude (C10)"] == f"{d.mean():+.2f} {format_interval(dlow, dhigh)}"
    assert darts_pt["d_z"] == f"{d.mean() / d.std(ddof=1):+.2f}"
    ostr_d = np.array([93.0 - 54.30, 10.0 - 91.0, 93.6 - 93.5, 10.0 - 87.0])  # seeds 0, 2-4
    assert ostr["diff vs magnitude (C10)"].startswith(f"{ostr_d.mean():+.2f} [")
    assert darts_pt["test"] == "sign-flip exact, n=5" and ostr["test"] == "sign-flip exact, n=4"
    raw = {m: float(rows[m]["p vs magnitude"]) for m in ("darts-pt", "ostr")}
    holm = holm_bonferroni(list(raw.values()))
    assert [float(rows[m]["p Holm"]) for m in raw] == pytest.approx(holm, abs=5e-4)
    assert magnitude["p Holm"] == "—" and magnitude["d_z"] == "—"
    assert {r["collapsed seeds"] for r in rows.values()} == {"3/5"}
    collapsed_mean = np.mean([54.30, 88.18, 87.0])
    assert magnitude["C10 on collapsed seeds"].startswith(f"{collapsed_mean:.2f} [")
    assert ostr["C10 on collapsed seeds"].startswith(f"{np.mean([93.0, 10.0]):.2f} [")
    assert ostr["C10 on collapsed seeds"].endswith("(n=2)")
    assert ostr["disconnected cells"] == "2/4"
    assert darts_pt["disconnected cells"] == magnitude["disconnected cells"] == "0/5"


def test_intervals_print_rounded_outward() -> None:
    assert format_interval(72.14, 92.96) == "[72.1, 93.0]"
    assert format_interval(94.37, 94.37) == "[94.3, 94.4]"  # holds the mean printed as 94.37
    assert format_interval(21.4, 21.4) == "[21.4, 21.4]"  # float error must not widen it
    assert format_interval(-1.25, 0.0) == "[-1.3, 0.0]"
    assert format_interval(0.0, 100.0) == "[0.0, 100.0]"


def test_paper_table_is_the_same_for_the_same_records_in_any_row_order() -> None:
    records = _records(CELLS, _accuracy)
    shuffled = records.sample(frac=1.0, random_state=5).reset_index(drop=True)
    assert _paper_rows(records) == _paper_rows(shuffled)


def test_without_magnitude_collapse_the_conditional_column_is_empty() -> None:
    cells = {m: {s: GOOD for s in range(3)} for m in ("magnitude", "darts-pt")}
    rows = _paper_rows(_records(cells, lambda m, s, d, e: 90.0 + s))
    assert rows["darts-pt"]["collapsed seeds"] == "0/3"
    assert rows["darts-pt"]["C10 on collapsed seeds"] == "—"


def test_old_records_without_the_disconnected_column_load_and_say_na(tmp_path) -> None:
    records = _records(CELLS, _accuracy).drop(columns="disconnected")
    identity = {"preset": "proxy", "run_key": "r", "method_key": "m"}
    records = records.assign(**identity)
    selections = records.drop_duplicates(["method", "seed", "epoch"])[
        ["config_key", "preset", "algorithm", "run_key", "seed", "epoch", "final_epoch", "method",
         "method_name", "method_key", "upper_bound", "arch"]
    ].assign(scores=None, alphas="[]", gt_importance="[]", wall_seconds=0.1, forward_passes=1)
    runs = pd.DataFrame({"config_key": ["k"], "preset": ["proxy"], "algorithm": ["darts"],
                         "run_key": ["r"], "seed": [0], "epochs": [6], "train_seconds": [1.0],
                         "settings": ["{}"]})  # fmt: skip
    for name, frame in (("records", records), ("selections", selections), ("runs", runs)):
        frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
    loaded = load_results(tmp_path)
    assert loaded.records["disconnected"].isna().all()
    shown = display_table(paper_table(loaded.records, loaded.selections, loaded.runs))
    assert set(shown["disconnected cells"]) == {"n/a"}
    assert set(shown["collapsed seeds"]) == {"3/5"}  # the rest of the table is unaffected


@pytest.mark.parametrize(
    ("cell", "reachable"),
    [
        (GOOD, True),
        ((C3, NONE, NONE, NONE, NONE, C3), False),  # 0 -> 1 only; nothing reaches node 3
        ((NONE, NONE, C3, NONE, C3, C3), False),  # cut at the input: every edge out of 0 none
        ((C3, C3, C3, NONE, NONE, NONE), False),  # cut at the output: every edge into 3 none
        ((SKIP, NONE, NONE, NONE, NONE, C3), False),  # 0 -> 1, 2 -> 3: node 2 only via none
        ((C3, NONE, C1, NONE, NONE, POOL), True),  # the long way: 0 -> 1 -> 2 -> 3
        ((NONE, NONE, NONE, SKIP, NONE, NONE), True),  # the direct edge alone
        ((NONE,) * 6, False),
    ],
)
def test_output_reachable_on_hand_written_cells(cell, reachable) -> None:
    assert NB201Space().output_reachable(cell) is reachable


def test_output_reachable_reads_op_names_in_subset_spaces() -> None:
    s3 = nb201_space("nb201-s3")  # {none, skip_connect, nor_conv_3x3}
    none, skip = OP_NAMES.index("none"), OP_NAMES.index("skip_connect")
    assert s3.output_reachable((skip, none, none, none, none, none)) is False
    assert s3.output_reachable((skip, none, skip, none, none, skip)) is True
    s2 = nb201_space("nb201-s2")  # no none: every cell connects
    assert all(s2.output_reachable(cell) for cell in s2.cells())
    # The base default: the DARTS rule keeps two inputs other than none per node.
    darts = darts_space("darts")
    assert darts.output_reachable(darts.random_cell(np.random.default_rng(0))) is True


def test_disconnected_cells_are_exactly_the_benchmarks_chance_cells(ground_truth_csv) -> None:
    truth = pd.read_csv(ground_truth_csv, dtype={"arch_str": str})
    space = NB201Space()
    cut = np.array([not space.output_reachable(decode(a)) for a in truth["arch_str"]])
    assert cut.sum() == sum(not space.output_reachable(c) for c in all_cells()) > 0
    c10 = truth["cifar10_test_200ep"].to_numpy()
    assert np.allclose(c10[cut], 10.0)
    assert c10[~cut].min() > 40.0  # no connected cell scores anywhere near chance


def test_records_rows_carry_the_disconnected_flag() -> None:
    cut, good = (C3, NONE, NONE, NONE, NONE, C1), GOOD  # cut: 0 -> 1 and 2 -> 3, nothing 1 -> 2
    truth = GroundTruth.from_frame(pd.DataFrame({
        "index": [0, 1], "arch_str": [encode(cut), encode(good)],
        "cifar10_test_200ep": [10.0, 93.0],
    }))  # fmt: skip
    space = NB201Space()
    for cell, expected in ((cut, True), (good, False)):
        rows = _accuracy_rows({"arch": encode(cell), "method": "m"}, space, truth)
        assert [r["disconnected"] for r in rows] == [expected]
        assert rows[0]["accuracy"] == (10.0 if expected else 93.0)


def test_figure_bands_are_the_bootstrap_interval_within_range() -> None:
    seeds = [99.5, 100.0, 97.0, 100.0]
    frame = pd.DataFrame({"method": "m", "epoch": [1] * 4 + [2] * 4, "seed": list(range(4)) * 2,
                          "accuracy": seeds + [60.0, 62.0, 61.0, 90.0]})  # fmt: skip
    stats_ = curves.mean_ci_by_epoch(frame, "accuracy", (0.0, 100.0))
    assert list(stats_["low"]) == [bootstrap_ci(seeds)[0], bootstrap_ci([60, 62, 61, 90])[0]]
    fig, ax = plt.subplots()
    try:
        curves._draw_lines(ax, stats_, {"m": (0.1, 0.2, 0.3, 1.0)})
        (band,) = ax.collections
        y = band.get_paths()[0].vertices[:, 1]
        assert y.max() <= 100.0
        assert y.min() == pytest.approx(stats_["low"].min())
        assert y.max() == pytest.approx(stats_["high"].max())
    finally:
        plt.close(fig)
    ops = curves.mean_ci_by_epoch(frame.assign(ops=[6, 6, 5, 6, 0, 0, 1, 0]), "ops", (0.0, 6.0))
    assert ops["high"].max() <= 6.0 and ops["low"].min() >= 0.0
