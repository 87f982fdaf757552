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
import numbers
import re
from collections.abc import Sequence
from typing import NamedTuple

from harness.errors import HarnessError

INPUTS = 2
STEPS = 4
# (input node, output node) of the 14 edges of a cell, in the reference's order.
CELL_EDGES: tuple[tuple[int, int], ...] = tuple(
    (i, j) for j in range(INPUTS, INPUTS + STEPS) for i in range(j)
)
EDGES_PER_CELL = len(CELL_EDGES)
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


# How a printed genotype looks, for the sentences that refuse one.
SHAPE = ("Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], "
         "reduce=[...], reduce_concat=[2, 3, 4, 5])")  # fmt: skip
# A printed genotype is ~400 characters and nests three deep (call, list, pair): anything
# far beyond is not one, and bounding both keeps the parser's recursion and memory small.
MAX_TEXT = 10_000
MAX_DEPTH = 4
# DARTS's own genotypes.py writes the concat as range(2, 6); no concat is longer than this.
MAX_RANGE = 64


def parse_genotype(text: str) -> Genotype:
    """``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], ...)``, as
    DARTS prints it (``normal_concat=range(2, 6)`` included), back into a :class:`Genotype`.
    The text is read from its syntax tree (literals and ``range``), never evaluated."""
    if not isinstance(text, str):
        raise HarnessError(f"a genotype is text as DARTS prints it, not {_show(text)}")
    if len(text) > MAX_TEXT:
        raise HarnessError(f"a genotype of {len(text)} characters is too long to be one: a "
                           "printed genotype has a few hundred")  # fmt: skip
    try:
        call = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError) as error:
        raise _unreadable(text, getattr(error, "msg", None) or str(error)) from None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
            and call.func.id == "Genotype"):  # fmt: skip
        raise _unreadable(text, "it is not a Genotype(...) call")
    if len(call.args) > len(Genotype._fields):
        raise _unreadable(text, f"{len(call.args)} fields given by position, a Genotype has 4")
    given = list(zip(Genotype._fields, call.args, strict=False))
    given += [(keyword.arg, keyword.value) for keyword in call.keywords]
    fields: dict[str, object] = {}
    for name, node in given:
        if name not in Genotype._fields:
            found = "**-unpacked fields" if name is None else f"a field {name!r}"
            raise _unreadable(text, f"{found}, where a Genotype names only "
                                    f"{', '.join(Genotype._fields)}")  # fmt: skip
        if name in fields:
            raise _unreadable(text, f"field {name} is given twice")
        fields[name] = _literal(node, text)
    absent = [name for name in Genotype._fields if name not in fields]
    if absent:
        raise _unreadable(text, f"{', '.join(absent)} missing")
    return as_genotype(Genotype(**fields))


def as_genotype(value: object) -> Genotype:
    """A genotype from its text or from a ``Genotype`` (this module's or the DARTS code's own
    namedtuple, ``range`` concats included), as plain lists and ints, and checked."""
    if isinstance(value, str):
        return parse_genotype(value)
    if not (isinstance(value, tuple) and getattr(value, "_fields", None) == Genotype._fields):
        raise HarnessError(f"a genotype is text as DARTS prints it or a Genotype, not "
                           f"{_show(value)}")  # fmt: skip
    genotype = Genotype(*value)
    check_genotype(genotype)
    return _shaped(genotype)


