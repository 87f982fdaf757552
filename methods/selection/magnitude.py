"""magnitude (DARTS): per edge, the op with the largest alpha."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from methods.selection.base import SelectionContext, SelectionCost, SelectionMethod
from spaces.base import Supernet


@dataclass(frozen=True)
class MagnitudeOptions:
    # The official DARTS-on-NAS-Bench-201 code keeps `none` as a candidate; the
    # original DARTS CNN space excludes it. Recorded either way.
    exclude_none: bool = False


class Magnitude(SelectionMethod):
    name = "magnitude"
    options_class = MagnitudeOptions
    topology_rule = (
        "DARTS: per node the two input edges whose strongest non-none op has the largest "
        "alpha, each with that op"
    )
    aliases = {"no-none": {"exclude_none": True}}

    def choose(self, supernet: Supernet, context: SelectionContext, cost: SelectionCost):
        with torch.no_grad():
            scores = supernet.alphas.detach().cpu().double().clone()
            scores[~supernet.active_ops.cpu()] = float("-inf")
        space = supernet.space
        if self.options.exclude_none and "none" in space.op_names:
            none = space.op_names.index("none")
            # An edge whose only candidate is none keeps it: it must be decided somehow.
            keeps_other = np.isfinite(np.delete(scores.numpy(), none, axis=1)).any(axis=1)
            scores[torch.from_numpy(keeps_other), none] = float("-inf")
        scores = scores.numpy()
        scores[np.isinf(scores)] = np.nan
        # The space's topology rule; ties go to the earlier op.
        choices = list(space.discretise(scores))
        if not space.prunes_inputs:
            return choices, scores, list(range(space.num_edges))
        others = scores.copy()
        if "none" in space.op_names:
            others[:, space.op_names.index("none")] = np.nan
        strength = [None if np.isnan(row).all() else float(np.nanmax(row)) for row in others]
        return choices, scores, list(range(space.num_edges)), {"importance": strength}
