"""NAS-Bench-201 cells as arch strings, per-edge op choices and enumeration ordinals.

An arch string looks like ``|nor_conv_3x3~0|+|skip_connect~0|none~1|+|...~0|...~1|...~2|``:
node j (1..3) lists one ``op~i`` term per input node i < j. Edges are numbered in
that reading order: ``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2``.

The benchmark's own index is *not* a formula of the cell (the official files list
cells in their own order), so the index mapping lives with the ground-truth table
(:mod:`harness.ground_truth`); here the ordinal is the base-5 enumeration of choices.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.errors import HarnessError
from spaces.nb201.ops import OP_NAMES

NUM_NODES = 4
EDGES: tuple[tuple[int, int], ...] = tuple(
    (i, j) for j in range(1, NUM_NODES) for i in range(j)
)  # (input node, output node) in arch-string order
EDGE_NAMES: tuple[str, ...] = tuple(f"{j}<-{i}" for i, j in EDGES)
NUM_EDGES = len(EDGES)
NUM_OPS = len(OP_NAMES)
NUM_CELLS = NUM_OPS**NUM_EDGES  # 15,625

Choices = tuple[int, ...]


class ArchStringError(HarnessError):
    """An arch string that is not a NAS-Bench-201 cell."""


def _fail(arch: str, why: str) -> ArchStringError:
    return ArchStringError(
        f"{arch!r} is not a NAS-Bench-201 arch string ({why}); expected the form "
        "'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' with ops from " + ", ".join(OP_NAMES)
    )


def decode(arch: str) -> Choices:
    """Arch string -> op index per edge (in :data:`EDGES` order)."""
    if not isinstance(arch, str):
        raise _fail(str(arch), "not a string")
    nodes = arch.split("+")
    if len(nodes) != NUM_NODES - 1:
        raise _fail(arch, f"{len(nodes)} node groups instead of {NUM_NODES - 1}")
    choices: list[int] = []
    for j, group in enumerate(nodes, start=1):
        if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
            raise _fail(arch, f"node {j} group {group!r} is not enclosed in '|'")
        terms = group[1:-1].split("|")
        if len(terms) != j:
            raise _fail(arch, f"node {j} has {len(terms)} inputs instead of {j}")
        for i, term in enumerate(terms):
            op, sep, source = term.partition("~")
            if not sep or source != str(i):
                raise _fail(arch, f"term {term!r} of node {j} should end in '~{i}'")
            if op not in OP_NAMES:
                raise _fail(arch, f"unknown op {op!r}")
            choices.append(OP_NAMES.index(op))
    return tuple(choices)


def encode(choices: Sequence[int]) -> str:
    """Op index per edge -> arch string."""
    choices = _checked(choices)
    groups = []
    position = 0
    for j in range(1, NUM_NODES):
        terms = []
        for i in range(j):
            terms.append(f"{OP_NAMES[choices[position]]}~{i}")
            position += 1
        groups.append("|" + "|".join(terms) + "|")
    return "+".join(groups)


def to_ordinal(choices: Sequence[int]) -> int:
    """Choices -> position in the base-5 enumeration (edge 0 most significant)."""
    value = 0
    for op in _checked(choices):
        value = value * NUM_OPS + op
    return value


def from_ordinal(ordinal: int) -> Choices:
    if not 0 <= ordinal < NUM_CELLS:
        raise ValueError(f"ordinal {ordinal} outside 0..{NUM_CELLS - 1}")
    digits = []
    for _ in range(NUM_EDGES):
        ordinal, digit = divmod(ordinal, NUM_OPS)
        digits.append(digit)
    return tuple(reversed(digits))


def all_cells() -> list[Choices]:
    return [from_ordinal(n) for n in range(NUM_CELLS)]


def _checked(choices: Sequence[int]) -> Choices:
    out = tuple(int(c) for c in choices)
    if len(out) != NUM_EDGES or any(not 0 <= c < NUM_OPS for c in out):
        raise ValueError(f"expected {NUM_EDGES} op indices in 0..{NUM_OPS - 1}, got {choices!r}")
    return out