def _literal(node: ast.AST, text: str, depth: int = 0) -> object:
    """The value of a literal (strings, numbers, lists, tuples) or of ``range(a[, b[, c]])``
    with whole-number arguments; one sentence for anything else."""
    if depth > MAX_DEPTH:
        raise _unreadable(text, "its lists nest deeper than a genotype's")
    if isinstance(node, ast.Constant):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
            and type(node.operand.value) in (int, float)):  # fmt: skip
        return -node.operand.value
    if isinstance(node, ast.List | ast.Tuple):
        items = [_literal(item, text, depth + 1) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        bounds = [_literal(arg, text, depth + 1) for arg in node.args]
        if node.keywords or not 1 <= len(bounds) <= 3 or not all(_whole(b) for b in bounds):
            raise _unreadable(text, f"{_segment(text, node)} is not range(a, b) with whole "
                                    "numbers a and b")  # fmt: skip
        if bounds[2:] == [0]:
            raise _unreadable(text, f"{_segment(text, node)} has a step of 0")
        span = range(*bounds)
        if span[MAX_RANGE:]:
            raise _unreadable(text, f"{_segment(text, node)} is far longer than a concat")
        return list(span)
    raise _unreadable(text, f"{_segment(text, node)} is neither a literal nor range(a, b)")


def _shaped(genotype: Genotype) -> Genotype:
    """The same genotype with (str, int) tuples for pairs and lists of ints for concats, or
    one sentence on the first field that has another shape."""
    fields = {}
    for kind in ("normal", "reduce"):
        pairs = getattr(genotype, kind)
        if not isinstance(pairs, list | tuple):
            raise HarnessError(f"genotype {kind} must be a list of (op, input) pairs, not "
                               f"{_show(pairs)}")  # fmt: skip
        for pair in pairs:
            if not (isinstance(pair, list | tuple) and len(pair) == 2
                    and isinstance(pair[0], str) and _whole(pair[1])):  # fmt: skip
                raise HarnessError(
                    f"genotype {kind} holds {_show(pair)} where an (op, input) pair belongs: "
                    "an op name and an input node number, e.g. ('sep_conv_3x3', 0)"
                )
        fields[kind] = [(op, int(source)) for op, source in pairs]
        concat = getattr(genotype, f"{kind}_concat")
        if not (isinstance(concat, list | tuple | range) and all(_whole(n) for n in concat)):
            raise HarnessError(f"genotype {kind}_concat must list node numbers, like "
                               f"[2, 3, 4, 5] or range(2, 6), not {_show(concat)}")  # fmt: skip
        fields[f"{kind}_concat"] = [int(n) for n in concat]
    return Genotype(**fields)


def _whole(value: object) -> bool:
    # True and False are ints to Python but no node number (True would read as node 1).
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _show(value: object) -> str:
    """A short repr for a sentence (a huge int's repr raises: its type then)."""
    try:
        shown = repr(value)
    except ValueError:
        return f"a {type(value).__name__}"
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _segment(text: str, node: ast.AST) -> str:
    return _show(ast.get_source_segment(text.strip(), node) or type(node).__name__)


def _unreadable(text: str, reason: str) -> HarnessError:
    # One clause on one line, whatever the parser said (its hints run to several sentences).
    reason = re.split(r"[.;] ", " ".join(str(reason).split()))[0]
    return HarnessError(f"cannot read genotype {_show(text)} ({reason}); write it as DARTS "
                        f"prints it: {SHAPE}")  # fmt: skip


def check_genotype(genotype: Genotype, op_names: Sequence[str] | None = None) -> None:
    """One sentence on what is wrong, if anything: (op, input) pairs and node-number concats,
    two distinct inputs per node, each an earlier node, ops from ``op_names``, the standard
    concatenation."""
    genotype = _shaped(genotype)
    for kind in ("normal", "reduce"):
        pairs = getattr(genotype, kind)
        if len(pairs) != 2 * STEPS:
            raise HarnessError(f"genotype {kind} cell lists {len(pairs)} (op, input) pairs, "
                               f"not {2 * STEPS}")  # fmt: skip
        for step in range(STEPS):
            node = INPUTS + step
            (op_a, a), (op_b, b) = pairs[2 * step], pairs[2 * step + 1]
            if not all(0 <= i < node for i in (a, b)) or a == b:
                raise HarnessError(
                    f"genotype {kind} node {node} takes inputs {_show(a)}, {_show(b)}: it needs "
                    f"two distinct earlier nodes (0..{node - 1})"
                )
            for op in (op_a, op_b):
                if op_names is not None and op not in op_names or op == "none":
                    raise HarnessError(f"genotype {kind} node {node} uses op {_show(op)}, which "
                                       "is not an op of this space")  # fmt: skip
        if getattr(genotype, f"{kind}_concat") != list(CONCAT):
            raise HarnessError(f"genotype {kind}_concat must be {list(CONCAT)}")


def genotype_to_choices(genotype: Genotype, op_names: Sequence[str]) -> tuple[int, ...]:
    """28 op indices (normal cell's 14 edges, then the reduction cell's), ``none`` where a
    node keeps no edge."""
    check_genotype(genotype, op_names)
    genotype = _shaped(genotype)  # ranges and lists as check_genotype read them
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
