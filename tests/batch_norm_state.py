"""Non-trivial BatchNorm state, so that a mismatch in how BN is applied would show."""

from __future__ import annotations

import torch


def randomise_batch_norm(network: torch.nn.Module) -> None:
    """Affine parameters and running statistics away from their 1/0 defaults."""
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                if module.affine:
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.2, 0.2)
                if module.track_running_stats:
                    module.running_mean.uniform_(-0.1, 0.1)
                    module.running_var.uniform_(0.5, 1.5)
