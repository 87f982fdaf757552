"""Statistics that say whether a difference in the report is real, over a handful of seeds.

Every interval here is a **percentile bootstrap** confidence interval of a mean over
seeds: the seeds' values are resampled with replacement ``resamples`` times, the mean of
each resample is taken, and the interval is the ``(1 - confidence) / 2`` and
``(1 + confidence) / 2`` quantiles (linear interpolation) of those means. It is what
``scipy.stats.bootstrap(..., method="percentile")`` computes; the resamples are drawn here
from ``numpy.random.default_rng(seed)`` so that the same records always give the same
report text (tests check the two agree).

Choices, each with its reason:

* One value (or none) gives the interval (NaN, NaN): one seed says nothing about the
  spread, and (v, v) would print as certainty.
* Values are sorted before resampling, so the interval does not depend on row order.
* Every interval is clipped to the metric's range (``[0, 100]`` for accuracies,
  ``[-100, 100]`` for differences of accuracies). A percentile interval of a mean stays
  within the range of the data (up to the rounding of a mean), so the clip only
  guarantees what the figures and tables promise, whatever the input.
* With the 3-5 seeds of a CPU study the percentile interval is coarse: it never reaches
  past the smallest or largest seed's value, and with 3 seeds a resample of one value
  three times has probability 1/27 > 2.5 %, so the 95 % interval is exactly the range of
  the seeds. Read it together with the per-seed lines and the paired test beside it.
* Paired differences are bootstrapped by resampling seeds, each seed carrying both of its
  values; that is the bootstrap of the per-seed differences.
* The effect size is the paired Cohen's d_z = mean(d) / sd(d) (sample sd, ddof=1) of the
  per-seed differences d; NaN below two seeds or when sd(d) = 0 (every difference equal,
  where the ratio is undefined or infinite and says nothing a reader can use).
* p-values of several methods against one baseline are corrected with Holm–Bonferroni
  (step-down; controls the family-wise error rate without assuming independence).

No torch here: the report's statistics must run wherever pandas and scipy do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
ACCURACY_RANGE = (0.0, 100.0)
DIFFERENCE_RANGE = (-100.0, 100.0)  # one accuracy minus another
# A cell counts as collapsed when at least this many of its 6 ops are parameter-free
# (none, skip_connect, avg_pool_3x3): the DARTS failure the report is about.
COLLAPSE_MIN_PARAM_FREE_OPS = 4

Bounds = tuple[float, float] | None


@dataclass(frozen=True)
class MeanSummary:
    """A mean over seeds with its sample std and bootstrap interval (NaN where undefined)."""

    n: int
    mean: float
    std: float
    low: float
    high: float


@dataclass(frozen=True)
class PairedDifference:
    """Method minus baseline over the seeds both have."""

    n: int
    mean: float
    low: float
    high: float
    effect_size: float  # paired Cohen's d_z


def _finite(values: Iterable[float]) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)
    return array[~np.isnan(array)]


@lru_cache(maxsize=32)
def _resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """Row i: the positions of resample i. One matrix per (n, resamples, seed) suffices,
    and drawing it as scipy does (one ``integers`` call) keeps the two comparable."""
    indices = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    indices.setflags(write=False)
    return indices


def _clip(low: float, high: float, bounds: Bounds) -> tuple[float, float]:
    if bounds is None or math.isnan(low):
        return low, high
    lower, upper = bounds
    return float(min(max(low, lower), upper)), float(min(max(high, lower), upper))


def bootstrap_ci(
    values: Iterable[float],
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    bounds: Bounds = None,
) -> tuple[float, float]:
    """(low, high): percentile bootstrap interval of the mean of ``values`` (NaNs dropped).

    Fewer than two values give (NaN, NaN). ``bounds`` clips the interval to a range.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, not {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, not {resamples}")
    x = np.sort(_finite(values))
    if len(x) < 2:
        return math.nan, math.nan
    means = x[_resample_indices(len(x), resamples, seed)].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return _clip(float(low), float(high), bounds)


def summarise(values: Iterable[float], bounds: Bounds = ACCURACY_RANGE) -> MeanSummary:
    """Count, mean, sample std (ddof=1) and bootstrap interval of the finite ``values``."""
    x = _finite(values)
    if len(x) == 0:
        return MeanSummary(0, math.nan, math.nan, math.nan, math.nan)
    std = float(np.std(x, ddof=1)) if len(x) > 1 else math.nan
    low, high = bootstrap_ci(x, bounds=bounds)
    return MeanSummary(len(x), float(np.mean(x)), std, low, high)


def paired_values(values: pd.Series, baseline: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The two per-seed Series on the seeds both have (NaNs dropped), in seed order."""
    paired = pd.concat([values.rename("a"), baseline.rename("b")], axis=1, join="inner")
    paired = paired.dropna().sort_index()
    return paired["a"].to_numpy(dtype=float), paired["b"].to_numpy(dtype=float)


def cohens_dz(differences: Iterable[float]) -> float:
    """mean(d) / sd(d) with the sample sd; NaN below two values or when sd(d) is 0."""
    d = _finite(differences)
    if len(d) < 2:
        return math.nan
    sd = float(np.std(d, ddof=1))
    # Equal differences leave sd at rounding noise; treat that as zero, not as a huge d.
    if sd <= 1e-12 * max(1.0, float(np.max(np.abs(d)))):
        return math.nan
    return float(np.mean(d)) / sd


def paired_difference(
    values: pd.Series, baseline: pd.Series, bounds: Bounds = DIFFERENCE_RANGE
) -> PairedDifference:
    """Mean of (method - baseline) over shared seeds, its paired bootstrap interval and d_z.

    Both Series are indexed by seed. Resampling seeds with both values attached is the
    bootstrap of the per-seed differences, so that is what is resampled.
    """
    a, b = paired_values(values, baseline)
    d = a - b
    if len(d) == 0:
        return PairedDifference(0, math.nan, math.nan, math.nan, math.nan)
    low, high = bootstrap_ci(d, bounds=bounds)
    return PairedDifference(len(d), float(np.mean(d)), low, high, cohens_dz(d))


def holm_bonferroni(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input's order.

    With the m finite p-values sorted ascending, p_(i) becomes
    max over j <= i of min(1, (m - j + 1) p_(j)). NaN entries (no test possible) stay NaN
    and are not part of the family.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(len(p), math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = len(tested)
    running = 0.0
    # A stable sort: tied p-values end with the same adjusted value either way.
    for rank, position in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[position]))
        adjusted[position] = running
    return adjusted.tolist()


def collapsed_seeds(
    records: pd.DataFrame,
    baseline: str = "magnitude",
    threshold: int = COLLAPSE_MIN_PARAM_FREE_OPS,
) -> tuple[list[int], int]:
    """(collapsed seeds, seeds looked at) of ``baseline`` at each run's final epoch.

    ``records``: rows of one configuration (the records table's ``method``, ``seed``,
    ``epoch``, ``final_epoch`` and ``param_free_ops`` columns; every dataset/metric row of a
    selection repeats its op counts). A seed is collapsed when the baseline's selected cell
    has at least ``threshold`` parameter-free ops.
    """
    final = records[(records["method"] == baseline) & (records["epoch"] == records["final_epoch"])]
    per_seed = final.dropna(subset=["param_free_ops"]).groupby("seed")["param_free_ops"].max()
    collapsed = sorted(int(seed) for seed, ops in per_seed.items() if ops >= threshold)
    return collapsed, len(per_seed)


def means_on_seeds(
    per_seed: pd.DataFrame,
    seeds: Iterable[int],
    value: str = "accuracy",
    bounds: Bounds = ACCURACY_RANGE,
) -> dict[str, MeanSummary]:
    """Per method, ``value`` summarised over exactly ``seeds`` (those of them it has).

    ``per_seed``: one row per method x seed (columns ``method``, ``seed`` and ``value``).
    """
    chosen = per_seed[per_seed["seed"].isin(list(seeds))]
    return {
        str(method): summarise(group[value], bounds)
        for method, group in chosen.groupby("method", sort=True)
    }


def mean_ci_by(
    frame: pd.DataFrame, keys: Sequence[str], value: str, bounds: Bounds
) -> pd.DataFrame:
    """Per group of ``keys``: ``mean``, bootstrap ``low`` and ``high``, and ``n`` values."""
    rows = []
    for key, group in frame.dropna(subset=[value]).groupby(list(keys), sort=True):
        summary = summarise(group[value], bounds)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key, strict=True)), "mean": summary.mean,
                     "low": summary.low, "high": summary.high, "n": summary.n})  # fmt: skip
    return pd.DataFrame(rows, columns=[*keys, "mean", "low", "high", "n"])
