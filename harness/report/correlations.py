"""Rank correlation between what a method believed (per-op scores) and the ground truth.

For a selection row and an edge, the ground-truth importance of op k is the benchmark
accuracy of the row's selected cell with that edge set to k (``gt_importance``). Kendall
tau and Spearman rho are taken per edge over the ops where both vectors are finite,
averaged over edges, then over seeds.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from harness.report.markup import markdown_table
from harness.report.tables import format_mean_std, method_sort_key

log = logging.getLogger(__name__)

ALPHAS_LABEL = "alphas"
CORRELATION_CAPTION = (
    "Kendall τ and Spearman ρ between a method's per-op scores and the ground-truth "
    "importance (benchmark accuracy of the selected cell with the edge set to each op), per "
    "edge over ops with finite values, averaged over edges; mean ± std over seeds at the "
    f"final epoch. '{ALPHAS_LABEL}' ranks ops by the checkpoint's architecture parameters "
    "(alpha magnitude). Methods without scores (random, oracle) are left out."
)
CORRELATION_NUMERIC = ("Kendall τ", "Spearman ρ", "seeds")
MIN_PAIRS = 3  # fewer finite pairs make tau and rho meaningless (always +-1)


def parse_matrix(raw: Any) -> np.ndarray | None:
    """JSON edges x ops list -> float array (null -> NaN); None when absent or unreadable."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return None
    try:
        matrix = np.array(raw, dtype=float)
    except (TypeError, ValueError):
        return None
    if matrix.ndim != 2 or not np.isfinite(matrix).any():
        return None
    return matrix


def edge_correlation(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(Kendall tau-b, Spearman rho) of one edge; NaN when too few pairs or a constant side."""
    both = np.isfinite(scores) & np.isfinite(truth)
    x, y = scores[both], truth[both]
    if len(x) < MIN_PAIRS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    return float(stats.kendalltau(x, y).statistic), float(stats.spearmanr(x, y).statistic)


def matrix_correlation(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float, int]:
    """Mean tau and rho over the edges where they are defined, and how many edges that was."""
    if scores.shape != truth.shape:
        return math.nan, math.nan, 0
    pairs = [edge_correlation(scores[e], truth[e]) for e in range(scores.shape[0])]
    taus = [t for t, _ in pairs if not math.isnan(t)]
    rhos = [r for _, r in pairs if not math.isnan(r)]
    if not taus:
        return math.nan, math.nan, 0
    return float(np.mean(taus)), float(np.mean(rhos)), len(taus)


def row_correlations(selections: pd.DataFrame) -> pd.DataFrame:
    """Per scored selection row: tau/rho of its scores and of the checkpoint's alphas.

    The alpha line is computed on the same rows as the scores: the ground-truth
    importance is defined around a selected cell, so alphas are judged in the
    neighbourhood of each scored method's cell and averaged per checkpoint.
    """
    out = []
    for row in selections.itertuples(index=False):
        if bool(row.upper_bound):
            continue
        scores = parse_matrix(row.scores)
        truth = parse_matrix(row.gt_importance)
        if scores is None or truth is None:
            continue
        base = {
            "algorithm": row.algorithm, "config_key": row.config_key, "seed": int(row.seed),
            "epoch": int(row.epoch), "final_epoch": int(row.final_epoch),
        }  # fmt: skip
        tau, rho, edges = matrix_correlation(scores, truth)
        out.append({**base, "method": row.method, "tau": tau, "rho": rho, "edges": edges})
        alphas = parse_matrix(row.alphas)
        if alphas is not None:
            tau, rho, edges = matrix_correlation(alphas, truth)
            out.append({**base, "method": ALPHAS_LABEL, "tau": tau, "rho": rho, "edges": edges})
    columns = ["algorithm", "config_key", "seed", "epoch", "final_epoch", "method", "tau", "rho",
               "edges"]  # fmt: skip
    frame = pd.DataFrame(out, columns=columns)
    # Several scored methods share one checkpoint's alphas: one alpha value per checkpoint.
    keys = ["algorithm", "config_key", "seed", "epoch", "final_epoch", "method"]
    return frame.groupby(keys, as_index=False).agg(
        tau=("tau", "mean"), rho=("rho", "mean"), edges=("edges", "mean")
    )


def correlations_by_epoch(per_row: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of tau and rho, per algorithm x method x epoch."""
    return (
        per_row.dropna(subset=["tau"])
        .groupby(["algorithm", "method", "epoch"], as_index=False)
        .agg(
            tau_mean=("tau", "mean"),
            tau_std=("tau", "std"),
            rho_mean=("rho", "mean"),
            rho_std=("rho", "std"),
            seeds=("seed", "nunique"),
        )  # fmt: skip
    )


def final_epoch_correlations(per_row: pd.DataFrame) -> pd.DataFrame:
    """tau and rho per algorithm x method at each run's final epoch."""
    final = per_row[per_row["epoch"] == per_row["final_epoch"]]
    return correlations_by_epoch(final).drop(columns="epoch")


def correlation_display(final: pd.DataFrame) -> pd.DataFrame:
    """String cells (mean ± std) per algorithm x method, the alpha reference last."""
    rows = [
        {
            "algorithm": r["algorithm"],
            "method": r["method"],
            "Kendall τ": format_mean_std(r["tau_mean"], r["tau_std"]),
            "Spearman ρ": format_mean_std(r["rho_mean"], r["rho_std"]),
            "seeds": str(r["seeds"]),
        }
        for r in final.to_dict("records")
    ]
    columns = ["algorithm", "method", "Kendall τ", "Spearman ρ", "seeds"]
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return frame
    # The alpha line last: it is the reference the methods are compared against.
    order = sorted(
        range(len(frame)),
        key=lambda i: (
            frame.at[i, "algorithm"],
            frame.at[i, "method"] == ALPHAS_LABEL,
            method_sort_key(frame.at[i, "method"]),
        ),
    )
    return frame.iloc[order].reset_index(drop=True)


def correlation_markdown(frame: pd.DataFrame, title: str) -> str:
    head = f"# {title}: rank correlation with the ground truth\n\n{CORRELATION_CAPTION}\n\n"
    if frame.empty:
        return head + "No selection recorded per-op scores with ground-truth importance.\n"
    return head + markdown_table(frame, CORRELATION_NUMERIC)
