"""The alpha-trajectory figure plots exactly the softmax weights that metrics.csv recorded."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.cli import main
from harness.report import curves
from spaces.nb201 import EDGE_NAMES, OP_NAMES


def test_alpha_figure_plots_the_weights_of_metrics_csv(tmp_path, run_args, monkeypatch):
    results, out = tmp_path / "results", tmp_path / "report"
    assert main(run_args("--methods", "magnitude")) == 0

    plotted: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    original = curves.save_figure

    def capture(fig, figures_dir, stem):
        if stem == "alphas":
            for ax in fig.axes:
                edge = ax.get_title().removeprefix("edge ")
                for line in ax.get_lines():
                    plotted[(edge, line.get_label())] = (line.get_xdata(), line.get_ydata())
        return original(fig, figures_dir, stem)

    monkeypatch.setattr(curves, "save_figure", capture)
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0

    for suffix in ("png", "pdf"):
        assert (out / "figures" / f"alphas.{suffix}").stat().st_size > 1000
    assert "figures/alphas.png" in (out / "index.html").read_text()

    metrics = pd.concat(
        pd.read_csv(path) for path in sorted((results / "runs").glob("*/metrics.csv"))
    )
    assert len(plotted) == len(EDGE_NAMES) * len(OP_NAMES)
    for edge in EDGE_NAMES:
        for op in OP_NAMES:
            expected = metrics.groupby("epoch")[f"w[{edge}][{op}]"].mean()
            epochs, values = plotted[(edge, op)]
            np.testing.assert_array_equal(epochs, expected.index.to_numpy())
            np.testing.assert_allclose(values, expected.to_numpy(), rtol=1e-12)
