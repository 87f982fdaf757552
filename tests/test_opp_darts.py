"""OPP-DARTS: the reference's admission schedule, its criterion and its restarts."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from harness.config import DataSettings
from harness.errors import HarnessError
from harness.experiment import build_config
from harness.search_data import make_search_data
from harness.store import RunStore
from harness.training import train_supernet
from methods.supernet import get_algorithm
from methods.supernet.opp_darts import admission_epochs, resolved_spacing
from spaces.nb201 import OP_NAMES, NB201Space, NB201Supernet

SKIP = OP_NAMES.index("skip_connect")
PARAMETRIC = tuple(OP_NAMES.index(n) for n in ("nor_conv_1x1", "nor_conv_3x3"))


def _config(epochs=8, every=2, **options):
    return build_config(
        "smoke",
        {"train": {"epochs": epochs, "checkpoint_every": every}},
        algorithm="opp-darts",
        algorithm_options=options,
    )


def test_schedule_of_a_50_epoch_run_is_the_references():
    # DARTS space (the reference): 6 candidates after the initial op, add_op_epoch 2.
    assert admission_epochs(6, 2) == [2, 4, 6, 8, 10, 12, 14]
    # NB201 port, same rule: 3 candidates (none, the other conv, avg_pool), skip at 8.
    train = _config(epochs=50).train
    options = get_algorithm("opp-darts").options_class()
    assert resolved_spacing(options, train) == 2
    assert admission_epochs(3, resolved_spacing(options, train)) == [2, 4, 6, 8]
    assert admission_epochs(3, 2, skip_epoch=14) == [2, 4, 6, 14]


@pytest.mark.parametrize(("epochs", "spacing"), [(100, 4), (30, 1), (25, 1), (75, 3)])
def test_spacing_scales_with_the_runs_epochs(epochs, spacing):
    train = _config(epochs=epochs, every=1).train
    options = get_algorithm("opp-darts").options_class()
    assert resolved_spacing(options, train) == spacing


def test_training_admits_one_op_per_slot_with_skip_last_and_restarts_the_cosine(
    tmp_path, tiny_arrays
):
    config = _config(epochs=8, every=2)  # spacing 1: ops enter at epochs 1, 2, 3, skip at 4
    outcome = train_supernet(config, 0, tmp_path, tiny_arrays, progress=False)
    metrics = pd.read_csv(outcome.run_dir / "metrics.csv")
    assert list(metrics["stage"]) == [0, 1, 2, 3, 4, 4, 4, 4]
    assert list(metrics["active_ops"]) == [1, 2, 3, 4, 5, 5, 5, 5]
    admitted = RunStore(tmp_path, outcome.run_key).load_checkpoint(8)["algorithm"]["admitted"]
    assert admitted[0] in PARAMETRIC and admitted[-1] == SKIP
    assert sorted(admitted) == list(range(len(OP_NAMES)))
    masks = [RunStore(tmp_path, outcome.run_key).load_checkpoint(e)["model"]["active_ops"]
             for e in (2, 4, 6)]  # fmt: skip
    assert [int(m[0].sum()) for m in masks] == [2, 4, 5]
    assert not masks[1][:, SKIP].any() and masks[2].all()
    # After the last admission (epoch index 4) the cosine runs from that epoch's lr to
    # lr_min over the 4 epochs left.
    train = config.train
    start = metrics["lr"][4]
    expected = [train.lr_min + (start - train.lr_min) * (1 + math.cos(math.pi * t / 4)) / 2
                for t in range(4)]  # fmt: skip
    assert metrics["lr"][4:].tolist() == pytest.approx(expected, rel=1e-9)
    # Restarts: epoch 1's lr is where the first schedule stood after one epoch of eight.
    first = train.lr_min + (train.lr - train.lr_min) * (1 + math.cos(math.pi / 8)) / 2
    assert metrics["lr"][1] == pytest.approx(first, rel=1e-9)
    assert metrics["lr"][2] == pytest.approx(
        train.lr_min + (first - train.lr_min) * (1 + math.cos(math.pi / 7)) / 2, rel=1e-9
    )
    settings = json.loads((outcome.run_dir / "settings.json").read_text())
    assert settings["algorithm"]["admission"]["epochs"] == [0, 1, 2, 3, 4]


def _algorithm_and_batches(tiny_arrays, **options):
    config = _config(**options)
    torch.manual_seed(0)
    net = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1)
    algo = get_algorithm("opp-darts")(net, config.train, config.algorithm_options)
    data = make_search_data(DataSettings(resolution=8, images_per_split=128), tiny_arrays,
                            seed=0, batch_size=32)  # fmt: skip
    return net, algo, data


def test_the_initial_op_is_the_parametric_op_with_the_largest_loss_on_the_whole_split(
    tiny_arrays,
):
    net, algo, data = _algorithm_and_batches(tiny_arrays)
    with torch.no_grad():
        net.active_ops.fill_(False)
    losses = {k: algo._trial_loss(k, 0, data.weight_batches) for k in PARAMETRIC}
    assert losses[PARAMETRIC[0]] != losses[PARAMETRIC[1]]
    # A trial is the mean loss over every batch of the weight split (128 images: 4 batches),
    # with only the tried op switched on.
    probe = get_algorithm("opp-darts")(
        NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1), _config().train, {}
    )
    probe.supernet.load_state_dict(net.state_dict())
    k = PARAMETRIC[0]
    with torch.no_grad():
        probe._activate(k, 0)
        probe.supernet.train()
        batches = list(data.weight_batches.epoch(10_000))
        manual = sum(F.cross_entropy(probe.supernet(x), y).item() for x, y in batches)
    assert len(batches) == 4
    assert losses[k] == pytest.approx(manual / 4, rel=1e-6)
    algo.begin_epoch(0, data.weight_batches, data.alpha_batches)
    assert algo.admitted == [max(PARAMETRIC, key=losses.get)]
    assert net.active_ops[0].tolist() == [k == algo.admitted[0] for k in range(len(OP_NAMES))]


def test_none_competes_and_the_largest_trial_loss_enters(tiny_arrays):
    net, algo, data = _algorithm_and_batches(tiny_arrays)
    algo.begin_epoch(0, data.weight_batches, data.alpha_batches)
    candidates = [k for k in range(len(OP_NAMES)) if k not in algo.admitted and k != SKIP]
    assert OP_NAMES.index("none") in candidates and len(candidates) == 3
    losses = {k: algo._trial_loss(k, 1, data.weight_batches) for k in candidates}
    assert len(set(losses.values())) == 3
    algo.begin_epoch(1, data.weight_batches, data.alpha_batches)
    assert algo.admitted[1] == max(candidates, key=losses.get)


def test_a_named_initial_op_skips_the_trial(tiny_arrays):
    net, algo, data = _algorithm_and_batches(tiny_arrays, initial_op="nor_conv_1x1")
    algo.begin_epoch(0, data.weight_batches, data.alpha_batches)
    assert algo.admitted == [OP_NAMES.index("nor_conv_1x1")]


@pytest.mark.parametrize(
    ("epochs", "options", "pattern"),
    [
        (4, {}, r"epochs \[1, 2, 3, 4\].*the run has 4"),
        (50, {"add_op_epoch": 20}, r"add_op_epoch"),
        (50, {"skip_epoch": 5}, r"skip_epoch 5 must come after .* epoch 6"),
        (50, {"initial_op": "skip_connect"}, r"initial_op 'skip_connect'"),
        (50, {"trial_batches": -1}, r"trial_batches must be 0 or positive"),
    ],
)
def test_settings_that_cannot_work_are_refused_when_the_config_is_built(epochs, options, pattern):
    with pytest.raises(HarnessError, match=pattern):
        _config(epochs=epochs, every=1, **options)
