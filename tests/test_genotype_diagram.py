"""Cell diagrams of DARTS genotypes: the edges they draw and the files they write."""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pytest
from PIL import Image

from harness.errors import HarnessError
from spaces.darts import diagram
from spaces.darts.diagram import FAMILY_COLORS, cell_edges, draw_genotype
from spaces.darts.genotype import DARTS_V2, parse_genotype

# DARTS V1 as the reference prints it (quark0/darts, cnn/genotypes.py).
DARTS_V1_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"
)


def rgb(hex_color: str) -> tuple[int, int, int]:
    return tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))


def test_cell_edges_of_the_darts_v2_normal_cell():
    # Written out by hand from DARTS_V2.normal: node j (shown as j - 2) takes pairs 2j-4, 2j-3.
    assert cell_edges(DARTS_V2.normal) == [
        ("c_{k-2}", "0", "sep_conv_3x3"),
        ("c_{k-1}", "0", "sep_conv_3x3"),
        ("c_{k-2}", "1", "sep_conv_3x3"),
        ("c_{k-1}", "1", "sep_conv_3x3"),
        ("c_{k-1}", "2", "sep_conv_3x3"),
        ("c_{k-2}", "2", "skip_connect"),
        ("c_{k-2}", "3", "skip_connect"),
        ("0", "3", "dil_conv_3x3"),
        ("0", "c_{k}", ""),
        ("1", "c_{k}", ""),
        ("2", "c_{k}", ""),
        ("3", "c_{k}", ""),
    ]


def test_cell_edges_of_the_darts_v2_reduction_cell_keep_pair_order():
    edges = cell_edges(DARTS_V2.reduce)
    assert [op for _, _, op in edges[:8]] == [op for op, _ in DARTS_V2.reduce]
    assert edges[2] == ("0", "1", "skip_connect")  # input 2 is intermediate node 0
    assert edges[7] == ("c_{k-1}", "3", "max_pool_3x3")


@pytest.mark.parametrize(
    "pairs",
    [DARTS_V2.normal[:6], DARTS_V2.normal[:7] + [("sep_conv_3x3", 5)]],
    ids=["too-few-pairs", "input-not-earlier"],
)
def test_cell_edges_rejects_a_malformed_cell(pairs):
    with pytest.raises(HarnessError):
        cell_edges(pairs)


def test_draw_genotype_writes_a_colour_coded_png_and_a_pdf(tmp_path):
    png = draw_genotype(DARTS_V2, tmp_path / "sub" / "darts_v2.png", title="DARTS V2",
                        engine="matplotlib")  # fmt: skip
    assert png == tmp_path / "sub" / "darts_v2.png"
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.width > 1000 and image.height > 400
        pixels = np.asarray(image.convert("RGB"))
    # DARTS V2 has conv, pool and skip edges, each drawn in its family's colour.
    for family in ("conv", "pool", "skip"):
        assert (pixels == rgb(FAMILY_COLORS[family])).all(axis=-1).sum() > 100, family

    pdf = draw_genotype(DARTS_V2, tmp_path / "darts_v2.pdf", engine="matplotlib")
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 5000


def test_a_genotype_parsed_from_its_printed_form_draws(tmp_path):
    genotype = parse_genotype(DARTS_V1_TEXT)
    assert parse_genotype(str(DARTS_V2)) == DARTS_V2
    path = draw_genotype(genotype, tmp_path / "darts_v1.png")
    with Image.open(path) as image:
        image.verify()
    assert path.stat().st_size > 10_000


def test_draw_genotype_rejects_unknown_formats_and_engines(tmp_path):
    with pytest.raises(HarnessError, match="png"):
        draw_genotype(DARTS_V2, tmp_path / "cells.jpg")
    with pytest.raises(HarnessError, match="engine"):
        draw_genotype(DARTS_V2, tmp_path / "cells.png", engine="tikz")


def test_works_without_graphviz(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # makes `import graphviz` fail
    module = importlib.reload(diagram)
    assert not module.graphviz_available()
    assert module.draw_genotype(DARTS_V2, tmp_path / "auto.png").stat().st_size > 10_000
    with pytest.raises(HarnessError, match="graphviz"):
        module.draw_genotype(DARTS_V2, tmp_path / "forced.png", engine="graphviz")


def test_graphviz_engine_builds_both_cells(tmp_path, monkeypatch):
    """With a stand-in graphviz (the real one is optional): two clusters of 7 nodes and 12
    edges each, and the rendered bytes written to the path."""
    graphs = []

    class Digraph:
        def __init__(self, name: str = "", graph_attr: dict | None = None) -> None:
            self.name, self.graph_attr, self.nodes, self.edges = name, graph_attr, [], []
            self.subgraphs = []
            graphs.append(self)

        def subgraph(self, name: str, graph_attr: dict):
            self.subgraphs.append(Digraph(name, graph_attr))
            return self.subgraphs[-1]

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            return None

        def node(self, name: str, label: str, **attrs) -> None:
            self.nodes.append((name, label))

        def edge(self, tail: str, head: str, label: str, **attrs) -> None:
            self.edges.append((tail, head, label))

        def pipe(self, format: str) -> bytes:
            return f"rendered {format}".encode()

    monkeypatch.setitem(sys.modules, "graphviz", types.SimpleNamespace(Digraph=Digraph))
    monkeypatch.setattr(diagram, "graphviz_available", lambda: True)
    path = draw_genotype(DARTS_V2, tmp_path / "cells.svg", title="DARTS V2")
    assert path.read_bytes() == b"rendered svg"
    top = graphs[0]
    assert [sub.graph_attr["label"] for sub in top.subgraphs] == ["normal cell", "reduction cell"]
    normal, reduce = top.subgraphs
    assert len(normal.nodes) == len(reduce.nodes) == 7
    assert ("nc_{k-2}", "n3", "skip_connect") in normal.edges
    assert ("r0", "rc_{k}", "") in reduce.edges and len(reduce.edges) == 12
