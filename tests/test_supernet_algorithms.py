"""Lambda-DARTS: its terms and schedule; exact resumption of every algorithm."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from harness.errors import HarnessError
from harness.experiment import build_config
from harness.store import RunStore
from harness.training import train_supernet
from methods.supernet import get_algorithm
from methods.supernet.lambda_darts import (
    cosine_and_direction,
    finite_difference_weight_gradient,
    mean_pairwise_cosine,
    per_cell_weights,
)
from spaces.nb201 import BatchNormSettings, NB201Space, NB201Supernet


def _config(algorithm, epochs=4, every=2, **options):
    return build_config(
        "smoke",
        {"train": {"epochs": epochs, "checkpoint_every": every}},
        algorithm=algorithm,
        algorithm_options=options,
    )


def _double_supernet_and_batch():
    """A float64 supernet without BN statistics (exact derivatives) and one batch."""
    torch.manual_seed(0)
    net = NB201Supernet(
        space=NB201Space(),
        channels=3, cells_per_stage=1, num_classes=4, cell_bn=BatchNormSettings(False, False)
    ).double()
    with torch.no_grad():
        net.alphas.normal_(0, 0.5)
    x, y = torch.randn(8, 3, 6, 6, dtype=torch.float64), torch.randint(0, 4, (8,))
    return net, x, y


def test_lambda_finite_difference_matches_double_backprop():
    net, x, y = _double_supernet_and_batch()
    params = net.weight_parameters()

    per_cell = per_cell_weights(net).requires_grad_(True)
    loss = F.cross_entropy(net(x, per_cell), y)
    (cell_grads,) = torch.autograd.grad(loss, [per_cell], create_graph=True)
    cosine = mean_pairwise_cosine(cell_grads.flatten(1))
    exact = torch.autograd.grad(cosine, params, allow_unused=True)
    exact = torch.cat([(torch.zeros_like(p) if g is None else g).flatten()
                       for p, g in zip(params, exact, strict=True)])  # fmt: skip

    value, direction = cosine_and_direction(cell_grads.detach())
    assert value == pytest.approx(cosine.item())
    approx = finite_difference_weight_gradient(
        net, x, y, per_cell.detach(), direction, epsilon0=1e-6
    )
    approx = torch.cat([g.flatten() for g in approx])
    assert exact.norm() > 1e-3
    assert (approx - exact).norm() / exact.norm() < 1e-4


def test_lambda_zero_trains_exactly_like_first_order_darts(tmp_path, tiny_arrays):
    darts = train_supernet(_config("darts"), 0, tmp_path / "a", tiny_arrays, progress=False)
    # Same learning rate for alphas, DARTS's step order and clipping, so only the
    # regulariser could differ.
    lam = train_supernet(
        _config("lambda-darts", lambda_=0.0, arch_lr=3e-4, step_order="alpha-then-weight",
                clip_alphas=False),
        0, tmp_path / "b", tiny_arrays, progress=False,
    )  # fmt: skip
    a = RunStore(tmp_path / "a", darts.run_key).load_checkpoint(4)["model"]
    b = RunStore(tmp_path / "b", lam.run_key).load_checkpoint(4)["model"]
    for name in a:
        assert torch.equal(a[name], b[name]), name


def _one_step(algorithm, train_overrides=None, **options):
    config = build_config(
        "smoke", {"train": {"grad_clip": 1e-3, **(train_overrides or {})}},
        algorithm=algorithm, algorithm_options=options,
    )  # fmt: skip
    torch.manual_seed(0)
    net = NB201Supernet(space=NB201Space(), channels=3, cells_per_stage=1, num_classes=4)
    with torch.no_grad():
        net.alphas.normal_(0, 0.5)
    algo = get_algorithm(algorithm)(net, config.train, config.algorithm_options)
    return net, algo, config.train


def test_lambda_steps_weights_first_and_clips_over_weights_and_alphas():
    torch.manual_seed(1)
    weight_batch = (torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,)))
    alpha_batch = (torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,)))
    net, algo, train = _one_step("lambda-darts", lambda_=0.0)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}

    # The reference's weight update: gradients of the training loss at the *initial*
    # alphas, scaled by the clip factor of weights and alphas together.
    reference = copy.deepcopy(net)
    loss = F.cross_entropy(reference(weight_batch[0]), weight_batch[1])
    params = reference.weight_parameters()
    grads = torch.autograd.grad(loss, [*params, reference.alphas], allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in
             zip([*params, reference.alphas], grads, strict=True)]  # fmt: skip
    total = torch.sqrt(sum((g * g).sum() for g in grads))
    alpha_share = grads[-1].norm()
    assert alpha_share > 1e-3 * total  # the alphas' gradient does move the clip factor
    factor = train.grad_clip / (total + 1e-6)
    expected = {id(p): p - train.lr * (factor * g + train.weight_decay * p)
                for p, g in zip(params, grads[:-1], strict=True)}  # fmt: skip

    algo.step(weight_batch, alpha_batch)
    names = {id(p): n for n, p in reference.named_parameters()}
    for p in params:
        name = names[id(p)]
        assert torch.allclose(dict(net.named_parameters())[name], expected[id(p)],
                              atol=1e-6), name  # fmt: skip
    # The alpha step came second: its gradient is the validation loss's at the *new* weights.
    assert not torch.equal(net.alphas, before["alphas"])
    assert algo.recorded_settings()["step_order"] == "weight-then-alpha"


def test_lambda_clip_over_weights_only_differs_and_train_step_order_is_refused():
    torch.manual_seed(1)
    batch = (torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,)))
    both, algo_both, _ = _one_step("lambda-darts", lambda_=0.0)
    weights_only, algo_weights, _ = _one_step("lambda-darts", lambda_=0.0, clip_alphas=False)
    algo_both.weight_step(batch)
    algo_weights.weight_step(batch)
    assert not torch.equal(both.stem[0].weight, weights_only.stem[0].weight)
    # A train.step_order that disagrees with the algorithm's own is refused (one that
    # agrees, as the xautodl preset's, is accepted).
    with pytest.raises(HarnessError, match="algorithm.step_order"):
        _one_step("lambda-darts", {"step_order": "weight-then-alpha"},
                  step_order="alpha-then-weight")  # fmt: skip
    _one_step("lambda-darts", {"step_order": "weight-then-alpha"})


def test_lambda_records_ramp_and_cosine(tmp_path, tiny_arrays):
    outcome = train_supernet(_config("lambda-darts"), 0, tmp_path, tiny_arrays, progress=False)
    metrics = pd.read_csv(outcome.run_dir / "metrics.csv")
    assert list(metrics["lambda"].round(6)) == [0.0, round(0.25 / 3, 6), round(0.5 / 3, 6), 0.25]
    assert metrics["cell_grad_cosine"].between(-1, 1).all()
    settings = json.loads((outcome.run_dir / "settings.json").read_text())
    assert settings["algorithm"]["arch_optimizer"]["lr"] == 1e-4
    assert settings["algorithm"]["options"] == {
        "lambda_": 0.25, "epsilon0": 1e-4, "arch_lr": 1e-4,
        "step_order": "weight-then-alpha", "clip_alphas": True, "numerics_revision": 2,
    }  # fmt: skip
    assert settings["algorithm"]["step_order"] == "weight-then-alpha"
    # Every option, defaults included, is in the config and hence in the run key.
    assert settings["config"]["algorithm_options"] == settings["algorithm"]["options"]


@pytest.mark.parametrize("algorithm", ["lambda-darts", "opp-darts", "darts-2nd"])
def test_resume_is_identical_for_every_algorithm(tmp_path, tiny_arrays, algorithm):
    config = _config(algorithm, epochs=6, every=3) if algorithm == "opp-darts" else _config(
        algorithm, epochs=4, every=2
    )  # fmt: skip
    final = config.train.epochs
    middle = config.train.checkpoint_every
    straight = train_supernet(config, 0, tmp_path / "straight", tiny_arrays, progress=False)
    train_supernet(config, 0, tmp_path / "partial", tiny_arrays, progress=False)
    run = RunStore(tmp_path / "partial", straight.run_key)
    run.checkpoint_path(final).unlink()
    manifest = run.manifest()
    del manifest[run.checkpoint_path(final).name]
    run.manifest_path.write_text(json.dumps(manifest))
    resumed = train_supernet(config, 0, tmp_path / "partial", tiny_arrays, progress=False)
    assert resumed.resumed_from == middle
    a = RunStore(tmp_path / "straight", straight.run_key).load_checkpoint(final)
    b = run.load_checkpoint(final)
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    if algorithm == "opp-darts":
        assert a["algorithm"]["admitted"] == b["algorithm"]["admitted"]


def test_lambda_weight_step_applies_grad_loss_minus_lambda_grad_cosine():
    """One real regularised step: the applied weight gradient is dL/dw - lambda * dC/dw,
    with dC/dw by double backprop (fails if the term is dropped or its sign flipped)."""
    net, x, y = _double_supernet_and_batch()
    params = net.weight_parameters()
    per_cell = per_cell_weights(net).requires_grad_(True)
    loss = F.cross_entropy(net(x, per_cell), y)
    grads = torch.autograd.grad(loss, [per_cell, *params], create_graph=True, allow_unused=True)
    cosine = mean_pairwise_cosine(grads[0].flatten(1))
    grad_cosine = torch.autograd.grad(cosine, params, allow_unused=True)
    lam = 0.5
    expected = [
        (torch.zeros_like(p) if g is None else g.detach())
        - lam * (torch.zeros_like(p) if c is None else c)
        for p, g, c in zip(params, grads[1:], grad_cosine, strict=True)
    ]
    plain_sgd = {"lr": 1.0, "lr_min": 0.0, "momentum": 0.0, "weight_decay": 0.0, "grad_clip": 1e9}
    train = build_config("smoke", {"train": plain_sgd}).train
    algo = get_algorithm("lambda-darts")(net, train, {"epsilon0": 1e-6, "clip_alphas": False})
    algo.current_lambda = lam
    before = [p.detach().clone() for p in params]
    algo.weight_step((x, y))
    applied = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, params, strict=True)])
    wanted = torch.cat([e.flatten() for e in expected])
    regulariser = torch.cat([(c if c is not None else torch.zeros_like(p)).flatten()
                             for p, c in zip(params, grad_cosine, strict=True)])  # fmt: skip
    assert (lam * regulariser).norm() > 1e-3 * wanted.norm()  # the term matters here
    assert (applied - wanted).norm() / wanted.norm() < 1e-5
