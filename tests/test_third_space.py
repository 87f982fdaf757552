"""A third search space, defined only here, runs through the whole harness by name.

``tiny3`` is deliberately small: a cell of three nodes and three edges (1<-0, 2<-0, 2<-1),
two ops (``skip_connect`` and a 3x3 convolution), every edge kept, no tabular ground truth.
It implements :class:`spaces.base.SearchSpace` and the :class:`spaces.base.Supernet`
protocol and nothing else; :func:`spaces.register_space` makes it a space like the
built-ins, and ``harness run``, ``harness retrain`` and ``harness report`` then search in
it, select from it, retrain its cells and report them, with no line of the harness knowing
it. The protocol's own checks (abstract members, declared attributes, registration) are
tested on it too.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spaces
from harness.cli import main
from harness.config import SpaceSettings
from harness.errors import HarnessError
from harness.retrain_settings import retrain_settings
from harness.retraining import canonical_genotype, retrain_genotype
from spaces.base import AlphaMixing, SearchSpace, Topology

NAME = "tiny3"
OPS = ("skip_connect", "conv_3x3")


# -- the space ------------------------------------------------------------------------------
def conv(channels: int, affine: bool) -> nn.Module:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(channels, affine=affine))  # fmt: skip


def make_op(name: str, channels: int, affine: bool) -> nn.Module:
    return nn.Identity() if name == "skip_connect" else conv(channels, affine)


class Cell(nn.Module):
    """Node 0 is the input; node j sums its input edges; the output is node 2."""

    def __init__(self, edges: Sequence[tuple[int, int]], ops: list[nn.Module]) -> None:
        super().__init__()
        self.pairs = tuple(edges)
        self.edges = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x, 0, 0]
        for (i, j), op in zip(self.pairs, self.edges, strict=True):
            nodes[j] = nodes[j] + op(nodes[i])
        return nodes[-1]


class MixedOp(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(make_op(name, channels, affine=False) for name in OPS)

    def forward(self, x: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        # ops of weight exactly 0 are not computed (as the built-in supernets do)
        return sum(row[k] * op(x) for k, (op, w) in enumerate(zip(self.ops, row.tolist(),
                                                                   strict=True)) if w != 0.0)


class SearchCell(nn.Module):
    def __init__(self, edges: Sequence[tuple[int, int]], channels: int) -> None:
        super().__init__()
        self.pairs = tuple(edges)
        self.edges = nn.ModuleList(MixedOp(channels) for _ in self.pairs)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        nodes = [x, 0, 0]
        for e, ((i, j), mixed) in enumerate(zip(self.pairs, self.edges, strict=True)):
            nodes[j] = nodes[j] + mixed(nodes[i], weights[e])
        return nodes[-1]


class Head(nn.Module):
    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


def stem(channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(channels))  # fmt: skip


class Tiny3Supernet(AlphaMixing, nn.Module):
    """The :class:`spaces.base.Supernet` protocol, the simplest way: op by op."""

    def __init__(self, space: Tiny3Space, channels: int, cells: int, num_classes: int) -> None:
        super().__init__()
        self.space = space
        self.stem = stem(channels)
        self.cells = nn.ModuleList(SearchCell(space.edges, channels) for _ in range(cells))
        self.head = Head(channels, num_classes)
        self.alphas = nn.Parameter(1e-3 * torch.randn(space.num_edges, space.num_ops))
        self.register_buffer("active_ops", torch.from_numpy(space.candidate_mask.copy()))

    @property
    def num_search_cells(self) -> int:
        return len(self.cells)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        weights = self.mixing_weights() if weights is None else weights
        x = self.stem(x)
        for c, cell in enumerate(self.cells):
            x = cell(x, weights[c] if weights.dim() == 3 else weights)
        return self.head(x)

    def candidate_logits(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return torch.stack([self(x, w) for w in weights])

    def op_modules(self, op: int) -> list[nn.Module]:
        return [mixed.ops[op] for cell in self.cells for mixed in cell.edges]


class Tiny3Network(nn.Module):
    """One cell's discrete network: ``cells`` copies of the cell between stem and head."""

    def __init__(self, space: Tiny3Space, choices: Sequence[int], channels: int, cells: int,
                 num_classes: int, affine: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.stem = stem(channels)
        self.cells = nn.ModuleList(
            Cell(space.edges, [make_op(OPS[k], channels, affine) for k in choices])
            for _ in range(cells)
        )
        self.head = Head(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.head(x)


class Tiny3Space(SearchSpace):
    name = NAME
    op_names = OPS
    edges = ((0, 1), (0, 2), (1, 2))
    parameter_free_ops = frozenset({"skip_connect"})
    topology = Topology.EVERY_EDGE
    benchmark = None
    compute_support = {"cell": ("reference",), "channels_last": (False,),
                       "autocast": ("none",), "compile": (False,)}  # fmt: skip

    # A genotype is the edges' ops in edge order, separated by "|" (spaces allowed).
    def encode_unchecked(self, choices: Sequence[int]) -> str:
        return "|".join(self.op_names[int(k)] for k in choices)

    def decode_unchecked(self, genotype: str) -> tuple[int, ...]:
        ops = [op.strip() for op in genotype.split("|")] if isinstance(genotype, str) else []
        if len(ops) != self.num_edges or any(op not in self.op_names for op in ops):
            raise HarnessError(f"{genotype!r} is not a tiny3 cell: write {self.num_edges} ops "
                               f"from {', '.join(self.op_names)} separated by '|'")  # fmt: skip
        return tuple(self.op_names.index(op) for op in ops)

    def build_supernet(self, settings, num_classes: int, compute=None) -> Tiny3Supernet:
        return Tiny3Supernet(self, settings.channels, settings.cells_per_stage, num_classes)

    def build_network(self, choices, settings, num_classes: int) -> Tiny3Network:
        if settings.auxiliary_weight > 0:
            raise HarnessError("tiny3 networks have no auxiliary head: set "
                               "retrain.auxiliary_weight=0")  # fmt: skip
        return Tiny3Network(self, choices, settings.channels, settings.layers, num_classes)

    def discrete_from_supernet(self, supernet: Tiny3Supernet, choices) -> Tiny3Network:
        choices = self.check_cell(choices)
        network = Tiny3Network(self, choices, supernet.head.classifier.in_features,
                               supernet.num_search_cells, supernet.head.classifier.out_features,
                               affine=False)  # fmt: skip
        network.stem = copy.deepcopy(supernet.stem)
        network.head = copy.deepcopy(supernet.head)
        for cell, search_cell in zip(network.cells, supernet.cells, strict=True):
            cell.edges = nn.ModuleList(copy.deepcopy(mixed.ops[k])
                                       for mixed, k in zip(search_cell.edges, choices,
                                                           strict=True))  # fmt: skip
        return network.to(next(supernet.parameters()).device)


def tiny3(name: str, ops: str | None = None, edge_ops: str | None = None) -> Tiny3Space:
    if ops is not None or edge_ops is not None:
        raise HarnessError("space tiny3 cannot be narrowed")
    return Tiny3Space()


@pytest.fixture
def registered():
    spaces.register_space(NAME, tiny3, "a three-edge test space (skip, conv; no table)")
    yield spaces.make_space(SpaceSettings(name=NAME))
    spaces.unregister_space(NAME)


# -- the protocol's checks --------------------------------------------------------------------
def test_a_space_missing_a_member_fails_when_built_in_one_sentence():
    class NoNetwork(SearchSpace):
        name, op_names, edges, parameter_free_ops = "x", OPS, ((0, 1),), frozenset()
        encode_unchecked = Tiny3Space.encode_unchecked
        decode_unchecked = Tiny3Space.decode_unchecked
        build_supernet = Tiny3Space.build_supernet

    with pytest.raises(HarnessError, match=r"does not implement build_network, "
                                           r"discrete_from_supernet"):  # fmt: skip
        NoNetwork()

    with pytest.raises(HarnessError, match="edges must be a tuple"):
        type("NoEdges", (Tiny3Space,), {"edges": None})()

    class Unnamed(SearchSpace):
        op_names, edges, parameter_free_ops = OPS, ((0, 1),), frozenset()
        encode_unchecked = Tiny3Space.encode_unchecked
        decode_unchecked = Tiny3Space.decode_unchecked
        build_supernet = Tiny3Space.build_supernet
        build_network = Tiny3Space.build_network
        discrete_from_supernet = Tiny3Space.discrete_from_supernet

    with pytest.raises(HarnessError, match="sets no name"):
        Unnamed()
    with pytest.raises(HarnessError, match="unknown topology rule 'ring'"):
        type("Ring", (Tiny3Space,), {"topology": "ring"})()
    # a string naming a known rule is read as the typed value
    assert type("Spelt", (Tiny3Space,), {"topology": "every-edge"})().topology is (
        Topology.EVERY_EDGE
    )
    assert not Tiny3Space().prunes_inputs


def test_registration_takes_a_new_name_only(registered):
    assert NAME in spaces.space_names() and list(spaces.space_names())[0] == "nb201"
    with pytest.raises(HarnessError, match="registered already"):
        spaces.register_space(NAME, tiny3, "again")
    with pytest.raises(HarnessError, match="darts is built in"):
        spaces.register_space("darts", tiny3, "mine")
    with pytest.raises(HarnessError, match="cannot be narrowed"):
        spaces.make_space(SpaceSettings(name=NAME, ops="conv_3x3"))


def test_the_space_describes_encodes_and_checks_its_cells(registered):
    space = registered
    assert space.describe() == {
        "name": NAME, "topology": "every-edge", "cells": 8,
        "candidates": {"1<-0": list(OPS), "2<-0": list(OPS), "2<-1": list(OPS)},
    }  # fmt: skip
    cells = list(space.cells())
    assert len(cells) == 8 and all(space.decode(space.encode(c)) == c for c in cells)
    assert space.canonical_key(" conv_3x3 |skip_connect| conv_3x3") == (
        "conv_3x3|skip_connect|conv_3x3"
    )
    with pytest.raises(HarnessError, match="is not a tiny3 cell"):
        space.decode("conv_3x3|conv_3x3")
    # the registry finds the space that reads a genotype, and nothing else reads it
    assert spaces.space_reading("skip_connect|skip_connect|conv_3x3") is spaces.space_named(NAME)
    assert canonical_genotype("skip_connect | skip_connect|conv_3x3") == (
        "skip_connect|skip_connect|conv_3x3"
    )


def test_one_hot_supernet_equals_the_discrete_network_carrying_its_weights(registered):
    space = registered
    settings = SpaceSettings(name=NAME, channels=4, cells_per_stage=2)
    torch.manual_seed(0)
    supernet = space.build_supernet(settings, 10).eval()
    x = torch.randn(2, 3, 8, 8)
    for choices in space.cells():
        one_hot = F.one_hot(torch.tensor(choices), space.num_ops).float()
        network = space.discrete_from_supernet(supernet, choices).eval()
        torch.testing.assert_close(supernet(x, one_hot), network(x))
    stacked = torch.stack([F.one_hot(torch.tensor(c), 2).float() for c in space.cells()])
    assert supernet.candidate_logits(x, stacked).shape == (8, 2, 10)
    assert len(supernet.op_modules(1)) == 2 * space.num_edges


def test_a_tiny3_retrain_has_a_key_of_its_own(registered, tmp_path):
    from conftest import make_arrays

    arrays = make_arrays(train=64, test=32, size=8)
    settings = retrain_settings("smoke", {"epochs": 1, "train_images": 64, "test_images": 32})
    outcome = retrain_genotype("conv_3x3 | skip_connect | conv_3x3", settings, 0, arrays,
                               tmp_path)  # fmt: skip
    assert outcome.result["space"] == NAME
    assert outcome.result["genotype"] == "conv_3x3|skip_connect|conv_3x3"
    stored = json.loads((tmp_path / "retrains" / outcome.key / "settings.json").read_text())
    assert stored["space"] == NAME and outcome.result["params"] > 0


# -- the whole harness, by name ---------------------------------------------------------------
def test_run_retrain_and_report_in_a_registered_third_space(
    registered, tmp_path, tiny_image_folder, monkeypatch, capsys
):
    space = registered
    monkeypatch.chdir(tmp_path)  # no ../shared/data here: a space without a table needs none
    monkeypatch.delenv("HARNESS_GROUND_TRUTH", raising=False)
    results = tmp_path / "results"
    where = ["--data", str(tiny_image_folder), "--cache", str(tmp_path / "cache"),
             "--results", str(results), "--quiet"]  # fmt: skip
    assert main(["run", "--preset", "smoke", "--space", NAME, "--methods", "magnitude,random",
                 "--seeds", "0", "--threads", "1", *where]) == 0  # fmt: skip

    # the selections exist and are cells of the space
    selections = pd.read_parquet(results / "selections.parquet")
    final = selections[selections["epoch"] == selections["final_epoch"]]
    assert sorted(final["method"]) == ["magnitude", "random"]
    assert set(selections["space"]) == {NAME}
    for arch in selections["arch"]:
        assert space.contains(space.decode(arch))
    records = pd.read_parquet(results / "records.parquet")
    assert set(records["fidelity"]) == {"not-retrained"}

    capsys.readouterr()
    assert main(["retrain", "--protocol", "smoke", "--space", NAME,
                 "--set", "retrain.test_images=40", "--threads", "1", *where]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "retrain-smoke-custom-" in out
    assert set(final["arch"]) <= {line.split()[-1] for line in out.splitlines()[1:]}
    stored = [json.loads(p.read_text()) for p in (results / "retrains").glob("*/result.json")]
    assert {r["space"] for r in stored} == {NAME}
    assert {r["genotype"] for r in stored} == set(final["arch"])

    # retrained accuracies are recorded for the final selections
    records = pd.read_parquet(results / "records.parquet")
    done = records[(records["epoch"] == records["final_epoch"])
                   & records["fidelity"].str.startswith("retrain-smoke")]  # fmt: skip
    assert sorted(done["method"]) == ["magnitude", "random"]
    assert set(done["space"]) == {NAME}
    assert done["accuracy"].between(0, 100).all() and (done["params"] > 0).all()
    assert (done["retrain_seeds"] == 1).all()

    # the report lists the space's rows, each cell with a diagram its space drew
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "tables" / "genotypes.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith(f"| {NAME} |")]
    assert len(rows) == 2 and all("figures/genotype-" in row for row in rows)
    assert all(re.search(r"retrain-smoke-custom-|\d+\.\d\d \(1\)", row) for row in rows)
    figures = list((tmp_path / "report" / "figures").glob("genotype-*.png"))
    assert len(figures) == len(set(final["arch"]))
    assert all(f.stat().st_size > 1000 for f in figures)
    assert re.search(r"retrain-smoke-custom-\w+", table)
    assert Path(tmp_path / "report" / "index.html").is_file()
