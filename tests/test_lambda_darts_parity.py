"""Lambda-DARTS against its reference code, over several steps (float64).

The reference is dr-faustus/Lambda-DARTS, NAS-Bench-201 ``exps/algos/DARTS-V1.py``
(``search_func``, run with ``--corr_regularization``) with the regulariser of
``TinyNetworkDartsV1`` (``lib/models/cell_searchs/search_model_darts_v1.py``:
``forward``, ``get_arch_grads``, ``get_perturbations``, ``get_full_grads``).
:class:`ReferenceSearch` below writes its step out from a reading of that code, on the
harness's own supernet with one mixing matrix per searched cell, so that the two differ
only in the update rule. What the transcription keeps of the reference:

* ``w_optimizer.zero_grad()`` clears the weights' gradients only: the alphas keep the
  gradient of the last alpha step, and ``backward`` of the training loss adds to it;
* the per-cell gradients are those of ``alphas.clone()`` per cell (``retain_grad``), the
  perturbation of cell ``l`` is ``P_l @ sum_u / (n(n-1)/2)`` with the projection
  ``P_l = (I - u_l u_l^T) / ||g_l||``, scaled to total norm ``epsilon_0``;
* the first extra pass is at ``w - pert``, the second at ``w + pert``, and
  ``grad += lambda * (first - second) / (2 epsilon)``; both passes run while
  ``lambda`` is still 0 (they are switched on by ``--corr_regularization`` alone);
* ``clip_grad_norm_(network.parameters(), 5)`` (here ``train.grad_clip``, made small so
  that it acts), SGD step, then ``a_optimizer.zero_grad()``, the alpha loss's
  ``backward`` and the Adam step;
* learning rate ``eta_min + (lr - eta_min)(1 + cos(pi e / T)) / 2`` per epoch, and
  ``lambda = lambda_ * e / (epochs - 1)``.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from harness.config import TrainSettings
from harness.errors import HarnessError
from harness.experiment import build_config
from harness.keys import run_key
from methods.supernet import get_algorithm
from spaces.nb201 import NB201Space, NB201Supernet
from tests.batch_norm_state import randomise_batch_norm

EPOCHS, STEPS_PER_EPOCH = 3, 2  # lambda_t = 0, lambda_/2, lambda_
# float64; what is left is rounding (summation order, eps as a Python float in the
# reference, the cosine schedule's recursive form in torch): measured at most 3e-13 (the
# Adam moments), 3e-14 elsewhere. Undoing any one of the three points the module
# docstring lists moves some state by 3e-6 or more.
TOLERANCE = 1e-10
TRAIN = TrainSettings(
    epochs=EPOCHS, lr=0.1, lr_min=0.001, momentum=0.9, weight_decay=3e-4,
    grad_clip=0.2, arch_betas=(0.5, 0.999), arch_weight_decay=1e-3,
)  # fmt: skip
OPTIONS = {"lambda_": 0.5, "epsilon0": 1e-4, "arch_lr": 3e-3}


class ReferenceSearch:
    """The reference's ``search_func`` step, transcribed (see the module docstring)."""

    def __init__(self, net: NB201Supernet, train: TrainSettings, lambda_, epsilon_0, arch_lr):
        self.net, self.train = net, train
        self.lambda_max, self.epsilon_0 = lambda_, epsilon_0
        self.w_optimizer = torch.optim.SGD(
            net.weight_parameters(), train.lr, momentum=train.momentum,
            weight_decay=train.weight_decay, nesterov=train.nesterov,
        )  # fmt: skip
        self.a_optimizer = torch.optim.Adam(
            [net.alphas], lr=arch_lr, betas=train.arch_betas, weight_decay=train.arch_weight_decay
        )
        self.lambda_ = 0.0
        self.clip_norms: list[float] = []
        self.corr: list[float] = []

    def begin_epoch(self, epoch: int) -> None:
        t = self.train
        lr = t.lr_min + (t.lr - t.lr_min) * (1 + math.cos(math.pi * epoch / t.epochs)) / 2
        for group in self.w_optimizer.param_groups:
            group["lr"] = lr
        self.lambda_ = self.lambda_max * epoch / (t.epochs - 1)

    def forward(self, x, pert=None):
        alphas = F.softmax(self.net.alphas, dim=-1)
        self.weights = []
        used = []
        for idx in range(self.net.num_search_cells):
            w = alphas.clone()
            w.retain_grad()
            self.weights.append(w)
            used.append(w if pert is None else w - pert[idx])
        return self.net(x, torch.stack(used))

    def perturbations(self):
        grads = [w.grad.detach().clone().reshape(-1) for w in self.weights]
        n = len(grads)
        with torch.no_grad():
            weight = 1 / ((n * (n - 1)) / 2)
            u = [g / g.norm(p=2.0) for g in grads]
            sum_u = sum(u)
            eye = torch.eye(sum_u.shape[0], dtype=sum_u.dtype)
            projections = [(1 / g.norm(p=2.0)) * (eye - torch.outer(u_l, u_l))
                           for g, u_l in zip(grads, u, strict=True)]  # fmt: skip
            perturbations = [weight * (p @ sum_u).reshape(self.net.alphas.shape)
                             for p in projections]  # fmt: skip
        self.epsilon = self.epsilon_0 / torch.cat(perturbations).norm(p=2.0).item()
        return [self.epsilon * p for p in perturbations]

    def correlation(self) -> float:
        grads = [w.grad.detach().reshape(-1) for w in self.weights]
        values = [(torch.dot(grads[i], grads[j]) / (grads[i].norm() * grads[j].norm())).item()
                  for i in range(len(grads)) for j in range(i + 1, len(grads))]  # fmt: skip
        return sum(values) / len(values)

    def step(self, base, arch) -> None:
        net, params = self.net, self.net.weight_parameters()
        self.w_optimizer.zero_grad()
        F.cross_entropy(self.forward(base[0]), base[1]).backward()
        self.corr.append(self.correlation())
        pert = self.perturbations()
        forward_grads = torch.autograd.grad(
            F.cross_entropy(self.forward(base[0], pert), base[1]), params
        )
        backward_grads = torch.autograd.grad(
            F.cross_entropy(self.forward(base[0], [-p for p in pert]), base[1]), params
        )
        for param, f, b in zip(params, forward_grads, backward_grads, strict=True):
            param.grad.add_(self.lambda_ * (f - b).div_(2 * self.epsilon))
        norm = torch.nn.utils.clip_grad_norm_(list(net.parameters()), self.train.grad_clip)
        self.clip_norms.append(norm.item())
        self.w_optimizer.step()
        self.a_optimizer.zero_grad()
        F.cross_entropy(self.forward(arch[0]), arch[1]).backward()
        self.a_optimizer.step()


