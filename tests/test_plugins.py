"""Methods and algorithms from outside the harness: the installed example plugin, classes
loaded by path, and plugins that are broken, off-protocol or take a name in use."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from required import missing

from harness.cli import main
from methods.selection import SelectionMethod, method_registry
from methods.supernet import algorithm_registry
from methods.supernet.darts import DartsFirstOrder


@dataclass(frozen=True)
class LastOpOptions:
    skip_none: bool = False


class LastOp(SelectionMethod):
    """A rule defined in a test file: per edge, the candidate listed last in the space."""

    name = "last-op"
    options_class = LastOpOptions

    def choose(self, supernet, context, cost):
        space = supernet.space
        scores = np.where(space.candidate_mask, np.arange(space.num_ops, dtype=float), np.nan)
        return list(space.discretise(scores)), scores, list(range(space.num_edges))


class TenthArchLr(DartsFirstOrder):
    """An algorithm defined in a test file: first-order DARTS with a tenth of the alpha lr."""

    name = "darts-tenth"

    def arch_lr(self) -> float:
        return self.train_settings.arch_lr / 10


class NotAMethod:
    name = "not-a-method"


def _results(run_args) -> Path:
    return Path(run_args()[run_args().index("--results") + 1])


def test_installed_example_plugin_is_listed_runs_and_is_reported(run_args, tmp_path, capsys):
    if importlib.util.find_spec("harness_snip") is None:
        missing("the example plugin is not installed: pip install -e examples/harness-snip")
    method_registry(refresh=True)
    assert main(["methods"]) == 0
    listing = capsys.readouterr().out
    assert "snip  [harness-snip 0.1.0 (harness_snip:Snip)]" in listing
    assert "options: num_batches: int = 4, split: str = 'valid'" in listing

    assert main(run_args("--methods", "snip,magnitude", "--seeds", "0", "--threads", "1")) == 0
    records = pd.read_parquet(_results(run_args) / "records.parquet")
    assert {"snip", "magnitude"} <= set(records["method"])
    selections = pd.read_parquet(_results(run_args) / "selections.parquet")
    snip = selections[selections["method"] == "snip"]
    assert len(snip) == 2 and snip["forward_passes"].gt(0).all()  # 2 smoke checkpoints
    out = tmp_path / "report"
    assert main(["report", "--results", str(_results(run_args)), "--out", str(out)]) == 0
    assert "| snip |" in (out / "tables" / "paper_table.md").read_text()


def test_a_class_by_path_runs_like_a_built_in_and_records_where_it_came_from(run_args):
    spec = "test_plugins:LastOp,magnitude"
    assert main(run_args("--methods", spec, "--seeds", "0", "--threads", "1")) == 0
    records = pd.read_parquet(_results(run_args) / "records.parquet")
    mine = records[records["method"] == "last-op"]
    # avg_pool_3x3 is NAS-Bench-201's last op: every edge takes it.
    assert set(mine["arch"]) == {"|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+"
                                 "|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|"}  # fmt: skip
    stored = next(_results(run_args).glob("runs/*/selections/epoch_0001/last-op.*.json"))
    settings = json.loads(stored.read_text())["selection"]["settings"]
    assert settings == {"method": "last-op", "skip_none": False, "source": "test_plugins:LastOp"}


def test_an_algorithm_by_path_trains(tmp_path):
    args = ["train", "--preset", "smoke", "--algorithm", "test_plugins:TenthArchLr", "--quiet",
            "--results", str(tmp_path), "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    (settings_path,) = tmp_path.glob("runs/*/settings.json")
    settings = json.loads(settings_path.read_text())
    assert settings["config"]["algorithm"] == "test_plugins:TenthArchLr"
    assert settings["algorithm"]["arch_optimizer"]["lr"] == pytest.approx(3e-5)
    assert settings["algorithm"]["source"] == "test_plugins:TenthArchLr"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_here:Thing", "cannot import module 'no_such_module_here'"),
        ("test_plugins:Nothing", "module 'test_plugins' has no 'Nothing'"),
        ("test_plugins:NotAMethod", "is not a subclass of methods.selection.base.SelectionMethod"),
        ("test_plugins:TenthArchLr", "is not a subclass of methods.selection.base.Selection"),
    ],
)
def test_a_bad_class_path_is_one_sentence_before_any_work(spec, message, run_args, capsys):
    assert main(run_args("--methods", spec)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not _results(run_args).exists()


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    """A package whose entry points are broken, off-protocol, or clash with a built-in."""
    site = tmp_path / "site"
    info = site / "fake_plugins-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugins\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [nas_selection_harness.methods]
        broken = fake_plugin_module_that_is_missing:Thing
        magnitude = fake_plugin_classes:Clash
        wrong = fake_plugin_classes:NotAMethod
        fine = fake_plugin_classes:Fine

        [nas_selection_harness.algorithms]
        darts = fake_plugin_classes:Fine
        darts-again = fake_plugin_classes:DartsAgain
    """))  # fmt: skip
    (site / "fake_plugin_classes.py").write_text(textwrap.dedent("""\
        from methods.selection import SelectionMethod
        from methods.selection.magnitude import Magnitude

        class Clash(Magnitude):
            name = "magnitude"

        class NotAMethod:
            name = "wrong"

        class Fine(Magnitude):
            name = "fine"

        from methods.supernet.darts import DartsFirstOrder

        class DartsAgain(DartsFirstOrder):
            name = "darts-again"
    """))  # fmt: skip
    monkeypatch.syspath_prepend(str(site))
    method_registry(refresh=True), algorithm_registry(refresh=True)
    yield
    monkeypatch.undo()
    method_registry(refresh=True), algorithm_registry(refresh=True)


def test_broken_plugins_are_named_and_the_built_ins_still_run(fake_plugins, run_args, capsys):
    registry = method_registry()
    assert registry.classes["magnitude"].__module__ == "methods.selection.magnitude"  # no shadow
    assert registry.sources["fine"] == "fake-plugins 0.3 (fake_plugin_classes:Fine)"
    assert set(registry.problems) == {"broken", "magnitude", "wrong"}
    assert "failed to import (ModuleNotFoundError" in registry.problems["broken"]
    assert "which built-in already has" in registry.problems["magnitude"]
    assert (
        "is not a subclass of methods.selection.base.SelectionMethod"
        in (registry.problems["wrong"])
    )
    assert (
        "not a subclass of methods.supernet.base.SupernetAlgorithm"
        in (algorithm_registry().problems["darts"])
    )

    assert main(["methods"]) == 0
    listing = capsys.readouterr().out
    assert (
        "not loaded:" in listing
        and "plugin 'broken'" in listing
        and "fine  [fake-plugins" in listing
    )

    assert main(["algorithms"]) == 0
    listing = capsys.readouterr().out
    assert "darts-again  [fake-plugins 0.3 (fake_plugin_classes:DartsAgain)]" in listing
    assert "not loaded:" in listing and "plugin 'darts'" in listing
    assert main(run_args("--methods", "broken")) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and "plugin 'broken' (fake_plugin_module_that_is_missing:Thing" in err
    )
    args = run_args("--methods", "magnitude,fine", "--algorithm", "darts-again", "--seeds", "0",
                    "--threads", "1")  # fmt: skip
    assert main(args) == 0
    records = pd.read_parquet(_results(run_args) / "records.parquet")
    assert {"magnitude", "fine"} <= set(records["method"])
    assert set(records["algorithm"]) == {"darts-again"}
