"""The protocol every selection method follows, and the record it returns.

A method is configured once (``Method(**options)``, options validated against its
``options_class``) and then called as ``select(supernet, context) -> Selection``.
Methods never mutate the supernet they are given: those that need to change BN
statistics or fine-tune work on :func:`working_copy`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from harness.config import TrainSettings
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


@dataclass(frozen=True)
class NoOptions:
    pass


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
        if not type(self).__module__.startswith("methods.selection."):
            from harness.plugins import class_source

            settings["source"] = class_source(type(self))
        return settings

    def select(self, supernet: Supernet, context: SelectionContext) -> Selection:
        cost = SelectionCost()
        began = time.perf_counter()
        choices, scores, order, *pruning = self.choose(supernet, context, cost)
        cost.wall_seconds = time.perf_counter() - began
        topology = None
        if supernet.space.topology != "every-edge":
            topology = {"rule": self.topology_rule, **(pruning[0] if pruning else {})}
        return Selection(
            method=self.display_name,
            arch=supernet.space.encode(choices),  # refuses a cell outside the space
            scores=[[float(v) for v in row] for row in np.asarray(scores, dtype=float)],
            edge_order=[int(e) for e in order],
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
