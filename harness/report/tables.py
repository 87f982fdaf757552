"""The paper table: test accuracy at the final epoch, costs, published numbers, significance.

Accuracies are NAS-Bench-201 test accuracies (%) at the 200-epoch fidelity of the cell
each method selects from the last checkpoint of each run: mean ± sample std (ddof=1) over
seeds and the 95 % percentile-bootstrap interval of the mean, clipped to [0, 100]
(:mod:`harness.report.statistics`). Comparisons pair seeds: each method against
``magnitude`` on the same supernets (same algorithm, same seeds), CIFAR-10 test accuracy:
the mean difference with its paired bootstrap interval, Cohen's d_z, the raw p-value of a
paired test and that p after Holm–Bonferroni correction over the block's methods. Two
counts say what the means hide: on how many seeds magnitude's final cell collapsed (and
every method's mean on exactly those seeds), and how many of a method's final cells are
disconnected (input never reaches output; the benchmark scores them at chance).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from scipy import stats

from harness.report.published import DATASETS, PUBLISHED_SPACE, reference_for
from harness.report.statistics import (
    ACCURACY_RANGE,
    collapsed_seeds,
    holm_bonferroni,
    means_on_seeds,
    paired_difference,
    summarise,
)

log = logging.getLogger(__name__)

DATASET_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet16": "ImageNet16-120"}
BASELINE = "magnitude"
EXACT_MAX_SEEDS = 10  # 2^10 sign patterns; beyond that the Wilcoxon approximation is fine
TABLE_FIDELITY = "200ep"
TABLE_METRIC = "test"
COMPARED_DATASET = "cifar10"  # the paired comparisons and collapse columns use CIFAR-10
DIFF_COLUMN = "diff vs magnitude (C10)"
COLLAPSED_MEAN_COLUMN = "C10 on collapsed seeds"
NUMERIC_COLUMNS = (
    *DATASET_TITLES.values(), "seeds", DIFF_COLUMN, "d_z", "p vs magnitude", "p Holm",
    "collapsed seeds", COLLAPSED_MEAN_COLUMN, "disconnected cells", "selection s",
    "forward passes", "search s/run",
)  # fmt: skip


def dataset_title(dataset: str) -> str:
    return DATASET_TITLES.get(dataset, dataset)


def ordered_datasets(datasets: object) -> list[str]:
    present = set(datasets)  # type: ignore[arg-type]
    return [d for d in DATASETS if d in present] + sorted(present - set(DATASETS))


def method_sort_key(method: str, upper_bound: bool = False) -> tuple[int, str]:
    """Baseline first, then methods by name, then the random and oracle references."""
    if upper_bound or method == "oracle":
        return (3, method)
    if method == BASELINE:
        return (0, method)
    if method.startswith("random"):
        return (2, method)
    return (1, method)


def sign_flip_p_value(differences: np.ndarray | list[float]) -> float:
    """Exact two-sided permutation p-value of paired differences under random sign flips.

    Enumerates all 2^n sign patterns; the statistic is |sum of signed differences|, and
    patterns at least as extreme as the observed one count (ties included).
    """
    d = np.asarray(differences, dtype=float)
    n = len(d)
    signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
    extreme = np.abs(signs @ d)
    observed = abs(float(d.sum()))
    # Rounding makes equal sums differ in the last bits; count them as ties.
    return float(np.mean(extreme >= observed - 1e-9 * max(1.0, observed)))


def paired_test(values: pd.Series, baseline: pd.Series) -> tuple[float, str]:
    """(p, test name) for two per-seed Series; seeds missing on either side are dropped."""
    paired = pd.concat([values.rename("a"), baseline.rename("b")], axis=1, join="inner").dropna()
    n = len(paired)
    if n < 2:
        return math.nan, "n/a"
    d = (paired["a"] - paired["b"]).to_numpy(dtype=float)
    if n <= EXACT_MAX_SEEDS:
        return sign_flip_p_value(d), f"sign-flip exact, n={n}"
    if np.all(d == 0):
        return 1.0, f"Wilcoxon signed-rank, n={n}"
    return float(stats.wilcoxon(d).pvalue), f"Wilcoxon signed-rank, n={n}"


def final_accuracies(records: pd.DataFrame) -> pd.DataFrame:
    """One accuracy per algorithm x method x dataset x seed at the run's final epoch."""
    rows = records[
        (records["fidelity"] == TABLE_FIDELITY)
        & (records["metric"] == TABLE_METRIC)
        & (records["epoch"] == records["final_epoch"])
    ].dropna(subset=["accuracy"])
    return rows.groupby(
        ["algorithm", "method", "method_name", "upper_bound", "dataset", "seed"], as_index=False
    )["accuracy"].mean()


