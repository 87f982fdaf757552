"""random: a uniformly random cell per seed (the floor every method must clear)."""

from __future__ import annotations

import numpy as np

from methods.selection.base import (
    SelectionContext,
    SelectionCost,
    SelectionMethod,
    empty_scores,
)
from spaces.nb201 import NUM_EDGES, NUM_OPS, NB201Supernet


class RandomCell(SelectionMethod):
    name = "random"

    def choose(self, supernet: NB201Supernet, context: SelectionContext, cost: SelectionCost):
        # Seeded by the run's seed alone: one random cell per seed, whatever the epoch.
        generator = np.random.default_rng([context.seed, 20_1])
        choices = [int(k) for k in generator.integers(0, NUM_OPS, size=NUM_EDGES)]
        return choices, empty_scores(), list(range(NUM_EDGES))
