"""Conformance checks for selection methods and supernet algorithms, built-in or plugin.

In the spirit of scikit-learn's ``check_estimator``: a method or an algorithm is run on
small supernets of every registered search space through the checks the built-ins pass,
and the first one it fails raises :class:`ConformanceError`, one sentence naming it, the
space and what failed::

    from methods.conformance import check_selection_method, check_supernet_algorithm

    check_selection_method(MyRule)                     # a class, an instance or a spec
    check_supernet_algorithm(MyAlgorithm, {"option": 1})

For pytest, :func:`conformance_cases` gives one case per space (a space the method does not
apply to is skipped there with its reason)::

    @pytest.mark.parametrize("case", conformance_cases(MyRule), ids=str)
    def test_my_rule_conforms(case):
        case()

What each check asserts: :mod:`methods.conformance.selection` and
:mod:`methods.conformance.supernet`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError
from methods.conformance import selection, supernet
from methods.conformance.common import ConformanceError, Skip, Subject, quarantine
from spaces import space_names


@dataclass
class ConformanceReport:
    """The spaces a subject passed every check in, and those it was skipped in (and why)."""

    subject: str
    passed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.subject}: passed in {', '.join(self.passed) or 'no space'}"]
        lines += [f"  skipped {space}: {why}" for space, why in self.skipped.items()]
        return "\n".join(lines)


@dataclass(frozen=True)
class ConformanceCase:
    """One subject in one space, for ``pytest.mark.parametrize`` (``ids=str``); calling it
    runs the checks (in a space the subject does not apply to, ``pytest.skip`` says why)."""

    name: str
    space: str
    run: Callable[[str], None] = field(repr=False, compare=False)

    def __call__(self) -> None:
        try:
            with quarantine():
                self.run(self.space)
        except Skip as skip:
            import pytest  # only the pytest form needs it

            pytest.skip(f"{self.name} in space {self.space}: {skip}")

    def __str__(self) -> str:
        return f"{self.name}-{self.space}"


def check_selection_method(
    method: Any, *, spaces: Iterable[str] | None = None, seed: int = 0, ground_truth: Any = None
) -> ConformanceReport:
    """Run a selection method (instance, class or spec such as ``"ostr[taylor]"``) through
    the checks in every space of ``spaces`` (default: every registered one); raise
    :class:`ConformanceError` on the first failure. ``ground_truth``: a
    :class:`harness.ground_truth.GroundTruth`, for methods that read it (the oracle; skipped
    without it)."""
    return _over_spaces(selection.subject(method, seed=seed, ground_truth=ground_truth), spaces)


def check_supernet_algorithm(
    algorithm: Any,
    options: dict[str, Any] | None = None,
    *,
    spaces: Iterable[str] | None = None,
    seed: int = 0,
    train: dict[str, Any] | None = None,
    steps: int = 2,
    fixed_alphas: bool | None = None,
) -> ConformanceReport:
    """Train small supernets of every space of ``spaces`` with an algorithm (class or
    registered name) and ``options`` for ``train["epochs"]`` (default 2) epochs of ``steps``
    steps each, resumed from its state after the first epoch in a second run; raise
    :class:`ConformanceError` on the first failed check. ``train``: fields of
    :class:`harness.config.TrainSettings` to change; ``fixed_alphas``: whether the algorithm
    keeps the alphas at their initialisation (default: its class attribute ``fixed_alphas``,
    else False). A space whose ``check_settings`` refuses is skipped with that sentence."""
    found = supernet.subject(
        algorithm, options, seed=seed, train=train, steps=steps, fixed_alphas=fixed_alphas
    )
    return _over_spaces(found, spaces)


def conformance_cases(
    subject: Any, *, spaces: Iterable[str] | None = None, **options: Any
) -> list[ConformanceCase]:
    """One :class:`ConformanceCase` per space for a selection method or a supernet algorithm
    (a class, an instance or a name); ``options``: the other keywords of
    :func:`check_selection_method` or :func:`check_supernet_algorithm`."""
    from methods.supernet import algorithm_registry
    from methods.supernet.base import SupernetAlgorithm

    is_algorithm = isinstance(subject, type) and issubclass(subject, SupernetAlgorithm)
    if is_algorithm or (isinstance(subject, str) and subject in algorithm_registry().classes):
        found = supernet.subject(subject, **options)
    else:
        found = selection.subject(subject, **options)
    return [ConformanceCase(found.name, space, found.check) for space in _space_list(spaces)]


def _space_list(spaces: Iterable[str] | None) -> list[str]:
    names = list(space_names()) if spaces is None else list(spaces)
    unknown = [name for name in names if name not in space_names()]
    if unknown:
        raise HarnessError(
            f"unknown search space(s) {', '.join(unknown)}; available: {', '.join(space_names())}"
        )
    return names


def _over_spaces(subject: Subject, spaces: Iterable[str] | None) -> ConformanceReport:
    report = ConformanceReport(subject.label)
    for space in _space_list(spaces):
        try:
            with quarantine():
                subject.check(space)
        except Skip as skip:
            report.skipped[space] = str(skip)
            continue
        report.passed.append(space)
    if not report.passed:
        why = "; ".join(f"{space}: {reason}" for space, reason in report.skipped.items())
        raise ConformanceError(subject.label, None, f"applies to no space checked: {why}")
    return report


__all__ = [
    "ConformanceCase",
    "ConformanceError",
    "ConformanceReport",
    "check_selection_method",
    "check_supernet_algorithm",
    "conformance_cases",
]
