"""Names of xautodl's DARTS-space search model (``NASNetworkDARTS``) for the harness's
DARTS search supernet.

Both follow DARTS's search network, but xautodl's differs in four places, which a parity
check has to hold fixed (``tests/test_official_parity.py``):

* its op list is ordered ``none, skip_connect, dua_sepc_3x3, dua_sepc_5x5, dil_sepc_3x3,
  dil_sepc_5x5, avg_pool_3x3, max_pool_3x3`` (DARTS's names: sep_conv_*, dil_conv_*) and
  its alphas are two matrices, ``arch_normal_parameters`` and ``arch_reduce_parameters``;
* its pooling ops have no BatchNorm after them (DARTS's ``MixedOp`` adds an affine-free
  one, as the harness does): the two agree only where the pools weigh zero;
* its convolutions before affine-free BatchNorm carry a bias (``bias=not affine``);
  DARTS's have none: the mapped model gets zero biases;
* its head is BatchNorm -> ReLU -> pooling -> linear; DARTS's is pooling -> linear.

:func:`to_xautodl` maps a harness ``state_dict`` (the full DARTS space only) to xautodl's
names, leaving out the pools' BatchNorm state (no counterpart) and adding zero biases for
the convolutions that have one there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from spaces.darts.genotype import CELL_EDGES, EDGES_PER_CELL, INPUTS
from spaces.darts.ops import OP_NAMES

XAUTODL_OP_NAMES = (
    "none", "skip_connect", "dua_sepc_3x3", "dua_sepc_5x5", "dil_sepc_3x3", "dil_sepc_5x5",
    "avg_pool_3x3", "max_pool_3x3",
)  # fmt: skip
# xautodl's op name -> DARTS's (the harness's)
DARTS_NAME = {
    "dua_sepc_3x3": "sep_conv_3x3", "dua_sepc_5x5": "sep_conv_5x5",
    "dil_sepc_3x3": "dil_conv_3x3", "dil_sepc_5x5": "dil_conv_5x5",
}  # fmt: skip
# column k of xautodl's alphas is column XAUTODL_COLUMNS[k] of the harness's
XAUTODL_COLUMNS = tuple(OP_NAMES.index(DARTS_NAME.get(name, name)) for name in XAUTODL_OP_NAMES)

_EDGE = re.compile(r"^(cells\.\d+)\.edges\.(\d+)\.ops\.(\d+)\.(.+)$")
_PREPROCESS = re.compile(r"^(cells\.\d+\.preprocess[01])\.(.+)$")
_REDUCE = {"conv_1": "convs.0", "conv_2": "convs.1", "bn": "bn"}


def edge_key(edge: int) -> str:
    """xautodl's key of a cell edge: ``"{node - 2}<-{input}"``."""
    source, node = CELL_EDGES[edge]
    return f"{node - INPUTS}<-{source}"


def _reduce_name(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{_REDUCE[head]}.{tail}"


def _op_name(op: str, rest: str) -> str | None:
    """xautodl's name of parameter ``rest`` of op ``op`` (None: it has no counterpart)."""
    if op.startswith("sep_conv_"):
        index, _, tail = rest.partition(".")
        half, position = ("op_a", int(index)) if int(index) < 4 else ("op_b", int(index) - 4)
        return f"{half}.op.{position}.{tail}"
    if op.startswith("dil_conv_"):
        return f"op.{rest}"
    if op == "skip_connect":
        return _reduce_name(rest)  # stride 2: the factorized reduce (stride 1 has none)
    return None  # the BatchNorm after a pool


def to_xautodl(state: Mapping[str, torch.Tensor], op_names=OP_NAMES) -> dict[str, torch.Tensor]:
    """A harness DARTS supernet's ``state_dict`` under ``NASNetworkDARTS``'s names."""
    if tuple(op_names) != OP_NAMES:
        raise ValueError("xautodl's DARTS search model has the full DARTS op set only")
    out: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if name == "active_ops":
            continue
        if name == "alphas":
            columns = list(XAUTODL_COLUMNS)
            out["arch_normal_parameters"] = value[:EDGES_PER_CELL, columns]
            out["arch_reduce_parameters"] = value[EDGES_PER_CELL:, columns]
        elif match := _EDGE.match(name):
            cell, edge, op, rest = match.groups()
            mapped = _op_name(OP_NAMES[int(op)], rest)
            if mapped is not None:
                xk = XAUTODL_COLUMNS.index(int(op))
                out[f"{cell}.edges.{edge_key(int(edge))}._ops.{xk}.{mapped}"] = value
        elif match := _PREPROCESS.match(name):
            prefix, rest = match.groups()
            head = rest.partition(".")[0]
            out[f"{prefix}.{_reduce_name(rest) if head in _REDUCE else 'op.' + rest}"] = value
        else:
            out[name] = value
    return out


def with_zero_biases(
    mapped: Mapping[str, torch.Tensor], official: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``mapped`` completed with zeros for every convolution bias the official model has and
    DARTS's lacks; anything else missing is left missing (the caller sees it)."""
    out = dict(mapped)
    for name, value in official.items():
        if name not in out and name.endswith(".bias") and ("conv" in name or ".op." in name):
            out[name] = torch.zeros_like(value)
    return out