def _start():
    torch.manual_seed(0)
    net = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1, num_classes=4).double()
    randomise_batch_norm(net)
    with torch.no_grad():
        net.alphas.normal_(0, 0.5)
    batches = [
        tuple((torch.randn(8, 3, 8, 8, dtype=torch.float64), torch.randint(0, 4, (8,)))
              for _ in range(2))
        for _ in range(EPOCHS * STEPS_PER_EPOCH)
    ]  # fmt: skip
    return net, batches


def _largest_differences(harness, algorithm, reference, ref_net):
    """Largest absolute difference per kind of state."""
    out = dict.fromkeys(("weights", "alphas", "bn_stats", "bn_batches", "optimizers"), 0.0)
    a, b = harness.state_dict(), ref_net.state_dict()
    for name in a:
        kind = ("alphas" if name == "alphas" else
                "bn_stats" if "running" in name else
                "bn_batches" if "batches_tracked" in name else
                "weights" if name in dict(harness.named_parameters()) else None)  # fmt: skip
        if kind is not None:
            diff = (a[name].double() - b[name].double()).abs().max().item()
            out[kind] = max(out[kind], diff)
    pairs = ((algorithm.weight_optimizer, reference.w_optimizer),
             (algorithm.arch_optimizer, reference.a_optimizer))  # fmt: skip
    for ours, theirs in pairs:
        s, t = ours.state_dict(), theirs.state_dict()
        assert s["state"].keys() == t["state"].keys()
        for index, state in s["state"].items():
            for key, value in state.items():
                ours_value = torch.as_tensor(value, dtype=torch.float64)
                theirs_value = torch.as_tensor(t["state"][index][key], dtype=torch.float64)
                diff = (ours_value - theirs_value).abs().max().item()
                out["optimizers"] = max(out["optimizers"], diff)
    # What the next clip counts: the gradient the last alpha step left on the alphas.
    out["alpha_grad"] = (harness.alphas.grad - ref_net.alphas.grad).abs().max().item()
    return out


