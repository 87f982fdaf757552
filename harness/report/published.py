"""Published NAS-Bench-201 test accuracies (%, 200-epoch ground truth) to print beside ours.

Every number belongs to one protocol: (supernet algorithm, protocol preset, selection
method variant, dataset). The report prints it only on the row produced by exactly that
protocol and "—" elsewhere, with a note saying where the number belongs. Numbers and
sources are those of DESIGN.md ("Published reference numbers"); OStr-DARTS's own NB201
numbers are not available here, and guessing one would be worse than leaving it out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DATASETS = ("cifar10", "cifar100", "imagenet16")
NAN = math.nan


@dataclass(frozen=True)
class Published:
    algorithm: str  # supernet algorithm, as registered
    preset: str  # the protocol preset that reproduces the paper's training
    method: str  # selection method variant, as the report names it under that preset
    dataset: str
    accuracy: float
    source: str


def _rows(algorithm, preset, method, accuracies, source) -> list[Published]:
    return [
        Published(algorithm, preset, method, dataset, value, source)
        for dataset, value in zip(DATASETS, accuracies, strict=False)
    ]


_NB201_DARTS = "NAS-Bench-201 paper (xautodl DARTS-V{}, 50 epochs)"
PUBLISHED: tuple[Published, ...] = (
    *_rows("darts", "xautodl", "magnitude", (54.30, 15.61, 16.32), _NB201_DARTS.format(1)),
    *_rows("darts-2nd", "xautodl", "magnitude", (54.30, 15.61, 16.32), _NB201_DARTS.format(2)),
    *_rows("darts", "paper", "darts-pt", (88.11,), "DARTS-PT paper, Table 4 (11.89 % error)"),
    *_rows("darts-fixed-alpha", "paper", "darts-pt[fix-alpha]", (93.80,),
           "DARTS-PT paper, Table 4"),  # fmt: skip
    # Λ-DARTS's NB201 code trains 100 epochs with weight decay 3e-4, as the paper preset.
    *_rows("lambda-darts", "paper", "magnitude", (94.36, 73.51, 46.34),
           "as reported in later papers (cell 9930)"),  # fmt: skip
)
BEST_CELL = (94.37, 73.51, 47.31)  # per column: the benchmark maximum, for every protocol


@dataclass(frozen=True)
class Reference:
    accuracy: tuple[float, float, float]  # in DATASETS order; NaN where not reported
    source: str

    def text(self) -> str:
        return " / ".join("—" if math.isnan(v) else f"{v:.2f}" for v in self.accuracy)


def canonical_variant(method: str) -> str:
    """The report's name of a method variant, with option spellings of named aliases folded."""
    if method.startswith("darts-pt[") and "fix_alpha=True" in method:
        return "darts-pt[fix-alpha]"
    return method


# Every published number is for the whole NAS-Bench-201 space.
PUBLISHED_SPACE = "nb201"


def reference_for(
    algorithm: str,
    preset: str,
    method_name: str,
    method: str,
    upper_bound: bool,
    space: str = PUBLISHED_SPACE,
) -> Reference:
    """The published numbers of the row (algorithm, preset, method variant), if any.

    ``method_name`` is the base name (``darts-pt``), ``method`` the display name with its
    variant (``darts-pt[fix-alpha]``); ``space`` the search space label of the runs.
    """
    if space != PUBLISHED_SPACE:
        # Not even the benchmark maximum: a subset's ceiling is its own best cell.
        return Reference((NAN, NAN, NAN), f"none published for space {space}")
    if upper_bound or method_name == "oracle":
        return Reference(BEST_CELL, "benchmark maximum")
    variant = canonical_variant(method)
    exact = [p for p in PUBLISHED if (p.algorithm, p.preset, p.method) == (algorithm, preset,
                                                                           variant)]  # fmt: skip
    if exact:
        values = {p.dataset: p.accuracy for p in exact}
        return Reference(tuple(values.get(d, NAN) for d in DATASETS), exact[0].source)
    elsewhere = sorted({(p.algorithm, p.preset) for p in PUBLISHED if p.method == variant})
    if elsewhere:
        where = "; ".join(f"{a} with preset {p}" for a, p in elsewhere)
        return Reference((NAN, NAN, NAN), f"published for {variant} on {where} only")
    if method_name == "ostr":
        return Reference((NAN, NAN, NAN), "OStr-DARTS: NB201 numbers not available")
    return Reference((NAN, NAN, NAN), "")
