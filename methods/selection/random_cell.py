"""random: a uniformly random cell of the space per seed (the floor every method must clear)."""

from __future__ import annotations

import numpy as np

from methods.selection.base import SelectionContext, SelectionCost, SelectionMethod
from spaces.base import Supernet


class RandomCell(SelectionMethod):
    name = "random"
    topology_rule = "two distinct inputs per node uniformly at random"

    def choose(self, supernet: Supernet, context: SelectionContext, cost: SelectionCost):
        # Seeded by the run's seed alone: one random cell per seed, whatever the epoch.
        generator = np.random.default_rng([context.seed, 20_1])
        space = supernet.space
        choices = list(space.random_cell(generator))
        return choices, space.empty_scores(), list(range(space.num_edges))