def run_both(options=None):
    """Train the harness's lambda-darts and the transcribed reference side by side."""
    options = {**OPTIONS, **(options or {})}
    net, batches = _start()
    ref_net = copy.deepcopy(net)
    algorithm = get_algorithm("lambda-darts")(net, TRAIN, options)
    reference = ReferenceSearch(
        ref_net, TRAIN, options["lambda_"], options["epsilon0"], options["arch_lr"]
    )
    cosines = []
    net.train()
    ref_net.train()
    for epoch in range(EPOCHS):
        lam = algorithm.begin_epoch(epoch, None, None)["lambda"]
        reference.begin_epoch(epoch)
        assert lam == pytest.approx(reference.lambda_, abs=1e-15)
        lr = algorithm.weight_optimizer.param_groups[0]["lr"]
        assert lr == pytest.approx(reference.w_optimizer.param_groups[0]["lr"], abs=1e-15)
        for k in range(STEPS_PER_EPOCH):
            base, arch = batches[epoch * STEPS_PER_EPOCH + k]
            algorithm.step(base, arch)
            reference.step(base, arch)
        cosines.append(algorithm.end_epoch(epoch)["cell_grad_cosine"])
    ref_cosines = [sum(reference.corr[i : i + STEPS_PER_EPOCH]) / STEPS_PER_EPOCH
                   for i in range(0, len(reference.corr), STEPS_PER_EPOCH)]  # fmt: skip
    differences = _largest_differences(net, algorithm, reference, ref_net)
    differences["cell_grad_cosine"] = max(
        abs(a - b) for a, b in zip(cosines, ref_cosines, strict=True)
    )
    # Eval-mode outputs use the running statistics.
    net.eval()
    ref_net.eval()
    with torch.no_grad():
        x = batches[0][0][0]
        differences["eval_logits"] = (net(x) - ref_net(x)).abs().max().item()
    return differences, reference


def test_lambda_darts_follows_the_reference_over_several_steps():
    differences, reference = run_both()
    # The setting exercises what differed before: the clip acts at every step (so the
    # alphas' gradient counts), lambda_t is 0 through the first epoch (passes that only
    # move BN statistics), and the statistics are tracked (pass order).
    assert len(reference.clip_norms) == EPOCHS * STEPS_PER_EPOCH >= 3
    assert min(reference.clip_norms) > TRAIN.grad_clip
    print({k: f"{v:.2e}" for k, v in differences.items()})
    for kind, diff in differences.items():
        assert diff <= TOLERANCE, (kind, diff)


def test_lambda_darts_clip_over_weights_only_is_not_the_reference():
    """The recorded choice clip_alphas=false does differ (so the test above can see it)."""
    differences, _ = run_both({"clip_alphas": False})
    assert differences["weights"] > 1e3 * TOLERANCE


def test_numerics_revision_is_in_the_run_key_and_only_the_current_one_is_computed():
    config = build_config("smoke", algorithm="lambda-darts")
    assert config.algorithm_options["numerics_revision"] == 2
    # The options as recorded before the revision existed (revision 1's numerics).
    before = {k: v for k, v in config.algorithm_options.items() if k != "numerics_revision"}
    old = dataclasses.replace(config, algorithm_options=before)
    assert run_key(config, 0, "data") != run_key(old, 0, "data")
    with pytest.raises(HarnessError, match="numerics revision 2 only"):
        build_config("smoke", algorithm="lambda-darts",
                     algorithm_options={"numerics_revision": 1})  # fmt: skip


def test_checkpoint_keeps_the_alpha_gradient_the_next_clip_counts():
    net, batches = _start()
    algorithm = get_algorithm("lambda-darts")(net, TRAIN, OPTIONS)
    algorithm.begin_epoch(0, None, None)
    algorithm.step(*batches[0])
    state = copy.deepcopy(algorithm.state_dict())  # as if saved and loaded
    resumed_net = copy.deepcopy(net)
    resumed_net.alphas.grad = None
    resumed = get_algorithm("lambda-darts")(resumed_net, TRAIN, OPTIONS)
    resumed.load_state_dict(state)
    resumed.current_lambda = algorithm.current_lambda
    algorithm.step(*batches[1])
    resumed.step(*batches[1])
    for (name, a), b in zip(net.state_dict().items(), resumed_net.state_dict().values(),
                            strict=True):  # fmt: skip
        assert torch.equal(a, b), name
