"""Cell diagrams of a DARTS genotype, drawn as the DARTS paper's figures draw them.

Each cell is a left-to-right graph: the two previous cells' outputs ``c_{k-2}`` and
``c_{k-1}``, intermediate nodes ``0``..``3`` (genotype nodes 2..5), and the cell output
``c_{k}`` that concatenates them; every kept edge carries its op, coloured by op family.
Drawn with matplotlib (no display needed); graphviz is used only when asked for or, with
``engine="auto"``, when both its Python package and its ``dot`` program are installed.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from harness.errors import HarnessError
from spaces.darts.genotype import INPUTS, STEPS, Genotype

OUTPUT = "c_{k}"
INPUT_LABELS = ("c_{k-2}", "c_{k-1}")
FAMILY_COLORS = {"conv": "#1f77b4", "pool": "#d62728", "skip": "#2ca02c", "other": "#7f7f7f"}
NODE_COLORS = {"input": "#a6d96a", "node": "#9ecae1", "output": "#fdd49e"}
SUFFIXES = (".png", ".pdf", ".svg")
X_GAP, Y_GAP = 2.2, 1.2  # between layers, and between the nodes of a layer: room for labels
RADS = (0.0, 0.25, -0.25, 0.45, -0.45)
LABEL_TS = (0.5, 0.4, 0.6, 0.35, 0.65, 0.3, 0.7)


def node_label(index: int) -> str:
    """Genotype node index -> label; intermediate node j is shown as j - 2, as in the paper."""
    return INPUT_LABELS[index] if index < INPUTS else str(index - INPUTS)


def op_family(op: str) -> str:
    if op == "skip_connect":
        return "skip"
    return "conv" if "conv" in op else "pool" if "pool" in op else "other"


def cell_edges(pairs: Sequence[tuple[str, int]]) -> list[tuple[str, str, str]]:
    """(source, target, op) for the cell's 8 kept edges, then the 4 concat edges
    ``(node, "c_{k}", "")``."""
    if len(pairs) != 2 * STEPS:
        raise HarnessError(f"a DARTS cell lists {2 * STEPS} (op, input) pairs, got {len(pairs)}")
    edges = []
    for k, (op, source) in enumerate(pairs):
        node = INPUTS + k // 2
        if not 0 <= source < node:
            raise HarnessError(f"DARTS node {node} cannot take input {source} (0..{node - 1})")
        edges.append((node_label(source), node_label(node), op))
    return edges + [(str(step), OUTPUT, "") for step in range(STEPS)]


def layout(edges: list[tuple[str, str, str]]) -> dict[str, tuple[float, float]]:
    """Longest-path layers (x); a layer's nodes stacked and centred (y),
    ordered by the mean height of their inputs so that fewer edges cross."""
    layer, sources = dict.fromkeys(INPUT_LABELS, 0), {}
    for source, target, _ in edges:  # edges come in topological order of their targets
        layer[target] = max(layer.get(target, 0), layer[source] + 1)
        sources.setdefault(target, []).append(source)
    pos: dict[str, tuple[float, float]] = {}
    for x in range(max(layer.values()) + 1):
        names = [name for name, at in layer.items() if at == x]
        if x:
            names.sort(key=lambda n: -sum(pos[s][1] for s in sources[n]) / len(sources[n]))
        top = (len(names) - 1) / 2
        pos.update((n, (X_GAP * x, Y_GAP * (top - i))) for i, n in enumerate(names))
    return pos


def bezier(p1: tuple[float, float], p2: tuple[float, float], rad: float, t: float):
    """Point and direction (degrees) at ``t`` of matplotlib's ``arc3`` curve from p1 to p2
    (the same curve in data and display space because the axes' aspect is equal)."""
    (x1, y1), (x2, y2) = p1, p2
    cx, cy = (x1 + x2) / 2 + rad * (y2 - y1), (y1 + y2) / 2 - rad * (x2 - x1)
    x = (1 - t) ** 2 * x1 + 2 * t * (1 - t) * cx + t**2 * x2
    y = (1 - t) ** 2 * y1 + 2 * t * (1 - t) * cy + t**2 * y2
    dx = 2 * (1 - t) * (cx - x1) + 2 * t * (x2 - cx)
    dy = 2 * (1 - t) * (cy - y1) + 2 * t * (y2 - cy)
    return (x, y), math.degrees(math.atan2(dy, dx))


def clearance(point: tuple[float, float], others: list[tuple[float, float]]) -> float:
    return min((math.dist(point, o) for o in others), default=math.inf)


def label_points(center: tuple[float, float], angle: float, op: str):
    """Points along a label's length (about 0.055 data units, i.e. inches, a character)."""
    half, theta = 0.0275 * len(op), math.radians(angle)
    return [(center[0] + f * half * math.cos(theta), center[1] + f * half * math.sin(theta))
            for f in (-1, -0.5, 0, 0.5, 1)]  # fmt: skip


def node_kind(label: str) -> str:
    return "input" if label in INPUT_LABELS else "output" if label == OUTPUT else "node"


def draw_cell(ax, pairs: Sequence[tuple[str, int]], title: str) -> None:
    edges = cell_edges(pairs)
    pos = layout(edges)
    taken: list[tuple[float, float]] = []  # points covered by labels placed so far
    for source, target, op in edges:
        p1, p2 = pos[source], pos[target]
        # Bend an edge just enough to pass beside, not through, the nodes between its ends.
        between = [p for n, p in pos.items() if n not in (source, target)]
        rad = max(RADS, key=lambda r: min(clearance(bezier(p1, p2, r, t / 10)[0], between)
                                          for t in range(1, 10)) - abs(r))  # fmt: skip
        color = FAMILY_COLORS[op_family(op)] if op else "0.45"
        ax.annotate("", xy=p2, xytext=p1, zorder=1,
                    arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.3,
                                "shrinkA": 16, "shrinkB": 16, "linestyle": "-" if op else "--",
                                "connectionstyle": f"arc3,rad={rad}"})  # fmt: skip
        if op:
            # Put the label where it is farthest from every node and every label placed so far.
            (x, y), angle = max(
                (bezier(p1, p2, rad, t) for t in LABEL_TS),
                key=lambda c: min(clearance(q, list(pos.values()) + taken)
                                  for q in label_points(*c, op)),
            )  # fmt: skip
            taken += label_points((x, y), angle, op)
            ax.text(x, y, op, color=color, fontsize=7, ha="center", va="center", zorder=3,
                    rotation=(angle + 90) % 180 - 90, rotation_mode="anchor",
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none",
                          "alpha": 0.85})  # fmt: skip
    for name, (x, y) in pos.items():
        text = f"${name}$" if name.startswith("c_") else name  # mathtext: c with a subscript
        ax.text(x, y, text, ha="center", va="center", fontsize=10, zorder=2,
                bbox={"boxstyle": "round,pad=0.4", "fc": NODE_COLORS[node_kind(name)],
                      "ec": "0.2"})  # fmt: skip
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.4, max(xs) + 0.4)
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(title)


