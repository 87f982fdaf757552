"""Search spaces, looked up by name: ``make_space(settings)`` -> a :class:`SearchSpace`.

The built-in space packages register their names here (one line: :data:`SPACE_MODULES`); a
space defined anywhere else registers with :func:`register_space` and is then used by name
like a built-in (``--space NAME``, ``space.name``). Everything else in the harness reaches a
space through :class:`spaces.base.SearchSpace` only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from harness.errors import HarnessError
from spaces.base import SearchSpace, Topology

# The modules whose ``SPACES`` (name -> (builder, one line for --help)) make up the
# built-in registry; a builder takes (name, ops, edge_ops). Adding a space package adds
# one line.
SPACE_MODULES = ("spaces.nb201.space", "spaces.darts.space")
Builder = Callable[[str, "str | None", "str | None"], SearchSpace]
_FAMILIES: dict[str, tuple[Builder, str]] = {}
_BUILT_IN: set[str] = set()
_DEFAULTS: dict[str, SearchSpace] = {}  # name -> the space its builder makes unnarrowed


def _load_built_ins() -> None:
    if not _BUILT_IN:  # imported on first use: the packages import torch
        for module in SPACE_MODULES:
            spaces = importlib.import_module(module).SPACES
            _BUILT_IN.update(spaces)
            _FAMILIES.update(spaces)


def space_names() -> dict[str, str]:
    """Every space name with its one-line description (built-ins first)."""
    _load_built_ins()  # before any registration: built-ins come first
    return {name: text for name, (_, text) in _FAMILIES.items()}


def register_space(name: str, builder: Builder, description: str, *,
                   replace: bool = False) -> None:  # fmt: skip
    """Make ``name`` a search space: ``builder(name, ops, edge_ops)`` returns the
    :class:`SearchSpace` (``ops`` / ``edge_ops``: the ``space.ops`` / ``space.edge_ops``
    settings, None when unset; refuse in one sentence what the space cannot narrow), and
    ``description`` is the line ``--space``'s help shows.

    A built-in name cannot be taken; a name this function registered before can, with
    ``replace=True``. Worker processes (``--jobs``, ``--cluster``) know only what they
    import: register in a module they import too (e.g. a plugin package)."""
    _load_built_ins()
    if not (isinstance(name, str) and name.strip() == name and name):
        raise HarnessError(f"a space name is a non-empty word, not {name!r}")
    if not callable(builder):
        raise HarnessError(f"space {name}: the builder must be callable, not {builder!r}")
    if name in _BUILT_IN:
        raise HarnessError(f"space {name} is built in; register yours under another name")
    if name in _FAMILIES and not replace:
        raise HarnessError(f"space {name} is registered already; pass replace=True to "
                           "replace it")  # fmt: skip
    _FAMILIES[name] = (builder, " ".join(str(description).split()))
    _DEFAULTS.pop(name, None)


def unregister_space(name: str) -> None:
    """Forget a space :func:`register_space` registered (built-ins stay)."""
    _load_built_ins()
    if name in _BUILT_IN:
        raise HarnessError(f"space {name} is built in and cannot be unregistered")
    _FAMILIES.pop(name, None)
    _DEFAULTS.pop(name, None)


def make_space(settings: Any) -> SearchSpace:
    """The space that ``settings`` (:class:`harness.config.SpaceSettings`) names."""
    return _build(settings.name, settings.ops, settings.edge_ops)


def _build(name: str, ops: str | None = None, edge_ops: str | None = None) -> SearchSpace:
    names = space_names()
    if name not in names:
        raise HarnessError(f"unknown search space {name!r}; available: {', '.join(names)}")
    builder, _ = _FAMILIES[name]
    space = builder(name, ops, edge_ops)
    if not isinstance(space, SearchSpace):
        raise HarnessError(f"the builder of space {name} returned {type(space).__name__}, not "
                           "a spaces.base.SearchSpace")  # fmt: skip
    return space


def space_named(name: str) -> SearchSpace:
    """The space ``name`` as its builder makes it without narrowing settings (kept)."""
    if name not in _DEFAULTS:
        _DEFAULTS[name] = _build(name)
    return _DEFAULTS[name]


def space_reading(genotype: str) -> SearchSpace:
    """The first registered space whose codec reads ``genotype`` (``decode_unchecked``;
    the built-ins list each full space before its subsets); one sentence with every space
    family's reason when none does."""
    reasons: dict[str, list[str]] = {}
    for name in space_names():
        space = space_named(name)
        try:
            space.decode_unchecked(genotype)
        except (HarnessError, ValueError, KeyError, TypeError, IndexError) as error:
            reasons.setdefault(str(error).rstrip("."), []).append(name)
            continue
        return space
    why = "; ".join(f"as {'/'.join(names)}: {reason}" for reason, names in reasons.items())
    raise HarnessError(f"no search space reads genotype {_short(genotype)} ({why})")


def space_of_benchmark(benchmark: str) -> SearchSpace:
    """The first registered full space whose cells the tabular ``benchmark`` covers; its
    codec reads and writes the table's cells."""
    for name in space_names():
        space = space_named(name)
        if space.benchmark == benchmark and space.is_full:
            return space
    raise HarnessError(f"no registered search space has the ground truth {benchmark}")


def _short(text: object) -> str:
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:57] + "..."


__all__ = [
    "SPACE_MODULES",
    "SearchSpace",
    "Topology",
    "make_space",
    "register_space",
    "space_named",
    "space_names",
    "space_of_benchmark",
    "space_reading",
    "unregister_space",
]
