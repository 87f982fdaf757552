"""A user's own method can never poison the store (issue 25 A).

Methods at one checkpoint share one loaded supernet: one that changes it (alphas set in
place, BatchNorm statistics moved by train-mode passes) is refused and the built-ins after
it still select on the checkpoint itself, bit for bit. A method that raises or returns no
valid selection is refused in one sentence naming it; the others are computed and stored,
the tables written, and the run exits 2. Nothing invalid is ever written to the store.
"""

from __future__ import annotations

import itertools
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from planted import planted_supernet

from harness import api
from harness.cli import main
from harness.errors import HarnessError
from harness.selecting import SupernetGuard, read_selection, read_selection_checked
from methods.selection import Selection, SelectionContext, SelectionMethod
from methods.selection.base import InvalidSelection, check_selection
from methods.selection.magnitude import Magnitude

HERE = "test_plugin_faults"  # pytest puts tests/faults on sys.path: --methods finds us by it
BUILT_INS = "magnitude,magnitude[no-none],ostr[bn_mode=eval,num_batches=1]"


def _valid(space):
    """A valid answer: each edge's first candidate, nothing scored, edges in index order."""
    return [ops[0] for ops in space.candidates], space.empty_scores(), list(range(space.num_edges))


# -- plugins that change the supernet they are given ------------------------------------


class SetsAlphas(SelectionMethod):
    """What the probe did: alphas flipped in place (magnitude would choose the weakest op)."""

    name = "sets-alphas"

    def choose(self, supernet, context, cost):
        with torch.no_grad():
            supernet.alphas.mul_(-1)
        return _valid(supernet.space)


class TrainMode(SelectionMethod):
    """Forward passes in train mode on the given supernet: BatchNorm running statistics move
    (ostr[bn_mode=eval] scores with them)."""

    name = "train-mode"

    def choose(self, supernet, context, cost):
        supernet.train()
        with torch.no_grad():
            for x, _ in itertools.islice(context.data.alpha_eval.epoch(0), 2):
                supernet(x)
        return _valid(supernet.space)


class EvalWithGradients(SelectionMethod):
    """Changes no value: eval mode, gradients on the given supernet. Accepted (the mode and
    the gradients are put back)."""

    name = "eval-gradients"

    def choose(self, supernet, context, cost):
        supernet.eval()
        x, y = next(iter(context.data.alpha_eval.epoch(0)))
        torch.nn.functional.cross_entropy(supernet(x), y).backward()
        torch.set_grad_enabled(False)  # left off: the methods after it must not notice
        return _valid(supernet.space)


# -- plugins that raise or return no valid selection ------------------------------------


class Raises(SelectionMethod):
    name = "raises"

    def choose(self, supernet, context, cost):
        raise ValueError("boom\nsecond line of the message")


class _Returns(SelectionMethod):
    """choose() returns what ``bad`` makes of a valid answer."""

    def choose(self, supernet, context, cost):
        return self.bad(supernet.space, *_valid(supernet.space))


class ReturnsNone(_Returns):
    name = "returns-none"

    def bad(self, space, choices, scores, order):
        return None


class OpNames(_Returns):
    name = "op-names"

    def bad(self, space, choices, scores, order):
        return [space.op_names[k] for k in choices], scores, order


class FractionalOps(_Returns):
    name = "fractional-ops"

    def bad(self, space, choices, scores, order):
        return [1.7] * space.num_edges, scores, order


class ScoresOfWrongShape(_Returns):
    name = "scores-shape"

    def bad(self, space, choices, scores, order):
        return choices, [[1, 2]], order


class InfiniteScore(_Returns):
    name = "infinite-score"

    def bad(self, space, choices, scores, order):
        scores[0, 0] = np.inf
        return choices, scores, order


class EdgeOrderRepeats(_Returns):
    name = "edge-order"

    def bad(self, space, choices, scores, order):
        return choices, scores, [0, 0, 99]


class OutsideTheSpace(_Returns):
    name = "outside-space"

    def bad(self, space, choices, scores, order):
        return [space.num_ops] * space.num_edges, scores, order


class SelectReturnsNone(SelectionMethod):
    name = "select-none"

    def select(self, supernet, context):
        return None


class SelectsNoCell(SelectionMethod):
    """select() itself, with an arch no space has: the probe's poisoned selection file."""

    name = "no-cell"

    def select(self, supernet, context):
        selection = Magnitude().select(supernet, context)
        return Selection(**{**vars(selection), "method": self.display_name,
                            "settings": self.settings(), "arch": "|bogus~0|+|nope~1|"})  # fmt: skip


