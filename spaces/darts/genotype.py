"""DARTS genotypes: ``Genotype(normal, normal_concat, reduce, reduce_concat)``, printable and
parseable, and their correspondence with per-edge op choices.

A cell has input nodes 0 and 1 (the outputs of the two previous cells) and intermediate
nodes 2..5; node j has an edge from every earlier node, 2 + 3 + 4 + 5 = 14 edges, numbered
in that order (node 2's inputs 0, 1, then node 3's 0, 1, 2, ...). A genotype lists, per
intermediate node, two (op, input) pairs; the cell's output concatenates nodes 2..5.

As *choices* (the :class:`spaces.base.SearchSpace` form) a genotype is one op index per
edge of the normal cell, then of the reduction cell (28 in all), ``none`` on every edge a
node does not keep; each node keeps exactly two edges.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import NamedTuple

from harness.errors import HarnessError

INPUTS = 2
STEPS = 4
# (input node, output node) of the 14 edges of a cell, in the reference's order.
CELL_EDGES: tuple[tuple[int, int], ...] = tuple(
    (i, j) for j in range(INPUTS, INPUTS + STEPS) for i in range(j)
)
CONCAT = tuple(range(INPUTS, INPUTS + STEPS))


class Genotype(NamedTuple):
    normal: list[tuple[str, int]]
    normal_concat: list[int]
    reduce: list[tuple[str, int]]
    reduce_concat: list[int]


# The reference's published genotypes (quark0/darts, cnn/genotypes.py).
DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5],
)  # fmt: skip


def parse_genotype(text: str) -> Genotype:
    """``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], ...)``, as
    DARTS prints it, back into a :class:`Genotype` (read as literals, never evaluated)."""
    try:
        call = ast.parse(text.strip(), mode="eval").body
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Genotype"):
            raise ValueError("not a Genotype(...) call")
        fields = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        fields.update(zip(Genotype._fields, (ast.literal_eval(a) for a in call.args),
                          strict=False))  # fmt: skip
        genotype = Genotype(**{f: fields[f] for f in Genotype._fields})
    except (SyntaxError, ValueError, KeyError, TypeError) as error:
        raise HarnessError(
            f"cannot read genotype {text[:60]!r}... ({error}); write it as DARTS prints it: "
            "Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], "
            "reduce=[...], reduce_concat=[2, 3, 4, 5])"
        ) from None
    check_genotype(genotype)
    return genotype


def check_genotype(genotype: Genotype, op_names: Sequence[str] | None = None) -> None:
    """One sentence on what is wrong, if anything: two distinct inputs per node, each an
    earlier node, ops from ``op_names``, the standard concatenation."""
    for kind in ("normal", "reduce"):
        pairs = getattr(genotype, kind)
        if len(pairs) != 2 * STEPS:
            raise HarnessError(f"genotype {kind} cell lists {len(pairs)} (op, input) pairs, "
                               f"not {2 * STEPS}")  # fmt: skip
        for step in range(STEPS):
            node = INPUTS + step
            (op_a, a), (op_b, b) = pairs[2 * step], pairs[2 * step + 1]
            if not all(isinstance(i, int) and 0 <= i < node for i in (a, b)) or a == b:
                raise HarnessError(
                    f"genotype {kind} node {node} takes inputs {a}, {b}: it needs two distinct "
                    f"earlier nodes (0..{node - 1})"
                )
            for op in (op_a, op_b):
                if op_names is not None and op not in op_names or op == "none":
                    raise HarnessError(f"genotype {kind} node {node} uses op {op!r}, which is "
                                       "not an op of this space")  # fmt: skip
        if list(getattr(genotype, f"{kind}_concat")) != list(CONCAT):
            raise HarnessError(f"genotype {kind}_concat must be {list(CONCAT)}")


def genotype_to_choices(genotype: Genotype, op_names: Sequence[str]) -> tuple[int, ...]:
    """28 op indices (normal cell's 14 edges, then the reduction cell's), ``none`` where a
    node keeps no edge."""
    check_genotype(genotype, op_names)
    none = op_names.index("none")
    choices = []
    for pairs in (genotype.normal, genotype.reduce):
        kept = {}
        for step in range(STEPS):
            for op, source in pairs[2 * step : 2 * step + 2]:
                kept[(source, INPUTS + step)] = op_names.index(op)
        choices += [kept.get(edge, none) for edge in CELL_EDGES]
    return tuple(choices)


def choices_to_genotype(choices: Sequence[int], op_names: Sequence[str]) -> Genotype:
    """The inverse of :func:`genotype_to_choices` (each node must keep exactly two edges)."""
    if len(choices) != 2 * len(CELL_EDGES):
        raise HarnessError(f"a DARTS cell pair has {2 * len(CELL_EDGES)} edges, got "
                           f"{len(choices)} choices")  # fmt: skip
    none = op_names.index("none")
    cells = []
    for offset in (0, len(CELL_EDGES)):
        pairs = []
        for node in range(INPUTS, INPUTS + STEPS):
            kept = [(op_names[choices[offset + e]], i) for e, (i, j) in enumerate(CELL_EDGES)
                    if j == node and choices[offset + e] != none]  # fmt: skip
            if len(kept) != 2:
                kind = "normal" if offset == 0 else "reduce"
                raise HarnessError(f"{kind} node {node} keeps {len(kept)} inputs; DARTS cells "
                                   "keep two per node")  # fmt: skip
            pairs += kept
        cells.append(pairs)
    return Genotype(cells[0], list(CONCAT), cells[1], list(CONCAT))
