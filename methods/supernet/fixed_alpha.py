"""A supernet whose alphas never move: DARTS-PT's "DARTS+PT, fix alpha" baseline.

In the DARTS-PT reference code (``--method blank``) the architect's step does nothing:
only the weights train, on the training split with the DARTS weight optimiser, and the
alphas keep their ``1e-3 * randn`` initialisation through search and projection. The
supernet therefore mixes every op with (almost) equal weight, and perturbation-based
selection is all that picks the cell. DARTS-PT's published 93.80 % belongs to this
supernet with ``darts-pt[fix-alpha]``; with alphas trained by DARTS that variant is a
different experiment.

The validation split is still drawn each step (and ignored) so that the weight batches
follow the same data order as ``darts`` with the same seed.
"""

from __future__ import annotations

from typing import Any

from methods.supernet.base import Batch, SupernetAlgorithm


class DartsFixedAlpha(SupernetAlgorithm):
    name = "darts-fixed-alpha"
    fixed_alphas = True

    def alpha_step(self, weight_batch: Batch, alpha_batch: Batch) -> None:
        """The reference's ``blank`` architect: no update, no gradient."""

    def recorded_settings(self) -> dict[str, Any]:
        settings = super().recorded_settings()
        settings["arch_optimizer"] = {"type": "none: alphas stay at their initialisation"}
        settings["step_order"] = "weight only"
        return settings
