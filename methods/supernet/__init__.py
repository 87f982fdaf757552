"""Supernet training algorithms, looked up by name."""

from __future__ import annotations

from harness.errors import HarnessError
from methods.supernet.base import SupernetAlgorithm
from methods.supernet.darts import DartsFirstOrder, DartsSecondOrder
from methods.supernet.fixed_alpha import DartsFixedAlpha
from methods.supernet.lambda_darts import LambdaDarts
from methods.supernet.opp_darts import OppDarts

ALGORITHMS: dict[str, type[SupernetAlgorithm]] = {
    cls.name: cls
    for cls in (DartsFirstOrder, DartsSecondOrder, DartsFixedAlpha, LambdaDarts, OppDarts)
}


def get_algorithm(name: str) -> type[SupernetAlgorithm]:
    if name not in ALGORITHMS:
        raise HarnessError(
            f"unknown supernet algorithm {name!r}; available: {', '.join(sorted(ALGORITHMS))}"
        )
    return ALGORITHMS[name]
