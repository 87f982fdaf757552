"""The protocol every selection method follows, and the record it returns.

A method is configured once (``Method(**options)``, options validated against its
``options_class``) and then called as ``select(supernet, context) -> Selection``.
Methods never mutate the supernet they are given: those that need to change BN
statistics or fine-tune work on :func:`working_copy`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from harness.config import TrainSettings
from harness.errors import HarnessError
from harness.plugins import NoOptions, plugin_source
from harness.search_data import SearchData
from methods.supernet.base import parse_options
from spaces.base import Supernet


@dataclass
class SelectionCost:
    wall_seconds: float = 0.0
    forward_passes: int = 0  # batches pushed through the supernet
    backward_passes: int = 0
    finetune_steps: int = 0


@dataclass
class Selection:
    """What a method chose and what it believed (scores: edges x ops, higher = better)."""

    method: str  # display name with its variant, e.g. "ostr[taylor]"
    arch: str
    scores: list[list[float]]  # NaN where the method did not score an op
    edge_order: list[int]
    cost: SelectionCost
    settings: dict[str, Any]
    upper_bound: bool = False  # the oracle: not a method, a ceiling
    # Spaces that prune inputs (DARTS): how the method chose each node's two inputs
    # ("rule") and what it measured ("importance" per edge, None where not measured).
    topology: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        raw = dataclasses.asdict(self)
        raw["scores"] = [[None if math.isnan(v) else v for v in row] for row in self.scores]
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Selection:
        scores = [[math.nan if v is None else float(v) for v in row] for row in raw["scores"]]
        return cls(
            method=raw["method"],
            arch=raw["arch"],
            scores=scores,
            edge_order=list(raw["edge_order"]),
            cost=SelectionCost(**raw["cost"]),
            settings=dict(raw["settings"]),
            upper_bound=bool(raw.get("upper_bound", False)),
            topology=raw.get("topology"),
        )


@dataclass
class SelectionContext:
    """Everything a method may use besides the supernet."""

    data: SearchData
    seed: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    train_settings: TrainSettings = field(default_factory=TrainSettings)
    ground_truth: Any = None  # harness.ground_truth.GroundTruth; only the oracle reads it


class SelectionMethod:
    name: ClassVar[str]
    options_class: ClassVar[type] = NoOptions
    # Short names for common variants, shown in reports instead of the full option list.
    aliases: ClassVar[dict[str, dict[str, Any]]] = {}
    upper_bound: ClassVar[bool] = False
    # How the method keeps two inputs per node in a space whose topology rule asks for it
    # (recorded with every such selection); methods choosing via space.discretise use
    # the space's rule.
    topology_rule: ClassVar[str] = "the space's rule on the method's scores"

    def __init__(self, baseline: dict[str, Any] | None = None, **options: Any) -> None:
        """``baseline``: a preset's defaults for this method; names are shown relative to it."""
        self.baseline = parse_options(self.options_class, dict(baseline or {}), self.name)
        self.options = parse_options(
            self.options_class, {**dataclasses.asdict(self.baseline), **options}, self.name
        )

    @property
    def display_name(self) -> str:
        changed = self.changed_options()
        if not changed:
            return self.name
        parts = []
        # Prefer named variants: the alias covering the most changed options first.
        for alias, values in sorted(self.aliases.items(), key=lambda item: -len(item[1])):
            if values.items() <= changed.items():
                parts.append(alias)
                changed = {k: v for k, v in changed.items() if k not in values}
        parts += [f"{k}={v}" for k, v in sorted(changed.items())]
        return f"{self.name}[{','.join(parts)}]"

    def changed_options(self) -> dict[str, Any]:
        defaults = self.baseline
        return {
            f.name: getattr(self.options, f.name)
            for f in dataclasses.fields(self.options)
            if getattr(self.options, f.name) != getattr(defaults, f.name)
        }

    def settings(self) -> dict[str, Any]:
        """What the stored selection's key hashes: the name and every option (an option in
        the options class's ``added_later`` only when it differs from the value that
        reproduces the earlier behaviour); for a method from outside the harness also its
        class and package version (an upgraded plugin is not mistaken for the old one)."""
        settings = {"method": self.name, **dataclasses.asdict(self.options)}
        # Options added after stores existed are left out while at the value that
        # reproduces the earlier behaviour, so those stores keep their keys.
        for name, earlier in getattr(self.options_class, "added_later", {}).items():
            if settings.get(name) == earlier:
                del settings[name]
        if source := plugin_source(type(self)):
            settings["source"] = source
        return settings

    def select(self, supernet: Supernet, context: SelectionContext) -> Selection:
        cost = SelectionCost()
        began = time.perf_counter()
        returned = self.choose(supernet, context, cost)
        cost.wall_seconds = time.perf_counter() - began
        space = supernet.space
        try:
            choices, scores, order, pruning = _unpack(returned, space)
        except _Refused as error:
            raise InvalidSelection(method_label(self), str(error)) from None
        topology = None
        if space.prunes_inputs:
            topology = {"rule": self.topology_rule, **(pruning or {})}
        return Selection(
            method=self.display_name,
            arch=space.encode_unchecked(choices),  # _unpack checked it is a cell of the space
            scores=scores,
            edge_order=order,
            cost=cost,
            settings=self.settings(),
            upper_bound=self.upper_bound,
            topology=topology,
        )

    def choose(
        self, supernet: Supernet, context: SelectionContext, cost: SelectionCost
    ) -> tuple[list[int], np.ndarray, list[int]]:
        """Return (op per edge, edges x ops scores, order in which edges were decided), and
        optionally a fourth value: a dict of what a topology phase measured (recorded in
        :attr:`Selection.topology`)."""
        raise NotImplementedError


