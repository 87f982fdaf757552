"""The report's section for spaces judged by retraining (the DARTS space, RobustDARTS S1-S4,
any registered space without tabular ground truth): each selected genotype with its cell
diagram (the space's ``draw_cell``), size, multiply-adds and retrain accuracies.

Published DARTS-PT S1-S4 test errors (Wang et al., ICLR 2021, Table 3, as entered in
DESIGN.md after checking against the OpenReview version) are shown beside matching rows from
:data:`PUBLISHED_S1_S4`: ``(space, dataset, method) -> (test error %, source)``. A row
matches when its space, dataset and method variant are the entry's, it was searched the way
the paper searched (:data:`PUBLISHED_SEARCH`: the ``darts-paper`` preset with first-order
DARTS, or the fixed-alpha supernet for ``darts-pt[fix-alpha]``) and retrained with the
protocol the paper evaluated with (``paper`` on CIFAR-10, ``robustdarts`` on the others);
every other row shows "—".
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from harness.report.published import canonical_variant
from spaces import SearchSpace, space_named, space_names, space_reading

_TABLE_3 = "DARTS-PT paper (Wang et al., ICLR 2021, OpenReview version), Table 3"
# Test error (%) as magnitude (the table's "DARTS") / +PT / +PT fix-alpha, per space and
# dataset: the numbers of DESIGN.md, which were checked against the paper's Table 3.
_S1_S4_ERRORS = {
    ("darts-s1", "cifar10"): (3.84, 3.50, 2.86),
    ("darts-s2", "cifar10"): (4.85, 2.79, 2.59),
    ("darts-s3", "cifar10"): (3.34, 2.49, 2.52),
    ("darts-s4", "cifar10"): (7.20, 2.64, 2.58),
    ("darts-s1", "cifar100"): (29.46, 24.48, 24.40),
    ("darts-s2", "cifar100"): (26.05, 23.16, 23.30),
    ("darts-s3", "cifar100"): (28.90, 22.03, 21.94),
    ("darts-s4", "cifar100"): (22.85, 20.80, 20.66),
    ("darts-s1", "svhn"): (4.58, 2.62, 2.39),
    ("darts-s2", "svhn"): (3.53, 2.53, 2.32),
    ("darts-s3", "svhn"): (3.41, 2.42, 2.32),
    ("darts-s4", "svhn"): (3.05, 2.42, 2.39),
}
_TABLE_3_METHODS = ("magnitude", "darts-pt", "darts-pt[fix-alpha]")
PUBLISHED_S1_S4: dict[tuple[str, str, str], tuple[float, str]] = {
    (space, dataset, method): (error, _TABLE_3)
    for (space, dataset), errors in _S1_S4_ERRORS.items()
    for method, error in zip(_TABLE_3_METHODS, errors, strict=True)
}
# How the paper searched before selecting: (supernet algorithm, preset) per method variant.
# DARTS-PT's DARTS-space scripts run first-order DARTS for 50 epochs (darts-sota.sh); the
# fix-alpha column trains the supernet with the alphas frozen.
PUBLISHED_PRESET = "darts-paper"
PUBLISHED_SEARCH = {
    "magnitude": "darts", "darts-pt": "darts", "darts-pt[fix-alpha]": "darts-fixed-alpha",
}  # fmt: skip
# The retrain protocol behind the published errors, per dataset (darts-pt issue #2: CIFAR-10
# as DARTS, CIFAR-100 and SVHN as RobustDARTS's appendix C).
PUBLISHED_PROTOCOL = {"cifar10": "retrain-paper", "cifar100": "retrain-robustdarts",
                      "svhn": "retrain-robustdarts"}  # fmt: skip
NOT_RETRAINED = "not-retrained"
CAPTION = (
    "Cells selected at each run's final supernet epoch in spaces without tabular ground "
    "truth, judged by retraining (harness retrain): test accuracy (%) per retrain protocol "
    "(mean over retrain seeds, their count in brackets), parameters of the evaluation "
    "network without its auxiliary head and multiply-adds of one image at the protocol's "
    "resolution (M), the "
    "kept edges' parameter-free and skip_connect ops. Published: DARTS-PT's test error "
    "(%) for the same space, dataset and method, where one is entered."
)


def is_retrain_fidelity(fidelity: pd.Series) -> pd.Series:
    return fidelity.astype(str).str.startswith("retrain-") | (fidelity == NOT_RETRAINED)


def genotype_table(records: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run x method at the final epoch, a column per retrain fidelity.

    ``runs``: the runs table, whose recorded settings say which runs searched the way the
    paper did (only their rows can carry a published error).
    """
    rows = records[is_retrain_fidelity(records["fidelity"])]
    rows = rows[rows["epoch"] == rows["final_epoch"]]
    as_published = _searched_as_published(runs)
    keys = ["space", "algorithm", "preset", "seed", "method", "dataset", "arch",
            "param_free_ops", "skip_ops", "run_key"]  # fmt: skip
    out = []
    for key, group in rows.groupby(keys, sort=True):
        row = dict(zip(keys, key, strict=True))
        searched_alike = row.pop("run_key") in as_published
        retrained = group[group["fidelity"] != NOT_RETRAINED]
        row["params (M)"] = _millions(retrained["params"])
        row["MAdds (M)"] = _millions(retrained["madds"])
        for item in retrained.itertuples():
            row[item.fidelity] = f"{item.accuracy:.2f} ({int(item.retrain_seeds)})"
        row["published error"] = _published_error(row, searched_alike)
        out.append(row)
    return pd.DataFrame(out).fillna("—")


