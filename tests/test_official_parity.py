"""Parity with the official code, xautodl (the NAS-Bench-201 authors' package): the harness's
NB201 supernet and xautodl's ``TinyNetworkDarts`` give the same logits on the same weights,
and N steps of ``--algorithm darts --preset xautodl`` leave the same weights, alphas and
optimiser state as xautodl's DARTS-V1 search step; the harness's DARTS-space supernet and
xautodl's ``NASNetworkDARTS`` compute the same cells.

The DARTS-V1 step is the loop of ``exps/NAS-Bench-201-algos/DARTS-V1.py`` in
D-X-Y/AutoDL-Projects (``search_func``), which the package does not ship: it is written out
in :func:`_xautodl_search_steps` below, driving the package's own model, its
``procedures.get_optim_scheduler`` (DARTS.config values: SGD, Nesterov, cosine) and the
script's Adam for the alphas, in the script's order: weight step (clip over
``network.parameters()``, alphas included), then the alpha step. Everything else (model,
optimisers, scheduler) is the package's.

Without xautodl these tests skip (``pip install --no-deps xautodl``, the README's set-up);
under ``HARNESS_REQUIRE_ALL=1`` (CI) they fail instead.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from required import module

from harness.experiment import build_config
from methods.supernet import get_algorithm
from spaces import make_space
from spaces.darts import official as darts_official
from spaces.darts.ops import OP_NAMES as DARTS_OPS
from spaces.darts.search import DartsSupernet
from spaces.darts.space import DartsSpace
from spaces.nb201 import official as nb201_official

xautodl_install = "pip install --no-deps xautodl"
search_models = module("xautodl.models.cell_searchs", xautodl_install)
cell_operations = module("xautodl.models.cell_operations", xautodl_install)
optimizers = module("xautodl.procedures.optimizers", xautodl_install)
config_utils = module("xautodl.config_utils", xautodl_install)

CHANNELS, CELLS = 4, 1
CLIP = 0.2  # small enough that the clip acts on these tiny networks (asserted below)


def _batches(count: int, seed: int, size: int = 8, n: int = 16):
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(n, 3, size, size, generator=generator, dtype=torch.float64),
         torch.randint(0, 10, (n,), generator=generator))
        for _ in range(count)
    ]  # fmt: skip


def _harness_nb201(preset: str = "xautodl", cell: str = "fused", **train):
    config = build_config(preset, {
        "space": {"channels": CHANNELS, "cells_per_stage": CELLS},
        "train": {"grad_clip": CLIP, **train},
        "compute": {"cell": cell, "channels_last": False},
    })  # fmt: skip
    torch.manual_seed(0)
    net = make_space(config.space).build_supernet(config.space, 10, config.compute)
    return config, net.double()


def _xautodl_nb201(harness_net, track_running_stats: bool):
    official = search_models.search_model_darts.TinyNetworkDarts(
        CHANNELS, CELLS, 4, 10, cell_operations.NAS_BENCH_201, False, track_running_stats
    ).double()
    state = nb201_official.to_xautodl(harness_net.state_dict())
    for name, value in official.state_dict().items():
        if name not in state and name.endswith(".op.1.bias"):
            state[name] = torch.zeros_like(value)  # bias-free cells (paper preset): zero bias
    official.load_state_dict(state)  # strict: every other name must match
    return official


def test_the_name_mapping_round_trips():
    _, net = _harness_nb201()
    state = net.state_dict()
    back = nb201_official.from_xautodl(nb201_official.to_xautodl(state))
    assert set(back) == set(state) - {"active_ops"}
    assert all(torch.equal(back[name], state[name]) for name in back)


@pytest.mark.parametrize("cell", ["fused", "reference"])
@pytest.mark.parametrize("preset", ["xautodl", "paper"])
def test_nb201_logits_equal_xautodl_in_train_and_eval_mode(cell, preset):
    config, net = _harness_nb201(preset, cell)
    with torch.no_grad():
        net.alphas.normal_()  # an uneven mixture, so every op's weight matters
    track = config.space.cell_bn_track_stats
    official = _xautodl_nb201(net, track)
    has_bias = any(name.endswith("op.1.bias") for name in net.state_dict())
    assert has_bias == (preset == "xautodl")  # DARTS-PT's cells (paper preset) have none
    (x, _), (x2, _) = _batches(2, seed=1)
    for mode in ("train", "eval"):
        net.train(mode == "train")
        official.train(mode == "train")
        with torch.no_grad():
            ours, theirs = net(x), official(x)[1]
            torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
            # after a train-mode pass the running statistics moved the same way too
            torch.testing.assert_close(net(x2), official(x2)[1], rtol=1e-10, atol=1e-10)


def _xautodl_search_steps(official, batches, epochs: int, lr: float, lr_min: float,
                          clip: float) -> list[float]:  # fmt: skip
    """DARTS-V1.py's ``search_func`` over ``epochs`` epochs of ``batches`` (the script's
    order and calls; returns the gradient norms its clip saw)."""
    config = config_utils.dict2config({
        "scheduler": "cos", "LR": lr, "eta_min": lr_min, "epochs": epochs, "warmup": 0,
        "optim": "SGD", "decay": 5e-4, "momentum": 0.9, "nesterov": True,
        "criterion": "Softmax", "batch_size": 16,
    }, None)  # fmt: skip
    w_optimizer, w_scheduler, criterion = optimizers.get_optim_scheduler(
        official.get_weights(), config
    )
    a_optimizer = torch.optim.Adam(official.get_alphas(), lr=3e-4, betas=(0.5, 0.999),
                                   weight_decay=1e-3)  # fmt: skip
    norms = []
    official.train()
    for epoch in range(epochs):
        w_scheduler.update(epoch, 0.0)
        for step, ((base_x, base_y), (arch_x, arch_y)) in enumerate(batches):
            w_scheduler.update(None, 1.0 * step / len(batches))
            w_optimizer.zero_grad()
            _, logits = official(base_x)
            criterion(logits, base_y).backward()
            norms.append(float(torch.nn.utils.clip_grad_norm_(official.parameters(), clip)))
            w_optimizer.step()
            a_optimizer.zero_grad()
            _, logits = official(arch_x)
            criterion(logits, arch_y).backward()
            a_optimizer.step()
    return norms, w_optimizer, a_optimizer


def _harness_search_steps(algorithm, batches, epochs: int) -> None:
    algorithm.supernet.train()
    for epoch in range(epochs):
        for weight_batch, alpha_batch in batches:
            algorithm.step(weight_batch, alpha_batch)
        algorithm.end_epoch(epoch)


def _run_both(**train):
    config, net = _harness_nb201("xautodl", "fused", epochs=2, **train)
    official = _xautodl_nb201(net, config.space.cell_bn_track_stats)
    batches = list(zip(_batches(3, seed=2), _batches(3, seed=3), strict=True))
    algorithm = get_algorithm("darts")(net, config.train, config.algorithm_options)
    _harness_search_steps(algorithm, batches, epochs=2)
    norms, w_optimizer, a_optimizer = _xautodl_search_steps(
        official, batches, 2, config.train.lr, config.train.lr_min, CLIP
    )
    return net, algorithm, official, norms, w_optimizer, a_optimizer


def _largest_difference(net, official) -> float:
    theirs = nb201_official.from_xautodl(official.state_dict())
    ours = net.state_dict()
    return max(float((ours[name] - value).abs().max()) for name, value in theirs.items()
               if value.is_floating_point())  # fmt: skip


def test_darts_steps_equal_xautodls_darts_v1_search_step():
    net, algorithm, official, norms, w_optimizer, a_optimizer = _run_both()
    assert min(norms) > CLIP  # the clip acted on every step, so its scope mattered
    # weights, alphas, BatchNorm running statistics
    assert _largest_difference(net, official) < 1e-12
    # optimiser state: SGD momentum and Adam moments, parameter by parameter
    names = dict(zip(nb201_official.to_xautodl(dict(net.named_parameters())),
                     net.named_parameters(), strict=True))  # fmt: skip
    theirs_by_name = dict(official.named_parameters())
    for their_name, (our_name, param) in names.items():
        ours_state = (algorithm.arch_optimizer if our_name == "alphas"
                      else algorithm.weight_optimizer).state[param]  # fmt: skip
        their_param = theirs_by_name[their_name]
        theirs_state = (a_optimizer if their_name == "arch_parameters"
                        else w_optimizer).state[their_param]  # fmt: skip
        for key, value in theirs_state.items():
            torch.testing.assert_close(ours_state[key], value, rtol=1e-12, atol=1e-14)
    # (equal weights after the second epoch also mean the cosine gave both the same lr)


@pytest.mark.parametrize("changed", [{"step_order": "alpha-then-weight"},
                                     {"clip_scope": "weights"}])  # fmt: skip
def test_the_parity_check_fails_when_the_step_order_or_clip_scope_changes(changed):
    net, _, official, *_ = _run_both(**changed)
    assert _largest_difference(net, official) > 1e-9


def _darts_pair(seed: int = 0):
    """The harness's DARTS supernet at 6 cells (reductions at cells 2 and 4) and xautodl's
    NASNetworkDARTS at N=2 (the same layout), on the same weights; pools weigh zero."""
    torch.manual_seed(seed)
    net = DartsSupernet(DartsSpace("darts"), CHANNELS, 6, 10).double()
    official = search_models.search_model_darts_nasnet.NASNetworkDARTS(
        CHANNELS, 2, 4, 4, 3, 10, cell_operations.DARTS_SPACE, False, True
    ).double()
    with torch.no_grad():
        net.alphas.normal_()
        for pool in ("max_pool_3x3", "avg_pool_3x3"):
            net.alphas[:, DARTS_OPS.index(pool)] = -torch.inf  # xautodl's pools lack the BN
    mapped = darts_official.to_xautodl(net.state_dict())
    missing, unexpected = official.load_state_dict(
        darts_official.with_zero_biases(mapped, official.state_dict()), strict=False
    )
    assert unexpected == [] and all(name.startswith("lastact.") for name in missing)
    return net, official


def test_darts_space_cells_equal_xautodls_nasnetwork_darts():
    net, official = _darts_pair()
    last_cell = {}
    cell, forward_darts = official.cells[-1], official.cells[-1].forward_darts

    def keep_output(*inputs):  # xautodl calls forward_darts, so no module hook would fire
        last_cell["out"] = forward_darts(*inputs)
        return last_cell["out"]

    cell.forward_darts = keep_output
    (x, _), (x2, _) = _batches(2, seed=4, size=16)
    for mode in ("train", "eval"):
        net.train(mode == "train")
        official.train(mode == "train")
        for batch in (x, x2):
            with torch.no_grad():
                ours = net(batch)
                official(batch)
                # xautodl's head adds BatchNorm + ReLU before pooling; DARTS's does not: the
                # logits of DARTS's head on xautodl's last cell are the harness's logits
                pooled = F.adaptive_avg_pool2d(last_cell["out"], 1).flatten(1)
                theirs = F.linear(pooled, net.classifier.weight, net.classifier.bias)
            torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    assert [c.reduction for c in official.cells] == [c.reduction for c in net.cells]


def test_the_darts_mapping_covers_every_parameter_but_the_pools_batchnorm():
    net, official = _darts_pair()
    mapped = darts_official.to_xautodl(net.state_dict())
    dropped = [name for name in net.state_dict() if name not in ("alphas", "active_ops")
               and ".ops.1." not in name and ".ops.2." not in name]  # fmt: skip
    assert len(mapped) == len(dropped) + 2  # two alpha matrices for one
    with pytest.raises(ValueError, match="full DARTS op set"):
        darts_official.to_xautodl(net.state_dict(), op_names=DARTS_OPS[:-1])
