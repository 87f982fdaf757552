"""Multiply-accumulate counts of a network's forward pass, as DARTS-family papers quote them.

What those papers call "FLOPs" or "MAdds" (DARTS's 574M "multiply-add operations" in the
ImageNet mobile setting, PC-DARTS, P-DARTS, ...) counts the multiply-accumulates of the
convolutions and fully connected layers only; this module follows that convention.
"""

from __future__ import annotations

import torch
from torch import nn


def count_multiply_adds(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on a single input of shape
    ``input_shape`` (without the batch dimension, e.g. ``(3, 32, 32)``).

    Counted, per call of the module (a module called twice counts twice):

    * ``nn.Conv2d``: ``out_h * out_w * out_channels * (in_channels / groups) * kh * kw``
    * ``nn.Linear``: ``in_features * out_features`` (per row, for inputs with extra dims)

    Not counted, as in the papers: biases, batch norm, pooling, activations, additions,
    concatenations, and anything computed through ``torch.nn.functional`` rather than a
    module. The model runs in eval mode (so training-only branches such as DARTS's
    auxiliary head are left out) under ``torch.no_grad`` on zeros; every module's training
    flag is restored afterwards and the hooks are removed, whatever happens.
    """
    total = 0

    def conv_hook(module: nn.Conv2d, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        per_output = (module.in_channels // module.groups) * kh * kw
        # numel / batch = out_channels * out_h * out_w of one input.
        total += output.numel() // output.shape[0] * per_output

    def linear_hook(module: nn.Linear, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() // output.shape[0] * module.in_features

    # Flags per module, not one for the model: a model may hold modules in a mode of their
    # own (a frozen batch norm in eval inside a training network), which must survive.
    modes = {module: module.training for module in model.modules()}
    handles = []
    try:
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                handles.append(module.register_forward_hook(conv_hook))
            elif isinstance(module, nn.Linear):
                handles.append(module.register_forward_hook(linear_hook))
        reference = next(model.parameters(), None)
        device = reference.device if reference is not None else torch.device("cpu")
        floating = reference is not None and reference.is_floating_point()
        dtype = reference.dtype if floating else torch.get_default_dtype()
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return total