def _searched_as_published(runs: pd.DataFrame) -> set[str]:
    """Run keys whose recorded settings are the paper's search protocol (by values; the
    records label each run with it when the tables are written)."""
    return set(runs.loc[runs["search_protocol"] == PUBLISHED_PRESET, "run_key"])


def _published_error(row: dict, searched_alike: bool) -> str:
    """The paper's error for this row, or "—" unless search and retraining both match."""
    variant = canonical_variant(str(row["method"]))
    published = PUBLISHED_S1_S4.get((row["space"], row["dataset"], variant))
    searched_alike = searched_alike and PUBLISHED_SEARCH.get(variant) == row["algorithm"]
    retrained_alike = PUBLISHED_PROTOCOL.get(row["dataset"]) in row
    if published and searched_alike and retrained_alike:
        return f"{published[0]:.2f} ({published[1]})"
    return "—"


def _millions(values: pd.Series) -> str:
    values = values.dropna()
    return f"{values.iloc[0] / 1e6:.2f}" if len(values) else "—"


def diagram_name(arch: str) -> str:
    return "genotype-" + hashlib.sha256(arch.encode()).hexdigest()[:10]


def write_diagrams(table: pd.DataFrame, figures_dir: Path) -> dict[str, list[Path]]:
    """A PNG and a PDF diagram per distinct genotype, drawn by its space: arch -> [png, pdf]."""
    files = {}
    for arch, group in table.groupby("arch", sort=False):
        first = group.iloc[0]
        title = f"{first['method']} on {first['space']}, seed {first['seed']}"
        name = diagram_name(str(arch))
        space = _drawing_space(str(first["space"]), str(arch))
        files[str(arch)] = [
            space.draw_cell(str(arch), figures_dir / f"{name}.{suffix}", title)
            for suffix in ("png", "pdf")
        ]
    return files


def _drawing_space(label: str, arch: str) -> SearchSpace:
    """The space a row names (its label is the registered name unless settings narrowed
    it), else the first registered space whose codec reads the genotype."""
    return space_named(label) if label in space_names() else space_reading(arch)


def display(table: pd.DataFrame) -> pd.DataFrame:
    """The table as shown: the genotype as a link to its diagram."""
    shown = table.copy()
    shown["cell"] = [f"figures/{diagram_name(a)}.png" for a in shown["arch"]]
    return shown.drop(columns=["arch"])
