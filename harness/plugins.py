"""Selection methods and supernet algorithms from other installed packages.

A package offers a method or an algorithm through an entry point in the group
``nas_selection_harness.methods`` or ``nas_selection_harness.algorithms``, named as the
method (``snip = "harness_snip:Snip"``); for one-off experiments ``module.path:ClassName``
loads a class without packaging it. A plugin that fails to import, does not follow the
protocol (subclass the harness's base class, a ``name`` like a built-in's, a dataclass of
options) or takes a name already in use is left out with one sentence saying why; it never
breaks the built-ins, and a name clash is reported, never resolved by shadowing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import importlib.metadata
import logging
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.machinery import PathFinder

import torch

from harness.errors import HarnessError

log = logging.getLogger(__name__)

PROJECT = "nas_selection_harness"
GROUPS = {"method": f"{PROJECT}.methods", "algorithm": f"{PROJECT}.algorithms"}
NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
CLASS_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


@dataclass
class Registry:
    """The classes of one kind by name, where each came from, and the plugins left out."""

    kind: str  # "method" or "algorithm"
    classes: dict[str, type] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # name -> "built-in" or the package
    problems: dict[str, str] = field(default_factory=dict)  # entry point -> one sentence

    def get(self, name: str) -> type:
        if name in self.classes:
            return self.classes[name]
        if name in self.problems:
            raise HarnessError(self.problems[name])
        raise HarnessError(
            f"unknown {self.label} {name!r}; available: {', '.join(self.classes)} (or "
            "module.path:ClassName; `harness methods` / `harness algorithms` list them)"
        )

    @property
    def label(self) -> str:
        return "selection method" if self.kind == "method" else "supernet algorithm"


def build_registry(kind: str, builtins: dict[str, type], base: type) -> Registry:
    """Built-ins first, then every entry point of the kind's group that loads and fits."""
    registry = Registry(kind, dict(builtins), {name: "built-in" for name in builtins})
    for point in sorted(_entry_points(GROUPS[kind]), key=lambda p: (p.name, p.value)):
        origin = _distribution(point)
        where = f"plugin {point.name!r} ({point.value}, from {origin})"
        try:
            cls = point.load()
        except Exception as error:  # a plugin's import may raise anything
            registry.problems[point.name] = (
                f"{where} failed to import ({type(error).__name__}: {error}); fix or "
                "uninstall that package"
            )
            continue
        problem = protocol_problem(cls, base, kind)
        if problem is None and cls.name != point.name:
            problem = f"is registered as {point.name!r} but its class says name = {cls.name!r}"
        if problem is None and point.name in registry.classes:
            other = registry.sources[point.name]
            problem = f"takes the name {point.name!r}, which {other} already has; rename one"
        if problem is not None:
            registry.problems.setdefault(point.name, f"{where} {problem}; it is left out")
            continue
        registry.classes[point.name] = cls
        registry.sources[point.name] = f"{origin} ({point.value})"
    for problem in registry.problems.values():
        log.warning("%s", problem)
    return registry


def load_class(path: str, base: type, kind: str) -> type:
    """``module.path:ClassName`` -> the class, or one sentence on why it cannot be used."""
    if not CLASS_PATH.fullmatch(path):
        raise HarnessError(f"cannot read {path!r}: write module.path:ClassName")
    module_name, _, class_name = path.partition(":")
    try:
        module = _import_here_too(module_name)
    except Exception as error:  # the module's own import may raise anything
        raise HarnessError(
            f"cannot import module {module_name!r} for {path} ({type(error).__name__}: "
            f"{error}); is it installed, on PYTHONPATH or in the folder you run in?"
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise HarnessError(f"module {module_name!r} has no {class_name!r} (from {path})")
    problem = protocol_problem(cls, base, kind)
    if problem is not None:
        raise HarnessError(f"{path} {problem}")
    return cls


def _import_here_too(module_name: str):
    """Import ``module_name``, also from the current folder: the ``harness`` console script
    puts its own bin folder first on sys.path, not the folder it runs in, so a ``plugs.py``
    beside the user was not found. The folder is appended (installed modules keep
    precedence) and stays (the module may import its neighbours later). Worker processes
    rebuild methods and algorithms from their ``module:Class`` spec through here, in the
    folder they inherit, so they find it too."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        here = os.getcwd()
        top = module_name.split(".")[0]
        searched = here in sys.path or "" in sys.path
        # Only a module that is there is a reason to widen the path (not a failed lookup).
        if error.name != top or searched or PathFinder.find_spec(top, [here]) is None:
            raise
    sys.path.append(here)
    importlib.invalidate_caches()
    return importlib.import_module(module_name)


def protocol_problem(cls: object, base: type, kind: str) -> str | None:
    """Why ``cls`` cannot serve as a ``kind`` (None when it can)."""
    if not isinstance(cls, type) or not issubclass(cls, base):
        return f"is not a subclass of {base.__module__}.{base.__name__}"
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return (
            f"needs a class attribute name in lower case letters, digits and '-' (got {name!r})"
        )
    if not dataclasses.is_dataclass(getattr(cls, "options_class", None)):
        return "needs options_class to be a dataclass of its options"
    if kind == "method" and cls.choose is base.choose and cls.select is base.select:
        return "implements neither choose() nor select()"
    return None


# Where the built-in selection methods and supernet algorithms live; any other class is a
# plugin (an installed package's, one named by module.path:Class, one from a notebook).
BUILTIN_PACKAGES = ("methods.selection.", "methods.supernet.")


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """The options of a method or algorithm that has none."""


def is_plugin(cls: type) -> bool:
    return not cls.__module__.startswith(BUILTIN_PACKAGES)


def plugin_source(cls: type) -> str | None:
    """A plugin class's source (see :func:`class_source`), recorded with its results and
    part of their keys so a new version never reuses an old one's; None for a built-in."""
    return class_source(cls) if is_plugin(cls) else None


@functools.cache
def class_source(cls: type) -> str:
    """``module:Class`` and, when an installed distribution holds it, its name and version
    (cached: finding the distribution scans every installed package)."""
    path = f"{cls.__module__}:{cls.__qualname__}"
    top = cls.__module__.split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top, [])
    if dists:
        version = importlib.metadata.version(dists[0])
        return f"{path} ({dists[0]} {version})"
    return path


def _entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=group))


def _distribution(point: importlib.metadata.EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "an unknown package"


@contextlib.contextmanager
def torch_state_kept() -> Iterator[None]:
    """Torch's global switches as they were: a method that turns gradients off, changes the
    thread count (CPU results differ in the last bits across thread counts) or the default
    dtype leaves the methods after it unaffected."""
    grad, threads, dtype = (
        torch.is_grad_enabled(),
        torch.get_num_threads(),
        torch.get_default_dtype(),
    )
    try:
        yield
    finally:
        torch.set_grad_enabled(grad)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