def working_copy(supernet: Supernet) -> Supernet:
    """A deep copy to score or fine-tune, so the caller's (cached) supernet is untouched."""
    return copy.deepcopy(supernet)


def edge_order(seed: int | list[int], edges: list[int]) -> list[int]:
    """A random order of ``edges`` that depends only on ``seed``."""
    generator = np.random.default_rng(seed)
    return [edges[i] for i in generator.permutation(len(edges))]


def fixed_weights(base: torch.Tensor, decided: dict[int, int]) -> torch.Tensor:
    """``base`` with the rows of decided edges replaced by one-hot rows."""
    weights = base.clone()
    for edge, op in decided.items():
        weights[edge] = 0.0
        weights[edge, op] = 1.0
    return weights


# -- what a method returns ------------------------------------------------------------
# Checked before anything is stored: a wrong return is refused in one sentence naming the
# method, never coerced (int(1.7) would record op 1) or written for the tables to trip on.


class InvalidSelection(HarnessError):
    """A method's return that is no selection; ``reason`` says why without naming it."""

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(f"{label} {reason}")
        self.reason = reason


class _Refused(ValueError):
    """Why a returned value is refused; the caller names the method."""


def method_label(method: Any) -> str:
    """``selection method 'name[variant]' (module:Class)``: whose result it is, in words."""
    cls = type(method)
    try:
        name = method.display_name
    except Exception:  # a plugin's own display_name may be what is broken
        name = getattr(method, "name", "?")
    return f"selection method {name!r} ({cls.__module__}:{cls.__qualname__})"


_LABELS = ("method", "settings", "upper_bound")


def check_selection(selection: Any, space: Any, method: SelectionMethod | None = None) -> Selection:
    """``selection`` with plain Python values, or :class:`InvalidSelection`: the arch a
    cell of ``space`` in its own spelling, scores edges x ops of finite numbers or NaN,
    the edge order a permutation of the edges; with ``method``, also labelled as that
    method (its display name, settings and upper-bound flag), so that no method's rows
    pass for another's in the tables."""
    label = method_label(method) if method is not None else "the stored selection"

    def refuse(reason: str) -> InvalidSelection:
        return InvalidSelection(label, reason)

    if not isinstance(selection, Selection):
        raise refuse(f"returned {_short(selection)} from select(), not a Selection")
    if not isinstance(selection.arch, str):
        raise refuse(f"returned arch {_short(selection.arch)}, not a genotype string")
    try:
        choices = space.decode(selection.arch)
        canonical = space.encode(choices)
    except Exception as error:  # a space's parser may raise anything on a bad string
        raise refuse(
            f"returned arch {_short(selection.arch)}, not a cell of space {space.name} "
            f"({_first_line(error)})"
        ) from None
    if canonical != selection.arch:
        raise refuse(
            f"returned arch {selection.arch!r}, which space {space.name} spells {canonical!r}"
        )
    try:
        scores = _scores(selection.scores, space)
        order = _edge_order(selection.edge_order, space)
        cost = _cost(selection.cost)
        topology = _topology(selection.topology)
    except _Refused as error:
        raise refuse(str(error)) from None
    if method is not None:
        own = (method.display_name, _plain(method.settings()), method.upper_bound)
        said = (selection.method, _plain(selection.settings), selection.upper_bound)
        wrong = [f for f, a, b in zip(_LABELS, said, own, strict=True) if a != b]
        if wrong:
            raise refuse(
                f"returned a Selection whose {' and '.join(wrong)} "
                f"{'is' if len(wrong) == 1 else 'are'} not its own (build it "
                "with method=self.display_name, settings=self.settings(), "
                "upper_bound=self.upper_bound)"
            )
    plain = {"scores": scores, "edge_order": order, "cost": cost, "topology": topology}
    return dataclasses.replace(selection, settings=dict(selection.settings), **plain)


