"""The checks a selection method passes in one space (see :func:`check_in_space`)."""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from typing import Any

import numpy as np
import torch

from harness.errors import HarnessError
from harness.plugins import protocol_problem
from methods.conformance.common import (
    NUM_CLASSES,
    ConformanceError,
    Skip,
    Subject,
    cloned,
    differing,
    failer,
    guarded,
    shown,
    tiny_data,
    tiny_space,
)
from methods.selection import (
    Selection,
    SelectionContext,
    SelectionMethod,
    adopt_class,
    make_method,
    method_spec,
)
from methods.selection.base import InvalidSelection, check_selection, method_label

COUNTS = ("forward_passes", "backward_passes", "finetune_steps")


def subject(method: Any, *, seed: int = 0, ground_truth: Any = None) -> Subject:
    method = prepare(method)
    check = functools.partial(check_in_space, method, seed=seed, ground_truth=ground_truth)
    return Subject(method_label(method), method.display_name, check)


def prepare(method: Any) -> SelectionMethod:
    """A method from an instance, a class (built with its defaults) or a spec."""
    if isinstance(method, str):
        return make_method(method)
    cls = method if isinstance(method, type) else type(method)
    where = f"{cls.__module__}:{cls.__qualname__}"
    problem = protocol_problem(cls, SelectionMethod, "method")
    if problem is not None:
        raise ConformanceError(f"selection method {where}", None, problem)
    label = f"selection method {cls.name!r} ({where})"
    try:
        adopt_class(cls, where)  # a built-in's or an installed plugin's name is taken
        return method if isinstance(method, SelectionMethod) else cls()
    except Exception as error:
        raise ConformanceError(label, None, str(error)) from error


def check_in_space(
    method: SelectionMethod, space_name: str, *, seed: int = 0, ground_truth: Any = None
) -> None:
    """Run ``method`` twice (same seed) on a small supernet of the space and check:

    * it applies there as the harness decides (an upper bound such as the oracle reads a
      tabular ground truth: skipped in a space without one, or when none is given);
    * ``select`` neither raises nor returns what the harness refuses: the selection passes
      :func:`methods.selection.base.check_selection` (a cell of the space by its own check,
      with its topology rule: DARTS keeps two distinct inputs per node; scores edges x ops,
      finite or NaN; the edge order each edge once; costs non-negative counts; labelled with
      the method's display name, settings and upper-bound flag);
    * the supernet is left as it was given: every parameter and buffer (alphas, weights,
      BatchNorm statistics) bit for bit, and every module's train/eval mode;
    * costs are filled in: a method that pushes batches through the supernet (or a copy of
      it) counts them in ``forward_passes``; a backward pass needs a forward one;
      ``wall_seconds`` is within the time ``select`` took;
    * records round-trip: ``settings()`` is plain JSON and holds every option, the selection
      reads back from its stored JSON unchanged, and the method rebuilt from its spec (as
      ``--jobs`` workers rebuild it) has the same name and settings;
    * determinism: the second run chooses the same cell, scores (bit for bit), edge order,
      topology record and counts.
    """
    settings, space = tiny_space(space_name)
    if method.upper_bound and space.benchmark is None:
        raise Skip(
            "it is an upper bound that reads a tabular ground truth, which this space "
            "lacks (the harness leaves upper bounds out here)"
        )
    if method.upper_bound and ground_truth is None:
        raise Skip("it reads the ground truth: pass ground_truth=GroundTruth.from_csv(...)")
    fail = failer(method_label(method), space_name)
    torch.manual_seed(seed)
    net = space.build_supernet(settings, num_classes=NUM_CLASSES)
    with torch.no_grad():
        net.alphas.normal_()  # uneven, trained-looking alphas: no ties to hide behind
    data = tiny_data(seed)
    state = cloned(net.state_dict())
    modes = {name: module.training for name, module in net.named_modules()}
    runs = []
    for _ in range(2):
        selection, forwards, elapsed = _run(method, net, data, seed, ground_truth, fail)
        changed = differing(state, net.state_dict())
        changed += [
            f"{name or 'the supernet'}'s train/eval mode"
            for name, module in net.named_modules()
            if module.training != modes.get(name)
        ]
        if changed:
            fail(
                f"changed the supernet it was given ({shown(changed)}): change only a "
                "methods.selection.working_copy(supernet)"
            )
        try:
            selection = check_selection(selection, space, method)
        except InvalidSelection as error:
            fail(error.reason)
        _check_cost(selection, forwards, elapsed, fail)
        runs.append(selection)
    _check_records(method, runs[0], fail)
    _check_same(*runs, fail)


