"""Selection methods, looked up by name: ``make_method("ostr[taylor]")``.

A spec is ``name``, ``name[alias]`` or ``name[option=value,...]``, where ``name`` is a
built-in method, one an installed package offers through the entry point group
``nas_selection_harness.methods`` (see :mod:`harness.plugins`), or ``module.path:Class``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.literals import parse_literal
from harness.plugins import Registry, build_registry, load_class
from methods.selection.base import (
    Selection,
    SelectionContext,
    SelectionCost,
    SelectionMethod,
    working_copy,
)
from methods.selection.darts_pt import DartsPT
from methods.selection.magnitude import Magnitude
from methods.selection.opp_loss import OppLoss
from methods.selection.oracle import Oracle
from methods.selection.ostr import ABLATION as OSTR_ABLATION
from methods.selection.ostr import OStr
from methods.selection.random_cell import RandomCell
from methods.selection.shapley import Shapley
from methods.selection.zc_pt import ZcPt

if TYPE_CHECKING:
    from spaces.base import SearchSpace

# The built-in methods; method_registry() adds the installed plugins.
SELECTION_METHODS: dict[str, type[SelectionMethod]] = {
    cls.name: cls
    for cls in (Magnitude, DartsPT, OStr, OppLoss, Shapley, ZcPt, RandomCell, Oracle)
}
_REGISTRY: list[Registry] = []


def method_registry(refresh: bool = False) -> Registry:
    """Built-in and plugin methods by name (plugins are looked for once per process)."""
    if refresh or not _REGISTRY:
        _REGISTRY[:] = [build_registry("method", SELECTION_METHODS, SelectionMethod)]
    return _REGISTRY[0]


def available_methods() -> dict[str, type[SelectionMethod]]:
    return dict(method_registry().classes)

# Names that stand for several methods in --methods.
METHOD_GROUPS: dict[str, tuple[str, ...]] = {"ostr-ablation": OSTR_ABLATION}

_SPEC = re.compile(r"^([a-z0-9-]+|[A-Za-z_][\w.]*:[A-Za-z_]\w*)(?:\[([^\]]*)\])?$")


def make_method(spec: str, baselines: dict[str, dict[str, Any]] | None = None) -> SelectionMethod:
    """A method from its spec; ``baselines`` maps method names to a preset's defaults."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise HarnessError(
            f"cannot read method {spec!r}: write NAME, NAME[variant] or NAME[option=value,...] "
            "(NAME may be module.path:ClassName)"
        )
    name, inner = match.group(1), match.group(2)
    if ":" in name:
        cls = adopt_class(load_class(name, SelectionMethod, "method"), name)
        name = cls.name
    else:
        cls = method_registry().get(name)
    options: dict[str, Any] = {}
    set_by: dict[str, str] = {}  # option -> the part of the spec that set it
    for part in filter(None, (p.strip() for p in (inner or "").split(","))):
        key, sep, value = part.partition("=")
        if sep and not key.strip():
            raise HarnessError(f"cannot read {part!r} in method {spec.strip()!r}: write "
                               "option=value")  # fmt: skip
        if sep:
            given = {key.strip(): parse_literal(value.strip())}
        elif part in cls.aliases:
            given = dict(cls.aliases[part])
        else:
            known = ", ".join(cls.aliases) or "none"
            raise HarnessError(f"unknown variant {part!r} of {name}; variants: {known}")
        # A second setting would silently win (and an alias overridden back to the default
        # would even reuse the plain method's stored selections): refuse any repeat.
        for option, setting in given.items():
            if option in set_by:
                raise HarnessError(
                    f"method {spec.strip()!r} sets option {option} twice ({set_by[option]} and "
                    f"{part}): give each option once"
                )
            set_by[option] = part
            options[option] = setting
    # Unknown options are one sentence here, before the constructor takes them as keywords
    # (``baseline=`` would collide with its own); values are checked there, with the preset's.
    known = [f.name for f in dataclasses.fields(cls.options_class)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise HarnessError(f"unknown option(s) {', '.join(unknown)} for {name}; known: "
                           f"{', '.join(sorted(known)) or 'none'}")  # fmt: skip
    return cls(baseline=(baselines or {}).get(name), **options)


def adopt_class(cls: type[SelectionMethod], where: str) -> type[SelectionMethod]:
    """``cls`` (from outside the registry), unless its name is a registered method's."""
    registry = method_registry()
    taken = registry.classes.get(cls.name)
    if taken is not None and taken is not cls:
        raise HarnessError(
            f"{where} is called {cls.name!r}, which the {registry.sources[cls.name]} method "
            "already is; give its class another name"
        )
    return cls


def method_spec(method: SelectionMethod) -> str:
    """The spec :func:`make_method` rebuilds ``method`` from (in a worker process, say):
    its display name, with ``module.path:Class`` for a class that is not registered."""
    cls = type(method)
    if method_registry().classes.get(method.name) is cls:
        return method.display_name
    return f"{cls.__module__}:{cls.__qualname__}{method.display_name[len(method.name):]}"


def parse_method_list(
    text: str,
    baselines: dict[str, dict[str, Any]] | None = None,
    space: SearchSpace | None = None,
) -> list[SelectionMethod]:
    """'ostr,magnitude' or 'all'; commas inside [...] belong to the variant. 'all' is every
    method ``space`` allows: upper bounds (the oracle) read a tabular benchmark, so a space
    without one leaves them out rather than refusing the 'all' it was given."""
    if text.strip() == "all":
        return [
            make_method(name, baselines)
            for name, cls in method_registry().classes.items()
            if space is None or space.benchmark is not None or not cls.upper_bound
        ]
    specs, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            specs.append(current)
            current = ""
        else:
            current += char
    specs.append(current)
    # A group name stands for its members, in order.
    specs = [member for spec in specs for member in METHOD_GROUPS.get(spec.strip(), (spec,))]
    methods = [make_method(s, baselines) for s in specs if s.strip()]
    if not methods:
        raise HarnessError("no selection method given: pass --methods NAME[,NAME...] or all")
    return check_distinct(methods, repr(text))


def check_distinct(methods: list[SelectionMethod], asked: str) -> list[SelectionMethod]:
    names = [m.display_name for m in methods]
    if len(set(names)) != len(names):
        raise HarnessError(f"--methods names a method twice: {asked}")
    return methods


__all__ = [
    "METHOD_GROUPS",
    "SELECTION_METHODS",
    "Selection",
    "SelectionContext",
    "SelectionCost",
    "SelectionMethod",
    "adopt_class",
    "available_methods",
    "check_distinct",
    "make_method",
    "method_registry",
    "method_spec",
    "parse_method_list",
    "working_copy",
]