def _unpack(returned: Any, space: Any) -> tuple[tuple[int, ...], list, list[int], dict | None]:
    """choose()'s (choices, scores, edge_order[, topology]), checked and made plain."""
    if not isinstance(returned, tuple | list) or len(returned) not in (3, 4):
        raise _Refused(
            f"returned {_short(returned)} from choose(), not (choices, scores, "
            "edge_order[, topology])"
        )
    pruning = returned[3] if len(returned) == 4 else None
    if pruning is not None and not isinstance(pruning, dict):
        raise _Refused(f"returned topology {_short(pruning)}, not a dict")
    return (
        _cell(returned[0], space),
        _scores(returned[1], space),
        _edge_order(returned[2], space),
        _topology(pruning),
    )


def _integers(values: Any, what: str, space: Any) -> list[int]:
    """Op or edge indices as ints; floats (1.7 is no op), bools and names are refused."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    if isinstance(values, np.ndarray):
        values = values.tolist() if values.ndim == 1 else None
    if not isinstance(values, list | tuple):
        raise _Refused(
            f"returned {what} {_short(values)}, not a list of {space.num_edges} integers"
        )
    for value in values:
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
            hint = " (an op name is no index: space.op_names.index(name) is)"
            raise _Refused(
                f"returned {what} {_short(values)}: {value!r} is not an integer"
                + (hint if isinstance(value, str) else "")
            )
    if len(values) != space.num_edges:
        raise _Refused(
            f"returned {what} {_short(values)}: {len(values)} entries for the "
            f"{space.num_edges} edges of space {space.name}"
        )
    return [int(v) for v in values]


def _cell(choices: Any, space: Any) -> tuple[int, ...]:
    values = _integers(choices, "choices", space)
    try:
        return space.check_cell(values)
    except HarnessError as error:
        raise _Refused(f"chose a cell outside space {space.name}: {error}") from None


def _edge_order(order: Any, space: Any) -> list[int]:
    values = _integers(order, "edge order", space)
    if sorted(values) != list(range(space.num_edges)):
        raise _Refused(
            f"returned edge order {values}, not an order of the edges 0..{space.num_edges - 1} "
            "(each once)"
        )
    return values


def _scores(scores: Any, space: Any) -> list[list[float]]:
    """Edges x ops of finite numbers, NaN (or None) where the method scored nothing."""
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    if isinstance(scores, np.ndarray):
        scores = scores.tolist()
    rows = scores if isinstance(scores, list | tuple) else None
    if (
        rows is None
        or len(rows) != space.num_edges
        or any(
            not isinstance(row, list | tuple | np.ndarray) or len(row) != space.num_ops
            for row in rows
        )
    ):
        raise _Refused(
            f"returned scores {_short(scores)}, not {space.num_edges} edges x {space.num_ops} ops"
        )
    plain = []
    for row in rows:
        plain.append([])
        for value in list(row):
            if value is None:
                value = math.nan
            if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
                raise _Refused(f"returned a score {_short(value)}, not a number")
            try:
                value = float(value)
            except OverflowError:  # an int beyond float's range
                value = math.inf
            if math.isinf(value):
                raise _Refused(
                    "returned an infinite score: scores are finite numbers, NaN where an op "
                    "was not scored"
                )
            plain[-1].append(value)
    return plain


def _cost(cost: Any) -> SelectionCost:
    if not isinstance(cost, SelectionCost):
        raise _Refused(f"returned cost {_short(cost)}, not a SelectionCost")
    values = {}
    for f in dataclasses.fields(SelectionCost):
        value = getattr(cost, f.name)
        whole = f.name != "wall_seconds"
        kinds = (int, np.integer) if whole else (int, float, np.integer, np.floating)
        if isinstance(value, bool) or not isinstance(value, kinds) or not 0 <= value < math.inf:
            what = "count" if whole else "number of seconds"
            raise _Refused(f"returned cost {f.name}={_short(value)}, not a {what}")
        values[f.name] = int(value) if whole else float(value)
    return SelectionCost(**values)


def _topology(topology: Any) -> dict | None:
    if topology is None:
        return None
    try:  # stored as JSON: what JSON cannot hold (numpy ints, tensors) would be mangled
        return json.loads(json.dumps(topology, allow_nan=True))
    except (TypeError, ValueError):
        raise _Refused(f"returned topology {_short(topology)}, which JSON cannot hold") from None


def _plain(value: Any) -> Any:
    """``value`` as its JSON text would read back (settings compare as they are stored)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"