class PosesAsMagnitude(SelectionMethod):
    """A valid cell under magnitude's name and settings: its rows would pass for magnitude's."""

    name = "poses"

    def select(self, supernet, context):
        return Magnitude().select(supernet, context)


INVALID = [
    (ReturnsNone, "returned None from choose(), not (choices, scores, edge_order"),
    (OpNames, "is not an integer (an op name is no index"),
    (FractionalOps, "1.7 is not an integer"),
    (ScoresOfWrongShape, "returned scores [[1, 2]], not 6 edges x 5 ops"),
    (InfiniteScore, "returned an infinite score"),
    (EdgeOrderRepeats, "returned edge order [0, 0, 99]: 3 entries for the 6 edges"),
    (OutsideTheSpace, "chose a cell outside space nb201"),
    (SelectReturnsNone, "returned None from select(), not a Selection"),
    (SelectsNoCell, "returned arch '|bogus~0|+|nope~1|', not a cell of space nb201"),
    (PosesAsMagnitude, "returned a Selection whose method and settings are not its own"),
]


def _label(cls) -> str:
    return f"selection method {cls.name!r} ({HERE}:{cls.__qualname__})"


@pytest.mark.parametrize(("cls", "reason"), INVALID, ids=[c.name for c, _ in INVALID])
def test_an_invalid_return_is_refused_in_one_sentence_naming_the_method(cls, reason):
    net = planted_supernet()
    method = cls()
    with pytest.raises(InvalidSelection) as refused:
        check_selection(method.select(net, SelectionContext(data=None, seed=0)), net.space, method)
    message = str(refused.value)
    assert message.startswith(_label(cls)) and reason in message and "\n" not in message


def test_a_valid_return_passes_unchanged_in_plain_python_values():
    net = planted_supernet()
    method = Magnitude(exclude_none=True)
    selection = method.select(net, SelectionContext(data=None, seed=0))
    checked = check_selection(selection, net.space, method)
    assert checked.to_dict() == selection.to_dict()
    assert all(type(v) is float for row in checked.scores for v in row)
    # numpy values from a plugin's own select() are made plain, not stored as their repr
    numpy = Selection(**{**vars(selection), "edge_order": np.arange(6),
                         "scores": np.array(selection.scores)})  # fmt: skip
    assert check_selection(numpy, net.space, method).to_dict() == selection.to_dict()


def test_the_guard_sees_every_tensor_bit_for_bit_and_only_real_changes():
    net = planted_supernet()
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] = float("nan")  # NaN is not "changed" by itself
    guard = SupernetGuard(SimpleNamespace(supernet=net, path=None), "cpu")
    net.eval()
    assert guard.changed() == []
    guard.tidy()
    assert net.training, "the mode a method set is put back"
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.num_batches_tracked += 1
    with torch.no_grad():
        net.alphas.view(torch.int32)[0, 0] += 1  # one ulp
    changed = guard.changed()
    assert "alphas" in changed and any(n.endswith("num_batches_tracked") for n in changed)
    net.register_buffer("extra", torch.zeros(1))
    assert "extra" in guard.changed()


# -- the whole run ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_image_folder, ground_truth_csv):
    """One smoke supernet (seed 0, one epoch), trained once; each test copies the store."""
    root = tmp_path_factory.mktemp("plugin_faults")
    common = ["--preset", "smoke", "--seeds", "0", "--epochs", "1", "--quiet",
              "--data", str(tiny_image_folder), "--cache", str(root / "cache")]  # fmt: skip
    assert main(["train", *common, "--results", str(root / "template")]) == 0

    def fresh(tmp_path):
        results = tmp_path / "results"
        shutil.copytree(root / "template", results)
        return lambda *extra: [
            "run", *common, "--results", str(results), "--ground-truth", str(ground_truth_csv),
            *extra,
        ]  # fmt: skip

    return fresh