def paper_table(
    records: pd.DataFrame, selections: pd.DataFrame, runs: pd.DataFrame
) -> pd.DataFrame:
    """Numeric paper table: one row per algorithm x method."""
    final = final_accuracies(records)
    datasets = ordered_datasets(records["dataset"].unique())
    cost = selections.groupby(["algorithm", "method"]).agg(
        selection_seconds=("wall_seconds", "mean"), forward_passes=("forward_passes", "mean")
    )
    search = runs.groupby("algorithm")["train_seconds"].mean()
    protocols = _protocols(runs)
    spaces = runs.groupby("algorithm")["space"].first() if "space" in runs else pd.Series(dtype=str)
    methods = (
        records[["algorithm", "method", "method_name", "upper_bound"]]
        .drop_duplicates(["algorithm", "method"])
        .itertuples(index=False)
    )
    collapse = {a: _collapse_columns(records, final, str(a)) for a in records["algorithm"].unique()}
    out = []
    for algorithm, method, method_name, flagged in methods:
        # The oracle is a ceiling whether or not its rows carry the flag.
        upper_bound = bool(flagged) or method_name == "oracle"
        mine = final[(final["algorithm"] == algorithm) & (final["method"] == method)]
        row: dict[str, object] = {
            "algorithm": algorithm, "method": method, "method_name": method_name,
            "upper_bound": bool(upper_bound), "seeds": int(mine["seed"].nunique()),
        }  # fmt: skip
        for dataset in datasets:
            summary = summarise(mine.loc[mine["dataset"] == dataset, "accuracy"], ACCURACY_RANGE)
            row[f"mean_{dataset}"] = summary.mean
            row[f"std_{dataset}"] = summary.std
            row[f"low_{dataset}"], row[f"high_{dataset}"] = summary.low, summary.high
        ref = reference_for(str(algorithm), protocols.get(algorithm), str(method_name),
                            str(method), bool(upper_bound),
                            str(spaces.get(algorithm, PUBLISHED_SPACE)))  # fmt: skip
        reported = any(not math.isnan(v) for v in ref.accuracy)
        row["published"] = ref.text() if reported else ""
        row["published_source"] = ref.source
        key = (algorithm, method)
        row["selection_seconds"] = cost.at[key, "selection_seconds"] if key in cost.index else 0
        row["forward_passes"] = cost.at[key, "forward_passes"] if key in cost.index else 0
        row["search_seconds"] = float(search.get(algorithm, math.nan))
        row.update(_comparison(final, algorithm, method, bool(upper_bound)))
        row.update(collapse[algorithm].row(str(method)))
        row["disconnected"], row["disconnected_of"] = _disconnected_count(
            records, algorithm, method
        )
        out.append(row)
    table = pd.DataFrame(out)
    # One family per block: the methods compared with magnitude on the same supernets.
    table["p_holm"] = math.nan
    for _, block in table.groupby("algorithm"):
        table.loc[block.index, "p_holm"] = holm_bonferroni(block["p_value"].tolist())
    order = sorted(
        range(len(table)),
        key=lambda i: (
            table.at[i, "algorithm"],
            method_sort_key(table.at[i, "method"], table.at[i, "upper_bound"]),
        ),
    )
    return table.iloc[order].reset_index(drop=True)


