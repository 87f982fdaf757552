"""The conformance check (methods.conformance): every built-in passes it, and methods or
algorithms that break the protocol fail it in one sentence naming them, the space and why."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from harness.ground_truth import GroundTruth
from harness.presets import SELECTION_DEFAULTS
from methods.conformance import (
    ConformanceError,
    check_selection_method,
    check_supernet_algorithm,
    conformance_cases,
)
from methods.selection import SELECTION_METHODS, SelectionMethod, make_method, working_copy
from methods.supernet import ALGORITHMS
from methods.supernet.darts import DartsFirstOrder
from spaces import space_names

NB201 = [name for name in space_names() if name.startswith("nb201")]
# The DARTS supernet runs a forward pass some ten times slower: methods that score by
# forward passes (the progressive ones, zc-pt) are checked there with -m slow.
CHEAP_IN_DARTS = {"magnitude", "random"}
SLOW = pytest.mark.slow

# -- every built-in passes --------------------------------------------------------------


def _method_cases():
    cases = []
    for name in SELECTION_METHODS:
        if name == "oracle":
            continue  # reads the ground truth: its own test below
        method = make_method(name, SELECTION_DEFAULTS["smoke"])
        for case in conformance_cases(method):
            slow = case.space not in NB201 and not (name in CHEAP_IN_DARTS
                                                    and case.space == "darts-s2")  # fmt: skip
            cases.append(pytest.param(case, id=str(case), marks=[SLOW] if slow else []))
    return cases


@pytest.mark.parametrize("case", _method_cases())
def test_every_built_in_method_conforms(case):
    case()


def test_the_oracle_conforms_where_there_is_ground_truth(ground_truth_csv):
    truth = GroundTruth.from_csv(ground_truth_csv)
    report = check_selection_method("oracle", ground_truth=truth)
    assert report.passed == NB201
    assert set(report.skipped) == set(space_names()) - set(NB201)
    assert "tabular ground truth" in report.skipped["darts"]
    # Without it, it applies nowhere: one sentence saying so, never a vacuous pass.
    with pytest.raises(ConformanceError, match=r"'oracle' .* applies to no space checked: "
                                                r"nb201: it reads the ground truth"):  # fmt: skip
        check_selection_method("oracle", spaces=["nb201"])


# Options that keep each algorithm's run short; opp-darts admits its ops one epoch apart,
# so it needs as many epochs as ops (8 in the DARTS space).
ALGORITHM_SETTINGS = {
    "opp-darts": {"options": {"trial_batches": 1}, "train": {"epochs": 8}},
    "shapley-nas": {"options": {"samples": 1, "num_batches": 1}},
}


def _algorithm_cases():
    found = []
    for name in ALGORITHMS:
        settings = dict(ALGORITHM_SETTINGS.get(name, {}))
        options = settings.pop("options", {})
        cases = conformance_cases(ALGORITHMS[name], options=options, **settings)
        for case in cases:
            slow = case.space not in NB201 and not (name == "darts" and case.space == "darts-s2")
            found.append(pytest.param(case, id=str(case), marks=[SLOW] if slow else []))
    return found


@pytest.mark.parametrize("case", _algorithm_cases())
def test_every_built_in_algorithm_conforms(case):
    case()


def test_a_space_an_algorithm_refuses_is_skipped_with_its_reason():
    report = check_supernet_algorithm("opp-darts", {"trial_batches": 1}, train={"epochs": 5},
                                      spaces=["nb201-s2", "nb201-s1"])  # fmt: skip
    assert report.passed == ["nb201-s2"]
    assert "different candidate ops per edge" in report.skipped["nb201-s1"]
    [case] = conformance_cases("opp-darts", spaces=["nb201-s1"])
    with pytest.raises(pytest.skip.Exception, match="different candidate ops per edge"):
        case()


# -- broken selection methods fail, in one sentence ------------------------------------


class Rule(SelectionMethod):
    """Per edge, its last candidate; subclasses break one rule each."""

    name = "conformance-rule"

    def choose(self, supernet, context, cost):
        space = supernet.space
        scores = np.where(space.candidate_mask, np.arange(space.num_ops, dtype=float), np.nan)
        return list(space.discretise(scores)), scores, list(range(space.num_edges))


class OutsideCell(Rule):
    name = "conformance-outside"

    def choose(self, supernet, context, cost):
        choices, scores, order = super().choose(supernet, context, cost)
        return [0] * len(choices), scores, order  # op 0 (none) on every edge


class ThreeInputs(Rule):
    name = "conformance-three-inputs"

    def choose(self, supernet, context, cost):
        space = supernet.space
        choices = [max(ops) for ops in space.candidates]  # no edge dropped: 3+ inputs a node
        return choices, space.empty_scores(), list(range(space.num_edges))


class Drifting(Rule):
    name = "conformance-drifting"
    calls = itertools.count()

    def choose(self, supernet, context, cost):
        space, shift = supernet.space, next(self.calls)
        choices = [ops[(shift + e) % len(ops)] for e, ops in enumerate(space.candidates)]
        return choices, space.empty_scores(), list(range(space.num_edges))


class NudgesAlphas(Rule):
    name = "conformance-nudges-alphas"

    def choose(self, supernet, context, cost):
        with torch.no_grad():
            supernet.alphas[0, 0] += 1.0
        return super().choose(supernet, context, cost)


class ForwardInTrainMode(Rule):
    name = "conformance-train-mode-forward"

    def choose(self, supernet, context, cost):
        x, _ = next(iter(context.data.alpha_eval.epoch(0)))
        with torch.no_grad():
            supernet.train()(x)  # updates the BatchNorm running statistics
        cost.forward_passes += 1
        return super().choose(supernet, context, cost)


class LeavesEvalMode(Rule):
    name = "conformance-eval-mode"

    def choose(self, supernet, context, cost):
        supernet.eval()
        return super().choose(supernet, context, cost)


class Garbage(Rule):
    name = "conformance-garbage"

    def choose(self, supernet, context, cost):
        return "the best cell"


class WrongScores(Rule):
    name = "conformance-wrong-scores"

    def choose(self, supernet, context, cost):
        choices, _, order = super().choose(supernet, context, cost)
        return choices, np.zeros((2, 2)), order


class Uncounted(Rule):
    name = "conformance-uncounted"

    def choose(self, supernet, context, cost):
        x, _ = next(iter(context.data.alpha_eval.epoch(0)))
        with torch.no_grad():
            working_copy(supernet).eval()(x)  # a batch that cost does not count
        return super().choose(supernet, context, cost)


class Raises(Rule):
    name = "conformance-raises"

    def choose(self, supernet, context, cost):
        raise RuntimeError("out of ideas")


@dataclasses.dataclass(frozen=True)
class DepthOptions:
    depth: int = 1


class Unrecorded(Rule):
    name = "conformance-unrecorded"
    options_class = DepthOptions

    def settings(self):
        return {k: v for k, v in super().settings().items() if k != "depth"}


class Nameless(Rule):
    name = "Not A Name"


@pytest.mark.parametrize(
    "cls, space, message",
    [
        (OutsideCell, "nb201-s2", "chose a cell outside space nb201-s2"),
        (ThreeInputs, "darts-s2", "chose a cell outside space darts-s2: normal node 3 keeps 3 "
                                  "inputs; DARTS cells keep 2 per node"),
        (Drifting, "nb201", "is not deterministic: with the same seed on the same supernet it "
                            "returned arch"),
        (NudgesAlphas, "nb201", r"changed the supernet it was given \(alphas\)"),
        (ForwardInTrainMode, "nb201", r"changed the supernet it was given \(.*running_mean"),
        (LeavesEvalMode, "nb201", "changed the supernet it was given .*train/eval mode"),
        (Garbage, "nb201", "returned 'the best cell' from choose\\(\\), not \\(choices"),
        (WrongScores, "nb201", "returned scores .*, not 6 edges x 5 ops"),
        (Uncounted, "nb201", "pushed 1 batch\\(es\\) through the supernet but recorded "
                             "forward_passes=0"),
        (Raises, "nb201", r"raised RuntimeError in select\(\) \(out of ideas\)"),
        (Unrecorded, "nb201", r"leaves option\(s\) depth out of settings\(\)"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)  # fmt: skip
def test_a_broken_method_fails_in_one_sentence(cls, space, message):
    with pytest.raises(ConformanceError) as caught:
        check_selection_method(cls, spaces=[space])
    text = str(caught.value)
    assert text.startswith(f"selection method {cls.name!r} (test_conformance:{cls.__name__}) "
                           f"fails conformance in space {space}: ")  # fmt: skip
    assert caught.match(message)
    assert "\n" not in text and caught.value.space == space


def test_a_class_off_the_protocol_or_under_a_taken_name_fails_before_any_space():
    with pytest.raises(ConformanceError, match="needs a class attribute name in lower case"):
        check_selection_method(Nameless)

    class Magnitude(Rule):
        name = "magnitude"

    with pytest.raises(ConformanceError, match="which the built-in method already is"):
        check_selection_method(Magnitude)

    class Unrenamed(DartsFirstOrder):  # still called darts
        pass

    with pytest.raises(ConformanceError, match="takes the name of .*darts:DartsFirstOrder"):
        check_supernet_algorithm(Unrenamed)


def test_cases_run_one_space_each_and_name_it():
    cases = conformance_cases(Rule, spaces=["nb201", "darts-s2"])
    assert [str(case) for case in cases] == ["conformance-rule-nb201", "conformance-rule-darts-s2"]
    for case in cases:
        case()
    [case] = conformance_cases(Drifting, spaces=["nb201-s3"])
    with pytest.raises(ConformanceError, match="in space nb201-s3: is not deterministic"):
        case()


# -- broken supernet algorithms fail, in one sentence ----------------------------------


class PoisonsWeights(DartsFirstOrder):
    name = "conformance-poison"

    def end_epoch(self, epoch):
        if epoch == self.train_settings.epochs - 1:
            with torch.no_grad():
                self.supernet.weight_parameters()[0].fill_(float("nan"))
        return super().end_epoch(epoch)


class NanLoss(DartsFirstOrder):
    name = "conformance-nan-loss"

    def step(self, weight_batch, alpha_batch):
        return float("nan"), super().step(weight_batch, alpha_batch)[1]


class Drifts(DartsFirstOrder):
    name = "conformance-drifts"
    runs = itertools.count()

    def end_epoch(self, epoch):
        with torch.no_grad():
            self.supernet.alphas.add_(1e-3 * next(self.runs))  # differs in every run
        return super().end_epoch(epoch)


class Forgets(DartsFirstOrder):
    name = "conformance-forgets"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.epochs_done = 0  # not in state_dict(): a resumed run starts it again

    def end_epoch(self, epoch):
        self.epochs_done += 1
        with torch.no_grad():
            self.supernet.alphas.add_(1e-3 * self.epochs_done)
        return super().end_epoch(epoch)


class WeightsOnly(DartsFirstOrder):
    name = "conformance-weights-only"

    def alpha_step(self, weight_batch, alpha_batch):
        pass


class HidesOptions(DartsFirstOrder):
    name = "conformance-hides-options"
    options_class = DepthOptions

    def recorded_settings(self):
        return {**super().recorded_settings(), "options": {}}


@pytest.mark.parametrize(
    "cls, message",
    [
        (PoisonsWeights, "left NaN or infinite values in "),
        (NanLoss, "reached a training loss of nan in epoch 0 step 0"),
        (Drifts, "is not deterministic: two runs from seed 0 differ in parameters or buffers "
                 r"\(alphas"),
        (Forgets, r"does not resume exactly: resumed after epoch 1 from its state_dict\(\)"),
        (WeightsOnly, r"left the alphas unchanged in 2 epoch\(s\) of 2 step\(s\)"),
        (HidesOptions, r"records options \{\} in recorded_settings\(\), not its options "
                       r"\{'depth': 1\}"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)  # fmt: skip
def test_a_broken_algorithm_fails_in_one_sentence(cls, message):
    with pytest.raises(ConformanceError) as caught:
        check_supernet_algorithm(cls, spaces=["nb201-s2"])
    text = str(caught.value)
    assert text.startswith(f"supernet algorithm {cls.name!r} (test_conformance:{cls.__name__}) "
                           "fails conformance in space nb201-s2: ")  # fmt: skip
    assert caught.match(message)
    assert "\n" not in text


def test_a_weights_only_algorithm_passes_when_it_says_so():
    report = check_supernet_algorithm(WeightsOnly, spaces=["nb201-s2"], fixed_alphas=True)
    assert report.passed == ["nb201-s2"]
    with pytest.raises(ConformanceError, match="moved the alphas .* though it keeps them fixed"):
        check_supernet_algorithm(DartsFirstOrder, spaces=["nb201-s2"], fixed_alphas=True)


def test_the_check_leaves_the_callers_random_state_and_torch_switches_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_selection_method(Rule, spaces=["nb201-s2"], seed=7)
    assert torch.equal(torch.rand(3), expected) and torch.is_grad_enabled()
