"""magnitude (DARTS): per edge, the op with the largest alpha."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from methods.selection.base import SelectionContext, SelectionCost, SelectionMethod
from spaces.nb201 import NUM_EDGES, OP_NAMES, NB201Supernet


@dataclass(frozen=True)
class MagnitudeOptions:
    # The official DARTS-on-NAS-Bench-201 code keeps `none` as a candidate; the
    # original DARTS CNN space excludes it. Recorded either way.
    exclude_none: bool = False


class Magnitude(SelectionMethod):
    name = "magnitude"
    options_class = MagnitudeOptions
    aliases = {"no-none": {"exclude_none": True}}

    def choose(self, supernet: NB201Supernet, context: SelectionContext, cost: SelectionCost):
        with torch.no_grad():
            scores = supernet.alphas.detach().cpu().double().clone()
            scores[~supernet.active_ops.cpu()] = float("-inf")
        if self.options.exclude_none:
            scores[:, OP_NAMES.index("none")] = float("-inf")
        scores = scores.numpy()
        # np.argmax takes the first maximum: ties go to the earlier op.
        choices = [int(np.argmax(scores[e])) for e in range(NUM_EDGES)]
        scores[np.isinf(scores)] = np.nan
        return choices, scores, list(range(NUM_EDGES))
