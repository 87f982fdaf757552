"""Names of the official NAS-Bench-201 search model, xautodl's ``TinyNetworkDarts``.

The harness's NB201 supernet computes what xautodl's search model computes (parity tested
in ``tests/test_official_parity.py`` when xautodl is installed); only the parameter names
differ. This module maps a harness ``state_dict`` to xautodl's names and back, so that one
set of weights can be loaded into both (the parity tests, ``benchmarks/official_parity.py``
on a user's checkpoint). It does not import xautodl.

Differences in names: xautodl keys an edge by ``"j<-i"`` (``cells.0.edges.1<-0.3...``)
where the harness uses the edge's position (``cells.0.edges.0.ops.3...``) — both in the
arch-string order ``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2`` —, and calls the alphas
``arch_parameters``. The harness's ``active_ops`` buffer (OPP-DARTS's admitted ops) has no
counterpart: an xautodl model computes every op.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from spaces.nb201.codec import EDGE_NAMES

_HARNESS_EDGE = re.compile(r"^(cells\.\d+\.edges\.)(\d+)\.ops\.(\d+)\.(.+)$")
_OFFICIAL_EDGE = re.compile(r"^(cells\.\d+\.edges\.)(\d<-\d)\.(\d+)\.(.+)$")
HARNESS_ONLY = ("active_ops",)


def to_xautodl(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A harness NB201 supernet's ``state_dict`` under ``TinyNetworkDarts``'s names."""
    out = {}
    for name, value in state.items():
        if name in HARNESS_ONLY:
            continue
        if name == "alphas":
            out["arch_parameters"] = value
        elif match := _HARNESS_EDGE.match(name):
            prefix, edge, op, rest = match.groups()
            out[f"{prefix}{EDGE_NAMES[int(edge)]}.{op}.{rest}"] = value
        else:
            out[name] = value
    return out


def from_xautodl(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``TinyNetworkDarts``'s ``state_dict`` under the harness's names (no ``active_ops``:
    load it with ``strict=False`` and keep the supernet's own)."""
    out = {}
    for name, value in state.items():
        if name == "arch_parameters":
            out["alphas"] = value
        elif match := _OFFICIAL_EDGE.match(name):
            prefix, edge, op, rest = match.groups()
            out[f"{prefix}{EDGE_NAMES.index(edge)}.ops.{op}.{rest}"] = value
        else:
            out[name] = value
    return out
