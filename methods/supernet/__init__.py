"""Supernet training algorithms, looked up by name: built-in, from an installed package's
entry point (group ``nas_selection_harness.algorithms``), or ``module.path:ClassName``."""

from __future__ import annotations

from harness.plugins import Registry, build_registry, load_class, plugin_source
from methods.supernet.base import SupernetAlgorithm
from methods.supernet.darts import DartsFirstOrder, DartsSecondOrder
from methods.supernet.fixed_alpha import DartsFixedAlpha
from methods.supernet.lambda_darts import LambdaDarts
from methods.supernet.opp_darts import OppDarts
from methods.supernet.shapley_nas import ShapleyNas

# The built-in algorithms; algorithm_registry() adds the installed plugins.
ALGORITHMS: dict[str, type[SupernetAlgorithm]] = {
    cls.name: cls
    for cls in (
        DartsFirstOrder,
        DartsSecondOrder,
        DartsFixedAlpha,
        LambdaDarts,
        OppDarts,
        ShapleyNas,
    )
}
_REGISTRY: list[Registry] = []


def algorithm_registry(refresh: bool = False) -> Registry:
    """Built-in and plugin algorithms by name (plugins are looked for once per process)."""
    if refresh or not _REGISTRY:
        _REGISTRY[:] = [build_registry("algorithm", ALGORITHMS, SupernetAlgorithm)]
    return _REGISTRY[0]


def available_algorithms() -> dict[str, type[SupernetAlgorithm]]:
    return dict(algorithm_registry().classes)


def algorithm_source(name: str) -> str | None:
    """Class and package version of a plugin algorithm (None for a built-in): in its run
    key, so that a new version of a plugin never reuses the old one's checkpoints."""
    return plugin_source(get_algorithm(name))


def get_algorithm(name: str) -> type[SupernetAlgorithm]:
    """The algorithm ``name`` names: registered, or ``module.path:ClassName``."""
    if ":" in name:
        return load_class(name, SupernetAlgorithm, "algorithm")
    return algorithm_registry().get(name)
