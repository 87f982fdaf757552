"""Selection methods, looked up by name: ``make_method("ostr[taylor]")``.

A spec is ``name``, ``name[alias]`` or ``name[option=value,...]``.
"""

from __future__ import annotations

import re
from typing import Any

from harness.config import parse_literal
from harness.errors import HarnessError
from methods.selection.base import Selection, SelectionContext, SelectionCost, SelectionMethod
from methods.selection.darts_pt import DartsPT
from methods.selection.magnitude import Magnitude
from methods.selection.opp_loss import OppLoss
from methods.selection.oracle import Oracle
from methods.selection.ostr import ABLATION as OSTR_ABLATION
from methods.selection.ostr import OStr
from methods.selection.random_cell import RandomCell

SELECTION_METHODS: dict[str, type[SelectionMethod]] = {
    cls.name: cls for cls in (Magnitude, DartsPT, OStr, OppLoss, RandomCell, Oracle)
}

# Names that stand for several methods in --methods.
METHOD_GROUPS: dict[str, tuple[str, ...]] = {"ostr-ablation": OSTR_ABLATION}

_SPEC = re.compile(r"^([a-z0-9-]+)(?:\[([^\]]*)\])?$")


def make_method(spec: str, baselines: dict[str, dict[str, Any]] | None = None) -> SelectionMethod:
    """A method from its spec; ``baselines`` maps method names to a preset's defaults."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise HarnessError(
            f"cannot read method {spec!r}: write NAME, NAME[variant] or NAME[option=value,...]"
        )
    name, inner = match.group(1), match.group(2)
    if name not in SELECTION_METHODS:
        raise HarnessError(
            f"unknown selection method {name!r}; available: {', '.join(SELECTION_METHODS)}"
        )
    cls = SELECTION_METHODS[name]
    options: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in (inner or "").split(","))):
        key, sep, value = part.partition("=")
        if sep:
            options[key.strip()] = parse_literal(value.strip())
        elif part in cls.aliases:
            options.update(cls.aliases[part])
        else:
            known = ", ".join(cls.aliases) or "none"
            raise HarnessError(f"unknown variant {part!r} of {name}; variants: {known}")
    return cls(baseline=(baselines or {}).get(name), **options)


def parse_method_list(
    text: str, baselines: dict[str, dict[str, Any]] | None = None
) -> list[SelectionMethod]:
    """'ostr,magnitude' or 'all'; commas inside [...] belong to the variant."""
    if text.strip() == "all":
        return [make_method(name, baselines) for name in SELECTION_METHODS]
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
    names = [m.display_name for m in methods]
    if len(set(names)) != len(names):
        raise HarnessError(f"--methods names a method twice: {text!r}")
    return methods


__all__ = [
    "METHOD_GROUPS",
    "SELECTION_METHODS",
    "Selection",
    "SelectionContext",
    "SelectionCost",
    "SelectionMethod",
    "make_method",
    "parse_method_list",
]