def _protocols(runs: pd.DataFrame) -> dict[str, str | None]:
    """Per algorithm, the published protocol its recorded settings match (None: none; the
    records label each run with it when the tables are written)."""
    out: dict[str, str | None] = {}
    for algorithm, protocol in runs[["algorithm", "protocol"]].itertuples(index=False):
        found = protocol or None
        # Every run of the algorithm must match for its rows to carry a published number.
        out[algorithm] = found if out.get(algorithm, found) == found else None
    return out


def _comparison(
    final: pd.DataFrame, algorithm: str, method: str, upper_bound: bool
) -> dict[str, object]:
    """Paired difference to magnitude (mean, interval, d_z) and the raw paired test."""
    out: dict[str, object] = {
        "diff_mean": math.nan, "diff_low": math.nan, "diff_high": math.nan,
        "diff_seeds": 0, "effect_size": math.nan, "p_value": math.nan, "test": "—",
    }  # fmt: skip
    if upper_bound or method == BASELINE:
        return out
    compared = final[(final["algorithm"] == algorithm) & (final["dataset"] == COMPARED_DATASET)]
    baseline = compared[compared["method"] == BASELINE].set_index("seed")["accuracy"]
    if baseline.empty:
        return {**out, "test": "n/a (no magnitude rows)"}
    values = compared[compared["method"] == method].set_index("seed")["accuracy"]
    difference = paired_difference(values, baseline)
    out.update(diff_mean=difference.mean, diff_low=difference.low, diff_high=difference.high,
               diff_seeds=difference.n, effect_size=difference.effect_size)  # fmt: skip
    out["p_value"], out["test"] = paired_test(values, baseline)
    return out


class _CollapseColumns:
    """Magnitude's collapsed seeds in one block, and every method's mean on exactly them."""

    def __init__(self, seeds: list[int] | None, looked_at: int, final: pd.DataFrame) -> None:
        self.seeds, self.looked_at = seeds, looked_at
        self.means = means_on_seeds(final, seeds) if seeds else {}

    def row(self, method: str) -> dict[str, object]:
        summary = self.means.get(method)
        return {
            "collapsed_seeds": math.nan if self.seeds is None else len(self.seeds),
            "collapse_looked_at": self.looked_at,
            "collapsed_n": summary.n if summary else 0,
            "collapsed_mean": summary.mean if summary else math.nan,
            "collapsed_low": summary.low if summary else math.nan,
            "collapsed_high": summary.high if summary else math.nan,
        }


def _collapse_columns(records: pd.DataFrame, final: pd.DataFrame, algorithm: str):
    mine = records[records["algorithm"] == algorithm]
    if "param_free_ops" not in mine or not (mine["method"] == BASELINE).any():
        return _CollapseColumns(None, 0, final.iloc[0:0])
    seeds, looked_at = collapsed_seeds(mine, BASELINE)
    compared = final[(final["algorithm"] == algorithm) & (final["dataset"] == COMPARED_DATASET)]
    return _CollapseColumns(seeds, looked_at, compared)


def _disconnected_count(records: pd.DataFrame, algorithm: str, method: str) -> tuple[float, int]:
    """(disconnected final cells, seeds): NaN count when the records do not say (old tables)."""
    rows = records[(records["algorithm"] == algorithm) & (records["method"] == method)
                   & (records["epoch"] == records["final_epoch"])]  # fmt: skip
    if "disconnected" not in rows:
        return math.nan, int(rows["seed"].nunique())
    per_seed = rows.groupby("seed")["disconnected"].first()
    if per_seed.isna().any():
        return math.nan, len(per_seed)
    return float(per_seed.astype(bool).sum()), len(per_seed)


