"""Search spaces, looked up by name: ``make_space(settings)`` -> a :class:`SearchSpace`.

A space package registers its names here (one line: :data:`SPACE_MODULES`); everything else in the
harness reaches a space through :class:`spaces.base.SearchSpace` only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from harness.errors import HarnessError
from spaces.base import SearchSpace

# The modules whose ``SPACES`` (name -> (builder, one line for --help)) make up the
# registry; a builder takes (name, ops, edge_ops). Adding a space package adds one line.
SPACE_MODULES = ("spaces.nb201.space", "spaces.darts.space")
_FAMILIES: dict[str, tuple[Callable[..., SearchSpace], str]] = {}


def space_names() -> dict[str, str]:
    """Every space name with its one-line description."""
    if not _FAMILIES:  # imported on first use: the packages import torch
        for module in SPACE_MODULES:
            _FAMILIES.update(importlib.import_module(module).SPACES)
    return {name: text for name, (_, text) in _FAMILIES.items()}


def make_space(settings: Any) -> SearchSpace:
    """The space that ``settings`` (:class:`harness.config.SpaceSettings`) names."""
    names = space_names()
    if settings.name not in names:
        raise HarnessError(
            f"unknown search space {settings.name!r}; available: {', '.join(names)}"
        )
    builder, _ = _FAMILIES[settings.name]
    return builder(settings.name, settings.ops, settings.edge_ops)


__all__ = ["SPACE_MODULES", "SearchSpace", "make_space", "space_names"]
