"""Multiply-accumulate counts: by hand on a small network, and on the DARTS evaluation one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.flops import count_multiply_adds
from spaces.darts.genotype import DARTS_V2
from spaces.darts.networks import DartsEvalNetwork


def small_network() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=True),  # 16x16 out
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=4),  # grouped: 2 input channels per output
        nn.Conv2d(8, 16, (1, 3), stride=2, padding=(0, 1)),  # 8x8 out, non-square kernel
        nn.MaxPool2d(2),  # 4x4
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


def test_counts_a_small_network_by_hand():
    by_hand = (
        16 * 16 * 8 * 3 * 3 * 3  # conv: out_h * out_w * out_c * in_c * kh * kw; bias not counted
        + 16 * 16 * 8 * (8 // 4) * 3 * 3  # grouped conv
        + 8 * 8 * 16 * 8 * 1 * 3  # strided conv
        + 256 * 10  # linear; batch norm, ReLU and pooling are not counted
    )
    assert by_hand == 119_296
    assert count_multiply_adds(small_network(), (3, 16, 16)) == by_hand


def test_a_module_called_twice_counts_twice():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(self.linear(x))

    assert count_multiply_adds(Twice(), (4,)) == 2 * 16


def test_training_modes_are_restored_and_hooks_removed():
    model = small_network()
    model.train()
    model[1].eval()  # a frozen batch norm keeps its own mode
    count_multiply_adds(model, (3, 16, 16))
    assert model.training and not model[1].training
    assert all(m.training for i, m in enumerate(model) if i != 1)
    assert all(not m._forward_hooks for m in model.modules())
    model.eval()
    count_multiply_adds(model, (3, 16, 16))
    assert not any(m.training for m in model.modules())


def test_hooks_are_removed_and_mode_restored_when_the_forward_fails():
    model = small_network().train()
    with pytest.raises(RuntimeError):
        count_multiply_adds(model, (5, 16, 16))  # wrong number of channels
    assert all(m.training for m in model.modules())
    assert all(not m._forward_hooks for m in model.modules())


def test_runs_without_gradients_on_eval_mode():
    seen = []
    model = small_network()
    model.register_forward_hook(lambda m, i, o: seen.append((m.training, o.requires_grad)))
    count_multiply_adds(model, (3, 16, 16))
    assert seen == [(False, False)]


def darts(channels: int, auxiliary: bool = True) -> DartsEvalNetwork:
    return DartsEvalNetwork(DARTS_V2, channels=channels, layers=3, num_classes=10,
                            auxiliary=auxiliary)  # fmt: skip


def test_darts_evaluation_network_count_grows_with_channels():
    small, large = darts(4), darts(8)
    counts = [count_multiply_adds(net, (3, 16, 16)) for net in (small, large)]
    assert 0 < counts[0] < counts[1]
    # Pointwise convs cost C^2, depthwise ones and the stem C: doubling C more than doubles
    # the count, but less than quadruples it.
    assert 2 * counts[0] < counts[1] < 4 * counts[0]
    assert small.training and large.training


def test_darts_auxiliary_head_is_not_counted():
    # It runs only in training, as DARTS leaves it out of the costs it reports.
    with_head = count_multiply_adds(darts(4, auxiliary=True), (3, 16, 16))
    assert with_head == count_multiply_adds(darts(4, auxiliary=False), (3, 16, 16))
