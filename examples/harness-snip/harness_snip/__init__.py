"""snip: an example selection rule packaged as a plugin for nas-selection-harness.

The connection sensitivity of SNIP (Lee et al., ICLR 2019), applied to the supernet's
mixing weights instead of its connections: the importance of op k on edge e is
``|W[e,k] * dL/dW[e,k]|``, the first-order change of the validation loss when that op is
switched off, measured once at the supernet's own mixing matrix ``W`` (no progressive
decisions, no fine-tuning). Each edge keeps its most sensitive candidate, by the space's
topology rule. It is not a method of the harness; it is here to show how one is added.

Everything it uses is the harness's public protocol: ``SelectionMethod`` (options, name,
``choose``), the ``SelectionContext`` (data, seed, device) and the supernet protocol
(``space``, ``mixing_weights``, ``forward(x, weights)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from harness.errors import HarnessError
from methods.selection import SelectionMethod, working_copy


@dataclass(frozen=True)
class SnipOptions:
    num_batches: int = 4  # validation batches the gradient is averaged over
    split: str = "valid"  # valid (the alpha split) | train (the weight split)

    def __post_init__(self) -> None:
        if isinstance(self.num_batches, bool) or self.num_batches < 1:
            raise HarnessError("option num_batches of snip must be a positive integer")
        if self.split not in ("valid", "train"):
            raise HarnessError(f"option split of snip must be valid or train, got {self.split!r}")


class Snip(SelectionMethod):
    name = "snip"
    options_class = SnipOptions
    aliases = {"train": {"split": "train"}}

    def choose(self, supernet, context, cost):
        o = self.options
        batches = context.data.alpha_eval if o.split == "valid" else context.data.weight_eval
        net = working_copy(supernet)  # train-mode BatchNorm must not touch the caller's
        net.train()  # batch statistics, as the supernet was trained
        weights = net.mixing_weights().detach().clone().requires_grad_(True)
        grad, count = torch.zeros_like(weights), 0
        for index, (x, y) in enumerate(batches.epoch(0)):
            if index >= o.num_batches:
                break
            loss = F.cross_entropy(net(x, weights), y, reduction="sum")
            grad += torch.autograd.grad(loss, [weights])[0]
            count += len(y)
            cost.forward_passes += 1
            cost.backward_passes += 1
        sensitivity = (weights.detach() * grad / count).abs().double().cpu().numpy()
        space = supernet.space
        scores = np.where(space.candidate_mask & supernet.active_ops.cpu().numpy(),
                          sensitivity, np.nan)  # fmt: skip
        return list(space.discretise(scores)), scores, list(range(space.num_edges))