def _run(method: SelectionMethod, net, data, seed: int, ground_truth: Any, fail):
    """The method's selection as the harness gets it (seeded, a fresh context), the batches
    that went through the supernet or a copy (a hook the copies inherit), and the time."""
    forwards = [0]
    handle = net.register_forward_pre_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
    context = SelectionContext(data=data, seed=seed, ground_truth=ground_truth)
    torch.manual_seed(seed)
    began = time.perf_counter()
    try:
        selection = guarded(fail, "in select()", _select, method, net, context, fail)
    finally:
        handle.remove()
    return selection, forwards[0], time.perf_counter() - began


def _select(method: SelectionMethod, net, context: SelectionContext, fail) -> Selection:
    try:
        return method.select(net, context)
    except InvalidSelection as error:
        fail(error.reason)


def _check_cost(selection: Selection, forwards: int, elapsed: float, fail) -> None:
    cost = selection.cost
    if forwards and not cost.forward_passes:
        fail(
            f"pushed {forwards} batch(es) through the supernet but recorded forward_passes=0: "
            "count every batch in the cost that choose() is given"
        )
    if cost.backward_passes and not cost.forward_passes:
        fail(f"recorded {cost.backward_passes} backward passes and no forward pass")
    if cost.wall_seconds > elapsed + 1e-3:
        fail(
            f"recorded wall_seconds={cost.wall_seconds:.3f}, more than the {elapsed:.3f} s "
            "select() took"
        )


def _check_records(method: SelectionMethod, selection: Selection, fail) -> None:
    settings = method.settings()
    try:
        text = json.dumps(settings, sort_keys=True)
    except (TypeError, ValueError) as error:
        fail(
            f"has settings() that JSON cannot store ({error}): its store key would hash their "
            "text, which can differ between runs"
        )
    earlier = getattr(method.options_class, "added_later", {})
    missing = [
        f.name
        for f in dataclasses.fields(method.options)
        if f.name not in settings and getattr(method.options, f.name) != earlier.get(f.name, ...)
    ]
    if missing:
        fail(
            f"leaves option(s) {', '.join(missing)} out of settings(): selections made with "
            "other values would share one store key"
        )
    raw = json.dumps(selection.to_dict(), sort_keys=True)
    if json.dumps(Selection.from_dict(json.loads(raw)).to_dict(), sort_keys=True) != raw:
        fail("returned a selection that reads back from the store's JSON as another one")
    cls = type(method)
    if "<locals>" in cls.__qualname__ or cls.__module__ == "__main__":
        return  # not importable by path: no worker process could rebuild it anyway
    spec = method_spec(method)
    try:
        rebuilt = make_method(spec, {method.name: dataclasses.asdict(method.baseline)})
    except HarnessError as error:
        fail(f"cannot be rebuilt from its spec {spec!r} as --jobs workers rebuild it ({error})")
    again = (rebuilt.display_name, json.dumps(rebuilt.settings(), sort_keys=True, default=str))
    if again != (method.display_name, text):
        fail(
            f"rebuilt from its spec {spec!r} (as --jobs workers do) is {again[0]!r} with "
            f"settings {again[1]}, not {method.display_name!r} with {text}"
        )


def _check_same(first: Selection, second: Selection, fail) -> None:
    said = "is not deterministic: with the same seed on the same supernet it returned"
    for name in ("arch", "edge_order", "topology"):
        a, b = getattr(first, name), getattr(second, name)
        if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
            fail(f"{said} {name} {_brief(a)}, then {_brief(b)}")
    a, b = np.array(first.scores, dtype=float), np.array(second.scores, dtype=float)
    if not np.array_equal(a, b, equal_nan=True):
        gap = np.nanmax(np.abs(a - b)) if np.isnan(a).tolist() == np.isnan(b).tolist() else "NaN"
        fail(f"{said} other scores (largest difference {gap})")
    counts = [(n, getattr(first.cost, n), getattr(second.cost, n)) for n in COUNTS]
    for name, was, now in counts:
        if was != now:
            fail(f"{said} cost {name}={was}, then {now}")


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
