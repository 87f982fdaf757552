"""darts-pt's scoring data: fixed batches (CPU presets) or the reference's reshuffled queue."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.config import DataSettings
from harness.errors import HarnessError
from harness.presets import SELECTION_DEFAULTS
from harness.search_data import make_search_data
from methods.selection import make_method
from methods.selection.base import SelectionContext, SelectionCost
from methods.selection.darts_pt import DartsPT
from methods.selection.progressive import RESHUFFLED_EPOCHS, Scoring
from spaces.nb201 import NB201Space, NB201Supernet


@pytest.fixture
def search_data(tiny_arrays):
    settings = DataSettings(resolution=8, images_per_split=96)
    return make_search_data(settings, tiny_arrays, seed=0, batch_size=32)


def _supernet():
    torch.manual_seed(0)
    return NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1)


def test_fixed_scoring_repeats_and_reshuffled_scoring_moves_on(search_data):
    net = _supernet()
    weights = net.mixing_weights().detach()
    fixed = Scoring(search_data.alpha_eval, 1, "train", SelectionCost(), "loss")
    assert fixed.values(net, [weights])[0] == fixed.values(net, [weights])[0]

    reshuffled = Scoring(
        search_data.alpha_batches, 1, "train", SelectionCost(), "loss", reshuffle=True
    )
    first, second = reshuffled.values(net, [weights, weights])
    assert first != second  # each measurement reads its own shuffle and augmentation
    assert reshuffled.passes == 2
    # Pass p reads epoch RESHUFFLED_EPOCHS + p of the augmented alpha split: never a
    # shuffle that training's alpha steps (epochs 0, 1, ...) saw.
    x, _ = next(iter(search_data.alpha_batches.epoch(RESHUFFLED_EPOCHS + 2)))
    x_train, _ = next(iter(search_data.alpha_batches.epoch(0)))
    assert not torch.equal(x, x_train)


def test_reshuffled_darts_pt_is_deterministic_and_recorded(search_data):
    context = SelectionContext(data=search_data, seed=0)
    method = DartsPT(num_batches=1, finetune_epochs=0, scoring_data="reshuffled")
    first = method.select(_supernet(), context)
    again = method.select(_supernet(), context)
    assert first.arch == again.arch
    assert np.array_equal(first.scores, again.scores, equal_nan=True)
    assert first.settings["scoring_data"] == "reshuffled"
    fixed = DartsPT(num_batches=1, finetune_epochs=0).select(_supernet(), context)
    assert fixed.settings["scoring_data"] == "fixed"
    # the two read different batches
    assert not np.array_equal(fixed.scores, first.scores, equal_nan=True)


def test_scoring_data_is_validated_and_paper_preset_uses_the_reference_queue():
    with pytest.raises(HarnessError, match="scoring_data"):
        DartsPT(scoring_data="shuffled")
    with pytest.raises(HarnessError, match="candidate_batch=1"):
        DartsPT(scoring_data="reshuffled", candidate_batch=5)
    paper = make_method("darts-pt", SELECTION_DEFAULTS["paper"])
    proxy = make_method("darts-pt", SELECTION_DEFAULTS["proxy"])
    assert paper.options.scoring_data == "reshuffled"
    assert proxy.options.scoring_data == "fixed"
