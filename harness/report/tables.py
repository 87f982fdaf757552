"""The paper table: test accuracy at the final epoch, costs, published numbers, significance.

Accuracies are NAS-Bench-201 test accuracies (%) at the 200-epoch fidelity of the cell
each method selects from the last checkpoint of each run; mean ± sample std (ddof=1)
over seeds. Significance pairs seeds: each method against ``magnitude`` on the same
supernets (same algorithm, same seeds), CIFAR-10 test accuracy.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pandas as pd
from scipy import stats

from harness.presets import protocol_of
from harness.report.published import DATASETS, PUBLISHED_SPACE, reference_for

log = logging.getLogger(__name__)

DATASET_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet16": "ImageNet16-120"}
BASELINE = "magnitude"
EXACT_MAX_SEEDS = 10  # 2^10 sign patterns; beyond that the Wilcoxon approximation is fine
TABLE_FIDELITY = "200ep"
TABLE_METRIC = "test"
NUMERIC_COLUMNS = (
    *DATASET_TITLES.values(), "seeds", "selection s", "forward passes", "search s/run",
    "p vs magnitude",
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
            acc = mine.loc[mine["dataset"] == dataset, "accuracy"]
            row[f"mean_{dataset}"] = float(acc.mean()) if len(acc) else math.nan
            row[f"std_{dataset}"] = float(acc.std()) if len(acc) > 1 else math.nan
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
        row["p_value"], row["test"] = _significance(final, algorithm, method, bool(upper_bound))
        out.append(row)
    table = pd.DataFrame(out)
    order = sorted(
        range(len(table)),
        key=lambda i: (
            table.at[i, "algorithm"],
            method_sort_key(table.at[i, "method"], table.at[i, "upper_bound"]),
        ),
    )
    return table.iloc[order].reset_index(drop=True)


def _protocols(runs: pd.DataFrame) -> dict[str, str | None]:
    """Per algorithm, the published protocol its recorded settings match (None: none)."""
    out: dict[str, str | None] = {}
    for algorithm, raw in runs[["algorithm", "settings"]].itertuples(index=False):
        try:
            config = json.loads(raw)["config"]
        except (TypeError, ValueError, KeyError):
            config = None
        found = protocol_of(config) if isinstance(config, dict) else None
        # Every run of the algorithm must match for its rows to carry a published number.
        out[algorithm] = found if out.get(algorithm, found) == found else None
    return out


def _significance(
    final: pd.DataFrame, algorithm: str, method: str, upper_bound: bool
) -> tuple[float, str]:
    if upper_bound or method == BASELINE:
        return math.nan, "—"
    c10 = final[(final["algorithm"] == algorithm) & (final["dataset"] == "cifar10")]
    baseline = c10[c10["method"] == BASELINE].set_index("seed")["accuracy"]
    if baseline.empty:
        return math.nan, "n/a (no magnitude rows)"
    return paired_test(c10[c10["method"] == method].set_index("seed")["accuracy"], baseline)


def format_mean_std(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


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
            row[dataset_title(dataset)] = format_mean_std(r[f"mean_{dataset}"], r[f"std_{dataset}"])
        row["seeds"] = str(r["seeds"])
        row["published (C10 / C100 / IN16)"] = r["published"] or "—"
        row["published source"] = r["published_source"] or "—"
        row["selection s"] = f"{r['selection_seconds']:.2f}"
        row["forward passes"] = f"{r['forward_passes']:.0f}"
        search = r["search_seconds"]
        row["search s/run"] = "—" if math.isnan(search) else f"{search:.0f}"
        is_reference = r["upper_bound"] or r["method"] == BASELINE
        row["p vs magnitude"] = "—" if is_reference else format_p(r["p_value"])
        row["test"] = r["test"]
        rows.append(row)
    return pd.DataFrame(rows)
