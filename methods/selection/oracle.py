"""oracle: the best cell in the ground truth; an upper bound, not a method."""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import HarnessError
from methods.selection.base import (
    SelectionContext,
    SelectionCost,
    SelectionMethod,
    empty_scores,
)
from spaces.nb201 import NUM_EDGES, NB201Supernet, decode


@dataclass(frozen=True)
class OracleOptions:
    dataset: str = "cifar10"
    metric: str = "test"
    epochs: int = 200


class Oracle(SelectionMethod):
    name = "oracle"
    options_class = OracleOptions
    upper_bound = True

    def choose(self, supernet: NB201Supernet, context: SelectionContext, cost: SelectionCost):
        if context.ground_truth is None:
            raise HarnessError(
                "the oracle needs the NAS-Bench-201 ground truth: pass --ground-truth CSV"
            )
        _, arch, _ = context.ground_truth.best(
            self.options.dataset, self.options.metric, self.options.epochs
        )
        return list(decode(arch)), empty_scores(), list(range(NUM_EDGES))
