"""Search spaces, looked up by name: ``make_space(settings)`` -> a :class:`SearchSpace`.

A space package registers its names here (one line per family); everything else in the
harness reaches a space through :class:`spaces.base.SearchSpace` only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.errors import HarnessError
from spaces.base import SearchSpace

# name -> (builder taking (name, ops, edge_ops), one line for --help)
_FAMILIES: dict[str, tuple[Callable[..., SearchSpace], str]] = {}


def _register_nb201() -> None:
    from spaces.nb201.space import NAMED_SUBSETS, nb201_space

    _FAMILIES["nb201"] = (nb201_space, "NAS-Bench-201 (5 ops on 6 edges; space.ops / "
                          "space.edge_ops narrow it)")  # fmt: skip
    for name, groups in NAMED_SUBSETS.items():
        summary = "per-edge pairs" if len(set(groups)) > 1 else "{" + ", ".join(groups[0]) + "}"
        _FAMILIES[name] = (nb201_space, f"NAS-Bench-201 subset, RobustDARTS-style: {summary}")


def space_names() -> dict[str, str]:
    """Every space name with its one-line description."""
    if not _FAMILIES:
        _register_nb201()
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


__all__ = ["SearchSpace", "make_space", "space_names"]
