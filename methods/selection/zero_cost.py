"""Zero-cost proxies of a network on one batch, as Zero-Cost-PT (zc-pt) computes them.

Both proxies are plain functions of a network (a supernet under a mixing matrix, or a
discrete network) and a batch of images; labels are never read. Higher is better.

``nwot`` -- :func:`naswot_score`, what the reference's ``--proj_crit jacob`` runs (its
``Jocab_Score`` in ``nasbench201/op_score.py`` and ``sota/cnn/init_projection.py``, and
``Scorers/scorer.py``; the name is a leftover of NASWOT's first version, which scored
Jacobian correlations, but the code computes the published NASWOT score, Mellor et al.
ICML 2021). A forward hook on every *unit* module records which of its inputs are positive,
per image (binary code ``c_i``); ``K[i, j]`` sums, over every unit call, the positions where
images i and j agree (both positive or both not: ``c c^T + (1 - c)(1 - c)^T``), and the
score is ``log |det K|`` (``numpy.linalg.slogdet``; ``-inf`` for a singular ``K``).

* ``units="reference"`` hooks what the reference hooks: every module whose type, printed,
  contains ``ReLU`` -- ``nn.ReLU`` *and* the ``ReLUConvBN`` wrappers, whose input is the
  very tensor their inner ReLU sees, so each ReLU-conv-BN counts its input twice. In the
  reference's NAS-Bench-201 cell an op of weight exactly 0 still runs, on its input times
  zero (``block_input``, passed as a keyword the hook never sees): its ``ReLUConvBN`` hook
  sees the real input and its ReLU all zeros, i.e. ``K`` gains the input's kernel plus the
  constant C x H x W (all-zero codes agree everywhere). The harness's cells skip such ops,
  so those two terms are added here for every ReLU-conv-BN of weight 0 (masked or not
  chosen). The reference's DARTS ``MixedOp`` skips them too (``if w != 0``): nothing is
  added there.
* ``units="relu"``: each ``nn.ReLU`` call once, ops of weight 0 add nothing (NASWOT as
  published).

Numerics: the reference sums ``K`` in float32 on the GPU and takes ``slogdet`` in
float32; here every unit's kernel is an exact integer sum, accumulated in float64, so
the two can differ in the last digits of ``log |det K|``. Its hooks swallow any error
(``try: ... except: pass``: a non-contiguous input would be skipped silently); here inputs
are reshaped, so none is skipped. NAS-Bench-201 supernets with fused cells compute their
ReLUs inside fused kernels: :func:`scoring_network` gives the op-by-op equivalent.

``jacob_cov`` -- :func:`jacobian_covariance_score`, zero-cost-nas's ``jacob_cov``
(SamsungLabs/zero-cost-nas ``foresight/pruners/measures/jacob_cov.py``, which the
reference imports): ``J`` = gradient of the summed network output with respect to the
input, one flattened row per image; ``R`` = their correlation matrix (``np.corrcoef``);
score ``-sum_i (log(v_i + k) + 1 / (v_i + k))`` over ``R``'s eigenvalues ``v`` with
``k = 1e-5``. NaN where ``R`` is undefined (an image whose gradient is constant), as the
reference's ``try``/``except`` gives. Eigenvalues come from ``eigvalsh`` (``R`` is
symmetric; the reference's general ``eig`` can return complex round-off).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from harness.errors import HarnessError
from methods.selection.scoring import batch_statistics_only

PROXIES = ("nwot", "jacob_cov")
UNIT_RULES = ("reference", "relu")
JACOB_COV_EPSILON = 1e-5  # ``k`` of zero-cost-nas's eval_score


def hamming_kernel(codes: torch.Tensor) -> torch.Tensor:
    """``K[i, j]``: positions where rows i and j of ``codes`` (images x units, bool) agree.

    With signs ``s = 2c - 1``, ``s s^T`` counts agreements minus disagreements, so
    ``K = (units + s s^T) / 2``. The products are integers below 2**24 for any layer here,
    so float32 sums them exactly; the result is float64 for the running total.
    """
    signs = codes.to(torch.float32) * 2 - 1
    return ((signs @ signs.T).double() + codes.shape[1]) / 2


class _KernelSum:
    """``K`` summed over one forward; kernels of a tensor seen by several units are reused."""

    def __init__(self, size: int, device: torch.device) -> None:
        self.total = torch.zeros(size, size, dtype=torch.float64, device=device)
        self.calls = 0
        # id -> (tensor, version, kernel); the tensor is held so its id cannot be reused
        self._seen: dict[int, tuple[torch.Tensor, int, torch.Tensor]] = {}

    def add(self, x: torch.Tensor) -> None:
        known = self._seen.get(id(x))
        if known is None or known[1] != x._version:
            kernel = hamming_kernel(x.reshape(len(x), -1) > 0)
            known = (x, x._version, kernel)
            self._seen[id(x)] = known
        self.total += known[2]
        self.calls += 1

    def add_inactive(self, x: torch.Tensor) -> None:
        """A unit whose input is all zeros: every image agrees on all ``x[0].numel()``."""
        self.total += x[0].numel()
        self.calls += 1


def _unit_rule(units: str) -> Callable[[nn.Module], bool]:
    if units == "reference":
        return lambda module: "ReLU" in str(type(module))  # the reference's own test
    if units == "relu":
        return lambda module: isinstance(module, nn.ReLU)
    raise ValueError(f"units must be one of {', '.join(UNIT_RULES)}, got {units!r}")


# net -> units rule -> (unit modules, NB201 mixed edges); walking a supernet's modules for
# every candidate cost as much as the forward of a small one
_MODULES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _hooked_modules(net: nn.Module, units: str) -> tuple[list[nn.Module], list[nn.Module]]:
    from spaces.nb201.cells import MixedEdge

    per_rule = _MODULES.setdefault(net, {})
    if units not in per_rule:
        modules = list(net.modules())
        if getattr(net, "cell_impl", "reference") != "reference":
            raise HarnessError(
                "this supernet computes its ReLUs inside fused cells, where no hook sees "
                "them: score scoring_network(net) instead"
            )
        is_unit = _unit_rule(units)
        edges = [m for m in modules if type(m) is MixedEdge] if units == "reference" else []
        per_rule[units] = ([m for m in modules if is_unit(m)], edges)
    return per_rule[units]


def _blocked_ops_hook(kernel: _KernelSum):
    """Pre-hook of an NB201 mixed edge: the units the reference's blocked ops would add."""
    from spaces.nb201.ops import ReLUConvBN

    def hook(edge: nn.Module, args) -> None:
        x, row = args[0], args[1]
        weights = row.detach().tolist()
        for op, weight in zip(edge.ops, weights, strict=True):
            if weight == 0.0 and isinstance(op, ReLUConvBN):
                kernel.add(x)  # the ReLUConvBN hook: its positional input is not zeroed
                kernel.add_inactive(x)  # its ReLU: the input times zero

    return hook