def format_mean_std(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def format_interval(low: float, high: float) -> str:
    """``[72.1, 93.0]``: one decimal, rounded outward, so the printed interval always holds
    what it holds unrounded (a mean printed to two decimals never falls outside it)."""
    # Rounding to 6 places first keeps 21.4 from flooring to 21.3 through float error.
    floor = math.floor(round(low * 10, 6)) / 10
    ceil = math.ceil(round(high * 10, 6)) / 10
    return f"[{floor:.1f}, {ceil:.1f}]"


def format_mean_ci(mean: float, std: float = math.nan, low: float = math.nan,
                   high: float = math.nan) -> str:  # fmt: skip
    """``84.18 ± 16.85 [72.1, 93.0]``: mean, sample std and interval, each where defined."""
    if math.isnan(mean):
        return "—"
    text = f"{mean:.2f}"
    if not math.isnan(std):
        text += f" ± {std:.2f}"
    if not math.isnan(low):
        text += " " + format_interval(low, high)
    return text


def format_difference(mean: float, low: float, high: float) -> str:
    if math.isnan(mean):
        return "n/a"
    interval = "" if math.isnan(low) else " " + format_interval(low, high)
    return f"{mean:+.2f}{interval}"


def format_count(count: float, of: int) -> str:
    return "n/a" if math.isnan(count) else f"{int(count)}/{of}"


def format_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """String cells for Markdown, LaTeX and HTML, keeping the algorithm column for blocks."""
    datasets = [c.removeprefix("mean_") for c in table.columns if c.startswith("mean_")]
    rows = []
    for r in table.to_dict("records"):
        row = {
            "algorithm": r["algorithm"],
            "method": f"{r['method']} (upper bound)" if r["upper_bound"] else r["method"],
        }
        for dataset in datasets:
            row[dataset_title(dataset)] = format_mean_ci(
                r[f"mean_{dataset}"], r[f"std_{dataset}"], r[f"low_{dataset}"],
                r[f"high_{dataset}"],
            )  # fmt: skip
        row["seeds"] = str(r["seeds"])
        is_reference = r["upper_bound"] or r["method"] == BASELINE
        difference = format_difference(r["diff_mean"], r["diff_low"], r["diff_high"])
        row[DIFF_COLUMN] = "—" if is_reference else difference
        row["d_z"] = "—" if is_reference else _format_effect(r["effect_size"])
        row["p vs magnitude"] = "—" if is_reference else format_p(r["p_value"])
        row["p Holm"] = "—" if is_reference else format_p(r["p_holm"])
        row["test"] = r["test"]
        row["collapsed seeds"] = format_count(r["collapsed_seeds"], r["collapse_looked_at"])
        row[COLLAPSED_MEAN_COLUMN] = _format_collapsed_mean(r)
        row["disconnected cells"] = format_count(r["disconnected"], r["disconnected_of"])
        row["published (C10 / C100 / IN16)"] = r["published"] or "—"
        row["published source"] = r["published_source"] or "—"
        row["selection s"] = f"{r['selection_seconds']:.2f}"
        row["forward passes"] = f"{r['forward_passes']:.0f}"
        search = r["search_seconds"]
        row["search s/run"] = "—" if math.isnan(search) else f"{search:.0f}"
        rows.append(row)
    return pd.DataFrame(rows)


def _format_effect(d: float) -> str:
    return "n/a" if math.isnan(d) else f"{d:+.2f}"


def _format_collapsed_mean(r: dict) -> str:
    if math.isnan(r["collapsed_seeds"]):
        return "n/a"
    if r["collapsed_seeds"] == 0:
        return "—"  # magnitude never collapsed: nothing to condition on
    text = format_mean_ci(r["collapsed_mean"], low=r["collapsed_low"], high=r["collapsed_high"])
    # A method missing some of those seeds is averaged over fewer; say over how many.
    short = r["collapsed_n"] < r["collapsed_seeds"]
    return f"{text} (n={r['collapsed_n']})" if short and r["collapsed_n"] else text
