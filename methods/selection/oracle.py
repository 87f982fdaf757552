"""oracle: the best cell of the search space in its ground truth; an upper bound, not a method."""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import HarnessError
from methods.selection.base import SelectionContext, SelectionCost, SelectionMethod
from spaces.base import Supernet


@dataclass(frozen=True)
class OracleOptions:
    dataset: str = "cifar10"
    metric: str = "test"
    epochs: int = 200


class Oracle(SelectionMethod):
    name = "oracle"
    options_class = OracleOptions
    upper_bound = True

    def choose(self, supernet: Supernet, context: SelectionContext, cost: SelectionCost):
        space = supernet.space
        if context.ground_truth is None or space.benchmark is None:
            raise HarnessError(
                f"the oracle needs ground truth for space {space.name}: pass --ground-truth CSV"
                if space.benchmark else f"space {space.name} has no ground truth for the oracle"
            )
        # The best cell *inside* the space: on an op subset, not the benchmark's best.
        _, arch, _ = context.ground_truth.best(
            self.options.dataset, self.options.metric, self.options.epochs, within=space
        )
        return list(space.decode(arch)), space.empty_scores(), list(range(space.num_edges))