@contextmanager
def scoring_mode(net: nn.Module, bn_mode: str) -> Iterator[None]:
    """``net`` in eval mode, or in train mode with running statistics left alone."""
    if bn_mode not in ("train", "eval"):
        raise ValueError(f"bn_mode must be 'train' or 'eval', got {bn_mode!r}")
    was_training, wanted = net.training, bn_mode == "train"
    if was_training != wanted:  # train() walks every module: only when the mode changes
        net.train(wanted)
    try:
        with batch_statistics_only(net, wanted):
            yield
    finally:
        if was_training != wanted:
            net.train(was_training)


def _forward(net: nn.Module, images: torch.Tensor, weights: torch.Tensor | None):
    return net(images) if weights is None else net(images, weights)


def naswot_score(
    net: nn.Module,
    images: torch.Tensor,
    weights: torch.Tensor | None = None,
    units: str = "reference",
    bn_mode: str = "eval",
) -> float:
    """``log |det K|`` of the units' Hamming kernel on ``images`` (see the module docstring);
    ``weights``: the mixing matrix of a supernet (None: call ``net(images)``)."""
    unit_modules, mixed_edges = _hooked_modules(net, units)
    kernel = _KernelSum(len(images), images.device)

    def hook(module, inputs, output) -> None:
        if inputs:  # the reference reads the first positional input only
            kernel.add(inputs[0])

    handles = [m.register_forward_hook(hook) for m in unit_modules]
    blocked = _blocked_ops_hook(kernel)
    handles += [m.register_forward_pre_hook(blocked) for m in mixed_edges]
    try:
        with torch.no_grad(), scoring_mode(net, bn_mode):
            _forward(net, images, weights)
    finally:
        for handle in handles:
            handle.remove()
    if kernel.calls == 0:
        raise HarnessError(
            f"the nwot proxy found no unit ({units} rule) in {type(net).__name__}: it needs "
            "ReLU modules that the forward calls"
        )
    _, logdet = np.linalg.slogdet(kernel.total.cpu().numpy())
    return float(logdet)


def jacobian_covariance_score(
    net: nn.Module,
    images: torch.Tensor,
    weights: torch.Tensor | None = None,
    bn_mode: str = "eval",
) -> float:
    """zero-cost-nas's ``jacob_cov`` on ``images`` (see the module docstring); NaN where the
    correlation matrix is undefined."""
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad(), scoring_mode(net, bn_mode):
        out = _forward(net, x, weights)
        if not out.requires_grad:  # the output does not depend on the input at all
            return float("nan")
        (grad,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
    if grad is None:
        return float("nan")
    return covariance_score(grad.reshape(len(x), -1).double().cpu().numpy())


def covariance_score(jacobians: np.ndarray) -> float:
    """The ``jacob_cov`` score of per-image Jacobian rows (images x input positions)."""
    with np.errstate(all="ignore"):
        correlations = np.corrcoef(jacobians)
        if not np.isfinite(correlations).all():
            return float("nan")  # the reference's eig raises here and it records NaN
        values = np.linalg.eigvalsh(correlations)
        shifted = values + JACOB_COV_EPSILON
        return float(-np.sum(np.log(shifted) + 1.0 / shifted))


def scoring_network(net: nn.Module) -> nn.Module:
    """``net``'s op-by-op equal (its space's ``op_by_op``: itself unless its cells fuse
    ops), whose ReLU modules run and can be hooked; ``net`` itself for a plain module."""
    op_by_op = getattr(net, "op_by_op", None)
    return net if op_by_op is None else op_by_op()


def proxy_score(
    proxy: str,
    net: nn.Module,
    images: torch.Tensor,
    weights: torch.Tensor | None = None,
    units: str = "reference",
    bn_mode: str = "eval",
) -> float:
    """The proxy named ``proxy`` (one of :data:`PROXIES`)."""
    if proxy == "nwot":
        return naswot_score(net, images, weights, units, bn_mode)
    if proxy == "jacob_cov":
        return jacobian_covariance_score(net, images, weights, bn_mode)
    raise ValueError(f"proxy must be one of {', '.join(PROXIES)}, got {proxy!r}")
