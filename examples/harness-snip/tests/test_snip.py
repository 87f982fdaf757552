"""The snip plugin on a real (tiny) supernet: what it computes, and that it keeps the rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from required import module

from harness.config import DataSettings, SpaceSettings
from harness.data import ImageArrays
from harness.errors import HarnessError
from harness.search_data import make_search_data
from methods.selection import SelectionContext, make_method
from spaces import make_space

# Installed by the README's set-up line; a missing plugin skips here, fails in CI.
Snip = module("harness_snip", "pip install -e examples/harness-snip").Snip


def _arrays(count=96, size=8):
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(count) % 10
    images = (labels.view(-1, 1, 1, 1) * 20 + torch.randint(0, 50, (count, 3, size, size),
              generator=generator)).clamp(0, 255).to(torch.uint8)  # fmt: skip
    classes = [f"class{k}" for k in range(10)]
    return ImageArrays(images, labels, images[:10], labels[:10], classes, "snip-test")


def _setup(space="nb201"):
    torch.manual_seed(0)
    settings = SpaceSettings(name=space, channels=4, cells_per_stage=1)
    net = make_space(settings).build_supernet(settings, num_classes=10)
    data = make_search_data(DataSettings(resolution=8, images_per_split=48), _arrays(), 0, 16)
    return net, SelectionContext(data=data, seed=0)


def test_scores_are_weight_times_gradient_of_the_validation_loss():
    net, context = _setup()
    selection = Snip(num_batches=2).select(net, context)
    # The same quantity, computed here by hand on the same batches.
    weights = net.mixing_weights().detach().clone().requires_grad_(True)
    copy = __import__("copy").deepcopy(net).train()
    total, count = torch.zeros_like(weights), 0
    for index, (x, y) in enumerate(context.data.alpha_eval.epoch(0)):
        if index == 2:
            break
        loss = F.cross_entropy(copy(x, weights), y, reduction="sum")
        total += torch.autograd.grad(loss, [weights])[0]
        count += len(y)
    expected = (weights.detach() * total / count).abs().double().numpy()
    assert np.allclose(np.asarray(selection.scores), expected, rtol=1e-5, atol=1e-12)
    chosen = net.space.decode(selection.arch)
    assert list(chosen) == [int(np.argmax(row)) for row in expected]
    assert selection.cost.forward_passes == 2 and selection.cost.backward_passes == 2


def test_leaves_the_supernet_untouched_and_stays_inside_a_subset_space():
    net, context = _setup("nb201-s3")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    selection = Snip().select(net, context)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    space = net.space
    assert space.contains(space.decode(selection.arch))
    assert np.isnan(np.asarray(selection.scores)[~space.candidate_mask]).all()


def test_is_a_method_of_the_harness_with_checked_options():
    method = make_method("snip[train,num_batches=1]")
    assert method.display_name == "snip[train,num_batches=1]"
    assert method.settings()["source"].startswith("harness_snip:Snip (harness-snip ")
    with pytest.raises(HarnessError, match="num_batches of snip must be a positive integer"):
        make_method("snip[num_batches=0]")
