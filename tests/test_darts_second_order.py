"""The second-order DARTS alpha gradient against a direct finite-difference check."""

import pytest
import torch
import torch.nn.functional as F

from methods.supernet.darts import unrolled_alpha_gradient
from spaces.nb201 import BatchNormSettings, NB201Space, NB201Supernet


def _unrolled_validation_loss(
    supernet, alphas, weight_batch, alpha_batch, eta, momentum=0.0, buffers=None, decay=0.0
):
    """L_val(w - eta * (momentum * buf + grad_w L_train(w, alpha) + decay * w), alpha)."""
    params = supernet.weight_parameters()
    original = [p.detach().clone() for p in params]
    with torch.no_grad():
        supernet.alphas.copy_(alphas)
    with torch.enable_grad():
        grads = torch.autograd.grad(
            F.cross_entropy(supernet(weight_batch[0]), weight_batch[1]), params
        )
    with torch.no_grad():
        for p, g, buf in zip(params, grads, buffers or [None] * len(params), strict=True):
            step = g + decay * p
            if buf is not None:
                step = step + momentum * buf
            p.sub_(eta * step)
        loss = F.cross_entropy(supernet(alpha_batch[0]), alpha_batch[1]).item()
        for p, w in zip(params, original, strict=True):
            p.copy_(w)
    return loss


# Far below DARTS's 0.01 (float64): the test checks the formula, not its approximation,
# which with momentum's larger virtual step is visibly coarse at 1e-4.
RADIUS = 1e-6


@pytest.mark.parametrize(
    ("momentum", "decay"), [(0.0, 0.0), (0.9, 0.05)], ids=["plain", "momentum+decay"]
)
def test_unrolled_gradient_matches_finite_differences(momentum, decay):
    torch.manual_seed(0)
    supernet = NB201Supernet(
        space=NB201Space(),
        channels=3, cells_per_stage=1, num_classes=4, cell_bn=BatchNormSettings(False, False)
    ).double()
    with torch.no_grad():
        supernet.alphas.normal_(0, 0.5)
    weight_batch = (torch.randn(8, 3, 6, 6, dtype=torch.float64), torch.randint(0, 4, (8,)))
    alpha_batch = (torch.randn(8, 3, 6, 6, dtype=torch.float64), torch.randint(0, 4, (8,)))
    eta = 0.1
    # Momentum buffers as a weight optimiser would hold them (None: no momentum yet).
    params = supernet.weight_parameters()
    buffers = [torch.randn_like(p) for p in params] if momentum else None
    before = [p.detach().clone() for p in supernet.parameters()]

    analytic = unrolled_alpha_gradient(
        supernet, weight_batch, alpha_batch, eta=eta, momentum=momentum,
        momentum_buffers=buffers, weight_decay=decay, hessian_radius=RADIUS,
    )  # fmt: skip
    for p, b in zip(supernet.parameters(), before, strict=True):
        assert torch.equal(p, b), "the unrolled step must restore the weights"

    base = supernet.alphas.detach().clone()
    numeric = torch.zeros_like(base)
    # Small step: ReLU kinks lie within 1e-5 of this point for some entries.
    h = 1e-6
    for index in range(base.numel()):
        delta = torch.zeros_like(base).view(-1)
        delta[index] = h
        delta = delta.view_as(base)
        plus, minus = (
            _unrolled_validation_loss(supernet, base + sign * delta, weight_batch, alpha_batch,
                                      eta, momentum, buffers, decay)
            for sign in (1.0, -1.0)
        )  # fmt: skip
        numeric.view(-1)[index] = (plus - minus) / (2 * h)
    with torch.no_grad():
        supernet.alphas.copy_(base)

    torch.testing.assert_close(analytic, numeric, rtol=1e-4, atol=1e-7)
    # The implicit (Hessian) term matters here: first order alone is measurably off.
    first_order = torch.autograd.grad(
        F.cross_entropy(supernet(alpha_batch[0]), alpha_batch[1]), [supernet.alphas]
    )[0]
    assert not torch.allclose(first_order, numeric, rtol=1e-2, atol=1e-5)
    if momentum:
        # The momentum and decay terms move the point where L_val is read: leaving them out
        # of the virtual step gives a measurably different gradient.
        without = unrolled_alpha_gradient(
            supernet, weight_batch, alpha_batch, eta=eta, hessian_radius=RADIUS
        )
        assert not torch.allclose(without, numeric, rtol=1e-3, atol=1e-6)
