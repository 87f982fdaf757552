"""A generic cell diagram: what :meth:`spaces.base.SearchSpace.draw_cell` draws for a space
without a diagram of its own.

The cell's nodes sit left to right in node order; every edge whose op is not ``none``
is an arrow from its input node to its output node, bent the more the more nodes it
spans (so that arrows do not run through the nodes between their ends), and labelled
with its op. Drawn with matplotlib on its Agg canvas, so pyplot's state is left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.errors import HarnessError

SUFFIXES = (".png", ".pdf", ".svg")
DROPPED = "none"  # the op of an edge a cell does not keep


def draw_edges(edges: Sequence[tuple[int, int, str]], path: str | Path,
               title: str | None = None) -> Path:  # fmt: skip
    """Draw ``(input node, output node, op)`` edges into ``path``; returns ``path``."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise HarnessError(f"cannot draw a cell to {path.name}: use one of {SUFFIXES}")
    nodes = sorted({n for i, j, _ in edges for n in (i, j)})
    x = {node: 1.6 * k for k, node in enumerate(nodes)}
    fig = Figure(figsize=(max(3.0, 1.6 * len(nodes) + 1.0), 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, j, op in edges:
        if op == DROPPED:
            continue
        rad = -_bend(nodes.index(j) - nodes.index(i))
        ax.annotate("", xy=(x[j], 0.0), xytext=(x[i], 0.0), zorder=1,
                    arrowprops={"arrowstyle": "-|>", "lw": 1.2, "color": "0.25",
                                "shrinkA": 14, "shrinkB": 14,
                                "connectionstyle": f"arc3,rad={rad}"})  # fmt: skip
        # the middle of an arc3 curve lies half its control point's offset from the chord
        height = -rad * (x[j] - x[i]) / 2
        ax.text((x[i] + x[j]) / 2, height, op, fontsize=7, ha="center", va="center",
                zorder=3, bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none"})
    for node in nodes:
        ax.text(x[node], 0.0, str(node), ha="center", va="center", fontsize=10, zorder=2,
                bbox={"boxstyle": "round,pad=0.4", "fc": "#9ecae1", "ec": "0.2"})
    top = max((_bend(nodes.index(j) - nodes.index(i)) * (x[j] - x[i]) / 2
               for i, j, op in edges if op != DROPPED), default=0.0)  # fmt: skip
    ax.set_xlim(-0.6, (x[nodes[-1]] if nodes else 0.0) + 0.6)
    ax.set_ylim(-0.5, top + 0.5)
    ax.set_aspect("equal")  # arcs are bent in display space: keep it the data's
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"pdf.fonttype": 42}):  # editable text in the PDF
        fig.savefig(path, dpi=150)
    return path


def _bend(span: int) -> float:
    """How far (``arc3``'s rad, upwards) an edge over ``span`` node gaps is bent."""
    return 0.0 if span <= 1 else 0.18 * span
