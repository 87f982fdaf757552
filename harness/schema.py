"""The tables a store's results are written as, declared once.

:mod:`harness.records` writes them with these columns in this order; :mod:`harness.report.load`
reads them, requiring what every version wrote and filling what later versions added.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TableSchema:
    file: str
    columns: tuple[str, ...]  # as written, in this order
    # Columns tables written by an earlier version lack, with the value such a table gets
    # when read (NaN / "": not recorded; the report prints n/a rather than guessing).
    filled: Mapping[str, object] = field(default_factory=dict)
    # Columns read when present, never required (tables from the first versions lack them).
    optional: tuple[str, ...] = ()

    @property
    def required(self) -> tuple[str, ...]:
        """What a table must hold to be read."""
        later = {*self.filled, *self.optional, "space"}
        return tuple(c for c in self.columns if c not in later)


# Tables written before search spaces were a setting hold full NAS-Bench-201 runs only.
SPACE_BEFORE_IT_WAS_RECORDED = "nb201"

IDENTITY = ("config_key", "preset", "space", "algorithm", "run_key", "seed", "final_epoch")
ROW = (*IDENTITY, "epoch", "method", "method_name", "method_key", "upper_bound", "arch")
COSTS = ("wall_seconds", "forward_passes", "backward_passes", "finetune_steps")
# Retrained cells (spaces without a tabular benchmark): the evaluation network's size and
# how many retrain seeds the accuracy averages.
RETRAINED = ("params", "madds", "retrain_seeds")

RECORDS = TableSchema(
    "records.parquet",
    (*ROW, "benchmark_index", "dataset", "metric", "fidelity", "accuracy", "param_free_ops",
     "skip_ops",
     # True when the selected cell's input never reaches its output (NAS-Bench-201 scores
     # such a cell at chance); False in spaces whose cells always connect.
     "disconnected",
     *COSTS, *RETRAINED),
    filled={"disconnected": math.nan},
    optional=("benchmark_index", *COSTS, *RETRAINED),
)  # fmt: skip
SELECTIONS = TableSchema(
    "selections.parquet",
    (*ROW, "scores", "alphas", "gt_importance", "edge_order", *COSTS),
    optional=("edge_order", "backward_passes", "finetune_steps"),
)
RUNS = TableSchema(
    "runs.parquet",
    (*IDENTITY[:-1], "epochs", "train_seconds", "final_valid_acc", "settings", "platform",
     # The published protocol whose values the run's settings have (presets.py names them),
     # and the one whose search it follows in its own space and data set; "" for none.
     "protocol", "search_protocol"),
    filled={"protocol": "", "search_protocol": ""},
    optional=("final_valid_acc", "platform"),
)  # fmt: skip
MIXING = TableSchema(
    "mixing_weights.parquet",  # optional: results written before it existed lack it
    (*IDENTITY, "epoch", "edge", "op", "weight"),
    optional=("final_epoch",),
)
TABLES = {"records": RECORDS, "selections": SELECTIONS, "runs": RUNS, "mixing_weights": MIXING}