def _run(args, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(args)
    return code, capsys.readouterr().err


def _selections(args) -> pd.DataFrame:
    results = args[args.index("--results") + 1]
    return pd.read_parquet(f"{results}/selections.parquet").set_index("method")


def _error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("harness: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def clean(trained, tmp_path_factory):
    """The built-ins' selections without any plugin: what every run below must reproduce."""
    args = trained(tmp_path_factory.mktemp("clean"))("--methods", BUILT_INS)
    assert main(args) == 0
    return _selections(args)


COLUMNS = ["arch", "scores", "edge_order", "alphas"]


@pytest.mark.parametrize(
    ("plugin", "changed"),
    [(SetsAlphas, "alphas"), (TrainMode, "running_mean"), (EvalWithGradients, None)],
    ids=["sets-alphas", "train-mode", "eval-gradients-accepted"],
)
def test_a_plugin_changing_its_supernet_leaves_every_built_in_bit_identical(
    trained, clean, tmp_path, capsys, plugin, changed
):
    args = trained(tmp_path)("--methods", f"{HERE}:{plugin.__name__},{BUILT_INS}")
    code, err = _run(args, capsys)
    rows = _selections(args)
    pd.testing.assert_frame_equal(rows.loc[clean.index, COLUMNS], clean[COLUMNS])
    if changed is None:  # changed no value: its selection is stored like any other
        assert code == 0 and plugin.name in rows.index, err
        return
    assert code == 2 and plugin.name not in rows.index
    error = _error(err)
    assert f"{_label(plugin)} changed the supernet it was given (" in error and changed in error
    assert "working_copy" in error


def test_a_raising_plugin_listed_first_stops_nothing_else(trained, tmp_path, capsys):
    args = trained(tmp_path)("--methods", f"{HERE}:Raises,magnitude,random")
    code, err = _run(args, capsys)
    assert code == 2
    error = _error(err)
    assert f"{_label(Raises)} raised ValueError (boom) at seed 0 epoch 1" in error
    assert "second line" not in error and "tables are written" in error
    assert set(_selections(args).index) == {"magnitude", "random"}
    records = pd.read_parquet(args[args.index("--results") + 1] + "/records.parquet")
    assert set(records["method"]) == {"magnitude", "random"}


def test_a_raising_class_given_to_the_api_raises_one_harness_error_at_the_end(
    trained, tmp_path, tiny_image_folder, ground_truth_csv
):
    args = trained(tmp_path)()
    results = args[args.index("--results") + 1]
    with pytest.raises(HarnessError) as failed:
        api.run([Raises, "magnitude"], seeds=0, preset="smoke", epochs=1, results=results,
                data=tiny_image_folder, cache=args[args.index("--cache") + 1],
                ground_truth=ground_truth_csv)  # fmt: skip
    assert str(failed.value).startswith(f"{_label(Raises)} raised ValueError (boom)")
    assert set(api.load(results).selections["method"]) == {"magnitude"}


def test_invalid_returns_leave_the_store_usable(trained, tmp_path, capsys):
    fresh = trained(tmp_path)
    plugins = ",".join(f"{HERE}:{cls.__name__}" for cls, _ in INVALID)
    code, err = _run(fresh("--methods", f"{plugins},magnitude"), capsys)
    assert code == 2
    error = _error(err)
    starts = sorted(error.index(_label(cls)) for cls, _ in INVALID)
    for cls, reason in INVALID:  # one sentence each, naming the plugin and its class
        start = error.index(_label(cls))
        sentence = error[start : min([s for s in starts if s > start], default=len(error))]
        assert reason in sentence and "at seed 0 epoch 1" in sentence, sentence
    stored = list((tmp_path / "results").glob("runs/*/selections/*/*.json"))
    assert [p.name.split(".")[0] for p in stored] == ["magnitude"], "nothing invalid is written"
    # The probe's follow-up: every later run failed at table writing. Now it is clean.
    code, err = _run(fresh("--methods", "magnitude"), capsys)
    assert code == 0 and "Traceback" not in err, err
    assert set(_selections(fresh()).index) == {"magnitude"}


def test_an_invalid_selection_an_older_version_stored_is_recomputed_never_fatal(
    trained, tmp_path, capsys
):
    fresh = trained(tmp_path)
    assert main(fresh("--methods", "magnitude")) == 0
    [good] = (tmp_path / "results").glob("runs/*/selections/*/magnitude.*.json")
    raw = json.loads(good.read_text())
    raw["selection"].update(method="no-cell", arch="|bogus~0|+|nope~1|")
    poisoned = good.with_name("no-cell.000000000000.json")
    poisoned.write_text(json.dumps(raw))
    # Not a stored selection: planning computes it again, the tables leave it out.
    assert read_selection(poisoned) is None and read_selection(good) is not None
    assert "not a cell of space nb201" in read_selection_checked(poisoned)[1]
    code, err = _run(fresh("--methods", "magnitude"), capsys)
    # The tables say in one sentence which file they left out (exit 2), or leave it quietly.
    assert code == 0 or poisoned.name in _error(err), err
    assert set(_selections(fresh()).index) == {"magnitude"}