def draw_matplotlib(genotype: Genotype, path: Path, title: str | None) -> None:
    cells = ((genotype.normal, "normal cell"), (genotype.reduce, "reduction cell"))
    spans = [np.ptp(list(layout(cell_edges(pairs)).values()), axis=0) for pairs, _ in cells]
    # One inch per data unit, whatever the cells' shapes, keeps labels and nodes one size.
    width, height = sum(s[0] + 0.8 for s in spans) + 0.6, max(s[1] for s in spans) + 3.0
    # A bare Figure on the Agg canvas leaves pyplot's global state and backend untouched.
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, width_ratios=[s[0] + 0.8 for s in spans])
    for ax, (pairs, name) in zip(axes, cells, strict=True):
        draw_cell(ax, pairs, name)
    handles = [Line2D([], [], color=c, lw=2, label=f) for f, c in FAMILY_COLORS.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    if title:
        fig.suptitle(title)
    with matplotlib.rc_context({"pdf.fonttype": 42}):  # editable text in the PDF
        fig.savefig(path, dpi=150)


def draw_graphviz(genotype: Genotype, path: Path, title: str | None) -> None:
    import graphviz  # optional: imported only here so the module works without it

    graph = graphviz.Digraph(graph_attr={"rankdir": "LR", "label": title or "",
                                         "labelloc": "t"})  # fmt: skip
    for prefix, pairs, name in (("n", genotype.normal, "normal cell"),
                                ("r", genotype.reduce, "reduction cell")):  # fmt: skip
        with graph.subgraph(name=f"cluster_{prefix}", graph_attr={"label": name}) as sub:
            edges = cell_edges(pairs)
            for label in {e[0] for e in edges} | {e[1] for e in edges}:
                sub.node(f"{prefix}{label}", label.replace("{", "").replace("}", ""),
                         shape="box", style="rounded,filled",
                         fillcolor=NODE_COLORS[node_kind(label)])  # fmt: skip
            for source, target, op in edges:
                color = FAMILY_COLORS[op_family(op)] if op else "gray45"
                sub.edge(
                    f"{prefix}{source}",
                    f"{prefix}{target}",
                    label=op,
                    color=color,
                    fontcolor=color,
                    style="solid" if op else "dashed",
                )
    path.write_bytes(graph.pipe(format=path.suffix.lower()[1:]))


def graphviz_available() -> bool:
    return importlib.util.find_spec("graphviz") is not None and shutil.which("dot") is not None


def draw_genotype(genotype: Genotype, path: str | Path, title: str | None = None,
                  engine: str = "auto") -> Path:  # fmt: skip
    """Draw the normal and the reduction cell side by side into ``path`` (format by suffix:
    .png, .pdf or .svg). ``engine``: "matplotlib", "graphviz" or "auto" (graphviz when it
    is fully installed, else matplotlib)."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise HarnessError(f"cannot draw a genotype to {path.name}: use one of {SUFFIXES}")
    if engine not in ("auto", "matplotlib", "graphviz"):
        raise HarnessError(f"unknown diagram engine {engine!r}: auto, matplotlib or graphviz")
    use_graphviz = engine == "graphviz" or (engine == "auto" and graphviz_available())
    if use_graphviz and not graphviz_available():
        raise HarnessError("engine='graphviz' needs the graphviz Python package and its dot "
                           "program; engine='matplotlib' needs neither")  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    (draw_graphviz if use_graphviz else draw_matplotlib)(genotype, path, title)
    return path
