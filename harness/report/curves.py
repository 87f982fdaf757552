"""Figures: degeneration curves, the collapse signature, rank correlation and alphas vs epoch.

Every figure has one row of panels per supernet algorithm; lines are the mean over seeds.
The band around a mean is the 95 % percentile-bootstrap confidence interval of that mean
over seeds (10,000 resamples, fixed seed: :mod:`harness.report.statistics`), clipped to
the quantity's range — [0, 100] for accuracies, [0, 6] for op counts of the 6-edge cell,
[0, 1] for softmax weights — and drawn only where there are two or more seeds. The one
exception is the rank-correlation figure, whose per-epoch summary arrives as mean and std
(:mod:`harness.report.correlations`): its band is ±1 sample std, clipped to [-1, 1]. The
degeneration curves also draw every seed as a thin line, since with few seeds a band hides
too much. The legend says which band a figure draws. Each figure is saved as PNG (for the
HTML page) and PDF (for papers).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on compute nodes; must precede the pyplot import

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from harness.report.correlations import ALPHAS_LABEL  # noqa: E402
from harness.report.statistics import ACCURACY_RANGE, Bounds, mean_ci_by  # noqa: E402
from harness.report.tables import (  # noqa: E402
    TABLE_FIDELITY,
    TABLE_METRIC,
    dataset_title,
    method_sort_key,
    ordered_datasets,
)
from harness.store import atomic_write_bytes  # noqa: E402

log = logging.getLogger(__name__)

DPI = 150
# Sized to stay legible when a 3-panel row is shrunk to one column of a paper.
STYLE = {
    "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 10,
    "xtick.labelsize": 10, "ytick.labelsize": 10, "lines.linewidth": 1.8,
    "axes.grid": True, "grid.alpha": 0.3, "pdf.fonttype": 42,
}  # fmt: skip
ORACLE_STYLE = {"color": "0.25", "linestyle": "--", "linewidth": 1.4}
BAND_ALPHA = 0.18
SEED_LINE = {"alpha": 0.35, "linewidth": 0.8}
# Only NAS-Bench-201 cells reach these figures (retrained spaces get their own section).
CELL_EDGES = 6
OP_COUNT_RANGE = (0.0, float(CELL_EDGES))
WEIGHT_RANGE = (0.0, 1.0)
CORRELATION_RANGE = (-1.0, 1.0)
CI_BAND_LABEL = "band: 95 % bootstrap CI of the mean"
STD_BAND_LABEL = "band: ±1 std over seeds"
SEED_LINE_LABEL = "thin lines: one seed each"


def method_colors(methods: Iterable[str]) -> dict[str, tuple[float, ...]]:
    """A fixed colour per method, so a method looks the same in every figure."""
    names = sorted(set(methods) - {ALPHAS_LABEL}, key=method_sort_key)
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    colors = {name: cmap(i % cmap.N) for i, name in enumerate(names)}
    colors[ALPHAS_LABEL] = (0.0, 0.0, 0.0, 1.0)
    return colors


def mean_ci_by_epoch(frame: pd.DataFrame, value: str, bounds: Bounds) -> pd.DataFrame:
    """Per method x epoch: mean, 95 % bootstrap interval (``low``, ``high``, within
    ``bounds``) and number of seeds of ``value``."""
    return mean_ci_by(frame, ["method", "epoch"], value, bounds)


def mean_std_band(stats: pd.DataFrame, bounds: Bounds) -> pd.DataFrame:
    """``stats`` (mean, std, n) with ``low``/``high`` = mean ± std, clipped to ``bounds``."""
    out = stats.copy()
    out["low"], out["high"] = out["mean"] - out["std"], out["mean"] + out["std"]
    if bounds is not None:
        out[["low", "high"]] = out[["low", "high"]].clip(*bounds)
    return out


def _draw_lines(ax: Axes, stats: pd.DataFrame, colors: dict[str, tuple[float, ...]]) -> None:
    # The alpha reference last, so the legend lists the methods first.
    for method in sorted(
        stats["method"].unique(), key=lambda m: (m == ALPHAS_LABEL, method_sort_key(m))
    ):
        line = stats[stats["method"] == method].sort_values("epoch")
        dashed = method == ALPHAS_LABEL
        ax.plot(
            line["epoch"], line["mean"], marker="o", markersize=4, label=method,
            color=colors[method], linestyle="-." if dashed else "-",
        )  # fmt: skip
        _draw_band(ax, line, colors[method])


def _draw_band(ax: Axes, line: pd.DataFrame, color: tuple[float, ...]) -> None:
    """The ``low``..``high`` band where two or more seeds define it."""
    band = line[(line["n"] > 1) & line["low"].notna()]
    if not band.empty:
        ax.fill_between(band["epoch"], band["low"], band["high"], color=color,
                        alpha=BAND_ALPHA, linewidth=0)  # fmt: skip


def _draw_seed_lines(
    ax: Axes, frame: pd.DataFrame, value: str, colors: dict[str, tuple[float, ...]]
) -> None:
    """One thin unlabelled line per method and seed: with few seeds a band hides too much."""
    for (method, _seed), line in frame.dropna(subset=[value]).groupby(["method", "seed"]):
        line = line.sort_values("epoch")
        ax.plot(line["epoch"], line[value], color=colors[method], **SEED_LINE)


def _grid(rows: list[str], columns: list[str]) -> tuple[Figure, list[list[Axes]]]:
    fig, axes = plt.subplots(
        len(rows), len(columns), figsize=(4.2 * len(columns) + 2.2, 3.4 * len(rows)),
        squeeze=False, sharex=True, layout="constrained",
    )  # fmt: skip
    return fig, [list(r) for r in axes]


def _finish(
    fig: Figure, axes: list[list[Axes]], xlabel: str, ylabel: str, notes: tuple[str, ...] = ()
) -> None:
    """Axis labels and one legend for the figure; ``notes`` explain bands and seed lines."""
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # checkpoints are whole epochs
    for row in axes:
        row[0].set_ylabel(ylabel)
    handles: dict[str, object] = {}
    for ax in (a for row in axes for a in row):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    # Grey stand-ins: the notes hold for every method's colour.
    for note in notes:
        handles[note] = (
            Line2D([], [], color="0.4", **SEED_LINE) if note == SEED_LINE_LABEL
            else Patch(color="0.4", alpha=BAND_ALPHA, linewidth=0)
        )  # fmt: skip
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper")


def _title(algorithm: str, panel: str, several: bool) -> str:
    return f"{algorithm}: {panel}" if several else panel


def _oracle_line(ax: Axes, values: pd.Series, label: str) -> None:
    if values.notna().any():
        ax.axhline(float(values.mean()), label=label, **ORACLE_STYLE)


def save_figure(fig: Figure, figures_dir: Path, stem: str) -> list[Path]:
    """Write PNG and PDF atomically; the figure is closed afterwards."""
    paths = []
    try:
        for fmt in ("png", "pdf"):
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=DPI)
            path = figures_dir / f"{stem}.{fmt}"
            atomic_write_bytes(path, buffer.getvalue())
            log.info("wrote %s", path)
            paths.append(path)
    finally:
        plt.close(fig)
    return paths


def _render(draw: Callable[[], Figure], figures_dir: Path, stem: str) -> list[Path]:
    with plt.rc_context(STYLE):
        return save_figure(draw(), figures_dir, stem)


def write_degeneration_figure(
    records: pd.DataFrame, figures_dir: Path, colors: dict[str, tuple[float, ...]]
) -> list[Path]:
    """Ground-truth test accuracy (200-epoch fidelity) of the selected cell vs supernet epoch."""
    rows = records[(records["fidelity"] == TABLE_FIDELITY) & (records["metric"] == TABLE_METRIC)]
    algorithms = sorted(rows["algorithm"].unique())
    datasets = ordered_datasets(rows["dataset"].unique())

    def draw() -> Figure:
        fig, axes = _grid(algorithms, datasets)
        for i, algorithm in enumerate(algorithms):
            for j, dataset in enumerate(datasets):
                ax = axes[i][j]
                panel = rows[(rows["algorithm"] == algorithm) & (rows["dataset"] == dataset)]
                methods = panel[~panel["upper_bound"].astype(bool)]
                _draw_seed_lines(ax, methods, "accuracy", colors)
                _draw_lines(ax, mean_ci_by_epoch(methods, "accuracy", ACCURACY_RANGE), colors)
                oracle = panel[panel["upper_bound"].astype(bool)]
                _oracle_line(ax, oracle["accuracy"], "oracle (upper bound)")
                ax.set_title(_title(algorithm, dataset_title(dataset), len(algorithms) > 1))
        _finish(fig, axes, "supernet epoch", "test accuracy of selected cell (%)",
                (SEED_LINE_LABEL, CI_BAND_LABEL))  # fmt: skip
        return fig

    return _render(draw, figures_dir, "degeneration")


def write_collapse_figure(
    records: pd.DataFrame, figures_dir: Path, colors: dict[str, tuple[float, ...]]
) -> list[Path]:
    """Parameter-free and skip_connect ops in the selected cell vs epoch (the collapse)."""
    # Op counts belong to the selected cell, repeated on every dataset/metric row.
    cells = records.drop_duplicates(["algorithm", "config_key", "seed", "epoch", "method"])
    algorithms = sorted(cells["algorithm"].unique())
    panels = {"param_free_ops": "parameter-free ops", "skip_ops": "skip_connect ops"}

    def draw() -> Figure:
        fig, axes = _grid(algorithms, list(panels))
        for i, algorithm in enumerate(algorithms):
            mine = cells[cells["algorithm"] == algorithm]
            methods = mine[~mine["upper_bound"].astype(bool)]
            for j, (column, title) in enumerate(panels.items()):
                ax = axes[i][j]
                _draw_lines(ax, mean_ci_by_epoch(methods, column, OP_COUNT_RANGE), colors)
                oracle = mine.loc[mine["upper_bound"].astype(bool), column].astype(float)
                _oracle_line(ax, oracle, "oracle (upper bound)")
                ax.set_ylim(-0.3, 6.3)
                ax.set_title(_title(algorithm, title, len(algorithms) > 1))
        _finish(fig, axes, "supernet epoch", f"ops in selected cell (of {CELL_EDGES} edges)",
                (CI_BAND_LABEL,))  # fmt: skip
        return fig

    return _render(draw, figures_dir, "collapse")


def write_correlation_figure(
    by_epoch: pd.DataFrame, figures_dir: Path, colors: dict[str, tuple[float, ...]]
) -> list[Path]:
    """Mean Kendall tau and Spearman rho (scores vs ground truth) vs supernet epoch."""
    algorithms = sorted(by_epoch["algorithm"].unique())
    panels = {"tau": "Kendall τ", "rho": "Spearman ρ"}

    def draw() -> Figure:
        fig, axes = _grid(algorithms, list(panels))
        for i, algorithm in enumerate(algorithms):
            mine = by_epoch[by_epoch["algorithm"] == algorithm]
            for j, (column, title) in enumerate(panels.items()):
                ax = axes[i][j]
                stats = mine[["method", "epoch", f"{column}_mean", f"{column}_std", "seeds"]]
                stats.columns = ["method", "epoch", "mean", "std", "n"]
                _draw_lines(ax, mean_std_band(stats, CORRELATION_RANGE), colors)
                ax.axhline(0.0, color="0.5", linewidth=0.8)
                ax.set_ylim(-1.05, 1.05)
                ax.set_title(_title(algorithm, title, len(algorithms) > 1))
        _finish(fig, axes, "supernet epoch", "rank correlation (mean over edges)",
                (STD_BAND_LABEL,))  # fmt: skip
        return fig

    return _render(draw, figures_dir, "rank_correlation")


def write_alpha_figure(mixing: pd.DataFrame, figures_dir: Path) -> list[Path]:
    """Softmax weight of every op on every edge vs supernet epoch (mean over seeds, 95 %
    bootstrap interval of the mean within [0, 1]).

    ``mixing`` is the ``mixing_weights`` table: what each run's ``metrics.csv`` recorded.
    """
    algorithms = sorted(mixing["algorithm"].unique())
    # Edges and ops in the order the space lists them (metrics.csv columns keep it).
    edges = list(dict.fromkeys(mixing["edge"]))
    ops = list(dict.fromkeys(mixing["op"]))
    cmap = plt.get_cmap("tab10")
    op_colors = {op: cmap(i) for i, op in enumerate(ops)}

    per_row = 3  # six edges as two rows of three panels per algorithm
    rows_each = -(-len(edges) // per_row)

    def draw() -> Figure:
        rows = [f"{a}/{r}" for a in algorithms for r in range(rows_each)]
        fig, axes = _grid(rows, [str(c) for c in range(min(per_row, len(edges)))])
        for i, algorithm in enumerate(algorithms):
            mine = mixing[mixing["algorithm"] == algorithm]
            for j, edge in enumerate(edges):
                ax = axes[i * rows_each + j // per_row][j % per_row]
                weights = mine[mine["edge"] == edge].astype({"weight": float})
                stats = mean_ci_by(weights, ["op", "epoch"], "weight", WEIGHT_RANGE)
                for op in [o for o in ops if o in set(stats["op"])]:
                    line = stats[stats["op"] == op].sort_values("epoch")
                    ax.plot(line["epoch"], line["mean"], label=op, color=op_colors[op])
                    _draw_band(ax, line, op_colors[op])
                ax.set_title(_title(algorithm, f"edge {edge}", len(algorithms) > 1))
        _finish(fig, axes, "supernet epoch", "softmax(alpha)", (CI_BAND_LABEL,))
        return fig

    return _render(draw, figures_dir, "alphas")
