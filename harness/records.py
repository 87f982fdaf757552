"""Tidy tables of everything in the store, joined with the ground truth.

``records.parquet``: one row per seed x checkpoint epoch x method x dataset x metric x
fidelity. ``selections.parquet``: one row per seed x epoch x method, with the method's
scores, the checkpoint's alphas and the ground-truth importance of every op on every
edge around the selected cell (for rank correlations). ``runs.parquet``: one row per
supernet run. ``mixing_weights.parquet``: one row per run x epoch x edge x op with the
softmax weight its ``metrics.csv`` recorded. They are rebuilt from the store's files, so
they never disagree with it.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from harness.config import SpaceSettings, config_key, hash_settings
from harness.errors import HarnessError
from harness.ground_truth import COLUMN_PATTERN, GroundTruth
from harness.locks import job_lock, lock_path
from harness.selecting import read_selection
from harness.store import atomic_write_bytes, read_json
from spaces.base import SearchSpace

log = logging.getLogger(__name__)

TABLES = ("records", "selections", "runs", "mixing_weights")
WEIGHT_COLUMN = re.compile(r"^w\[(?P<edge>[^\]]+)\]\[(?P<op>[^\]]+)\]$")


def write_tables(results_dir: Path, truth: GroundTruth | None) -> dict[str, pd.DataFrame]:
    # Read and written under one lock: the last process to write has read everything that
    # any process had stored before it, so concurrent runs end with complete tables.
    with job_lock(lock_path(results_dir, "tables"), "writing the tables"):
        tables = collect_tables(results_dir, truth)
        for name, frame in tables.items():
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False, write_page_checksum=True)
            atomic_write_bytes(results_dir / f"{name}.parquet", buffer.getvalue())
    return tables


def collect_tables(results_dir: Path, truth: GroundTruth | None) -> dict[str, pd.DataFrame]:
    """The tables; ``truth`` may be None while no selection needs a table lookup."""
    runs, selections, records, mixing = [], [], [], []
    alpha_cache: dict[Path, list] = {}
    retrained = _retrained_by_genotype(results_dir)
    for run_dir in sorted(p for p in (results_dir / "runs").glob("*") if p.is_dir()):
        settings = read_json(run_dir / "settings.json")
        if not isinstance(settings, dict):
            if any(run_dir.glob("checkpoints/*.pt")):
                log.warning("%s is missing or damaged, so run %s is left out of the tables: "
                            "re-run harness run with its settings to rebuild it",
                            run_dir / "settings.json", run_dir.name)  # fmt: skip
            continue
        identity = _run_identity(settings)
        space = SpaceSettings(**settings["config"]["space"]).search_space()
        truth_here = truth if space.benchmark == BENCHMARK else None
        metrics = _read_metrics(run_dir / "metrics.csv")
        runs.append({**identity, **_run_summary(metrics, settings)})
        mixing.append(_mixing_weights(identity, metrics))
        for path in sorted(run_dir.glob("selections/epoch_*/*.json")):
            raw = read_selection(path)
            if raw is None:
                log.warning("%s is damaged and left out of the tables: re-run harness run "
                            "with that method to compute it again", path)  # fmt: skip
                continue
            selection = raw["selection"]
            checkpoint = run_dir / "checkpoints" / f"epoch_{raw['epoch']:04d}.pt"
            if "alphas" in raw:
                alpha_cache[checkpoint] = raw["alphas"]
            elif checkpoint not in alpha_cache:  # stored before selections kept alphas
                alpha_cache[checkpoint] = _checkpoint_alphas(checkpoint, space)
            row = {
                **identity,
                "epoch": raw["epoch"],
                "method": selection["method"],
                "method_name": selection["settings"]["method"],
                "method_key": hash_settings(selection["settings"]),
                "upper_bound": selection["upper_bound"],
                "arch": selection["arch"],
                **{k: selection["cost"][k] for k in _COSTS},
            }
            selections.append(
                {
                    **row,
                    "scores": json.dumps(selection["scores"]),
                    "alphas": json.dumps(alpha_cache[checkpoint]),
                    "gt_importance": json.dumps(
                        _neighbour_accuracies(selection["arch"], space, truth_here)
                    ),
                    "edge_order": json.dumps(selection["edge_order"]),
                }
            )
            if space.benchmark is None:
                dataset = settings["config"]["data"].get("dataset", "cifar10")
                records.extend(_retrain_rows(row, space, retrained, dataset))
            elif truth is None:
                raise HarnessError(
                    f"{results_dir} holds selections in space {space.name}, whose tables need "
                    "the NAS-Bench-201 ground truth: pass --ground-truth PATH (or set "
                    "HARNESS_GROUND_TRUTH); everything computed so far is kept"
                )
            else:
                records.extend(_accuracy_rows(row, space, truth))
    return {
        "records": _frame(records, _RECORD_COLUMNS),
        "selections": _frame(selections, _SELECTION_COLUMNS),
        "runs": _frame(runs, _RUN_COLUMNS),
        "mixing_weights": (
            pd.concat(mixing, ignore_index=True) if mixing else _frame([], _MIXING_COLUMNS)
        ),
    }


_COSTS = ("wall_seconds", "forward_passes", "backward_passes", "finetune_steps")
_IDENTITY = ("config_key", "preset", "space", "algorithm", "run_key", "seed", "final_epoch")
# The ground truth every table is joined with (harness.ground_truth).
BENCHMARK = "nas-bench-201"
_ROW = (*_IDENTITY, "epoch", "method", "method_name", "method_key", "upper_bound", "arch")
_RECORD_COLUMNS = (
    *_ROW,
    "benchmark_index",
    "dataset",
    "metric",
    "fidelity",
    "accuracy",
    "param_free_ops",
    "skip_ops",
    # True when the selected cell's input never reaches its output (NAS-Bench-201 scores such
    # a cell at chance); False in spaces whose cells always connect. Tables written before
    # this column existed lack it: harness.report.load fills it as unknown.
    "disconnected",
    *_COSTS,
    # Retrained cells (spaces without a tabular benchmark): the evaluation network's size
    # and how many retrain seeds the accuracy averages.
    "params",
    "madds",
    "retrain_seeds",
)
_SELECTION_COLUMNS = (*_ROW, "scores", "alphas", "gt_importance", "edge_order", *_COSTS)
_RUN_COLUMNS = (*_IDENTITY[:-1], "epochs", "train_seconds", "final_valid_acc", "settings",
                "platform")  # fmt: skip
_MIXING_COLUMNS = (*_IDENTITY, "epoch", "edge", "op", "weight")


def _frame(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns))


def _run_identity(settings: dict[str, Any]) -> dict[str, Any]:
    config = settings["config"]
    return {
        "config_key": config_key(config, settings["data_fingerprint"]),
        "preset": config["preset"],
        "space": SpaceSettings(**config["space"]).search_space().label,
        "algorithm": config["algorithm"],
        "run_key": settings["run_key"],
        "seed": settings["seed"],
        "final_epoch": config["train"]["epochs"],
    }


def _mixing_weights(identity: dict[str, Any], metrics: pd.DataFrame) -> pd.DataFrame:
    """The softmax weights ``metrics.csv`` recorded after every epoch, one row per value."""
    columns = {c: WEIGHT_COLUMN.match(c) for c in metrics.columns}
    columns = {c: m for c, m in columns.items() if m}
    if not columns or metrics.empty:
        return _frame([], _MIXING_COLUMNS)
    long = metrics.melt(id_vars=["epoch"], value_vars=list(columns), value_name="weight")
    long["edge"] = long["variable"].map(lambda c: columns[c]["edge"])
    long["op"] = long["variable"].map(lambda c: columns[c]["op"])
    for name, value in identity.items():
        long[name] = value
    return long[list(_MIXING_COLUMNS)]


def _read_metrics(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame()
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        frame = pd.DataFrame()
    if "epoch" not in frame.columns:
        log.warning("%s is damaged: re-run harness run to rebuild it from the checkpoints", path)
        return pd.DataFrame()
    return frame


def _run_summary(metrics: pd.DataFrame, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "epochs": int(metrics["epoch"].max()) if len(metrics) else 0,
        "train_seconds": float(metrics["seconds"].sum()) if len(metrics) else math.nan,
        "final_valid_acc": float(metrics["valid_acc"].iloc[-1]) if len(metrics) else math.nan,
        # The CPU kernels and torch build each epoch ran with ("" before it was recorded).
        "platform": "; ".join(sorted(metrics["platform"].dropna().astype(str).unique()))
        if "platform" in metrics.columns else "",
        "settings": json.dumps(settings, sort_keys=True),
    }


def _checkpoint_alphas(path: Path, space: SearchSpace) -> list[list[float]]:
    if not path.exists():
        return space.empty_scores().tolist()
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state["model"]["alphas"].double().tolist()


def _neighbour_accuracies(
    arch: str, space: SearchSpace, truth: GroundTruth | None
) -> list[list[float]]:
    """[e][k]: CIFAR-10 test (200 epochs) accuracy of ``arch`` with edge e set to op k
    (NaN where op k is not a candidate of edge e, or without ground truth)."""
    values = space.empty_scores()
    if truth is None:
        return values.tolist()
    column = truth.column("cifar10", "test", 200)
    choices = list(space.decode(arch))
    for edge, candidates in enumerate(space.candidates):
        for op in candidates:
            variant = list(choices)
            variant[edge] = op
            neighbour = space.encode(variant)
            if neighbour in truth:
                values[edge, op] = truth.lookup_many([neighbour], column)[0]
    return values.tolist()


def _retrained_by_genotype(results_dir: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    from harness.retraining import stored_results

    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in stored_results(results_dir):
        found.setdefault((result["genotype"], result["dataset"]), []).append(result)
    return found


def _kept_ops(arch: str, space: SearchSpace) -> list[str]:
    """The cell's ops; in a space that prunes inputs, only the kept edges'."""
    ops = [space.op_names[k] for k in space.decode(arch)]
    return ops if space.topology == "every-edge" else [op for op in ops if op != "none"]


def _disconnected(arch: str, space: SearchSpace) -> bool:
    return not space.output_reachable(space.decode(arch))


def _retrain_rows(
    row: dict[str, Any], space: SearchSpace, retrained: dict, dataset: str
) -> list[dict[str, Any]]:
    """One row per retrain fidelity of the selected genotype (accuracy: the mean over its
    retrain seeds); a selection not yet retrained keeps one row, fidelity ``not-retrained``."""
    from harness.retraining import canonical_genotype

    ops = _kept_ops(row["arch"], space)
    shared = {
        **row, "benchmark_index": -1, "dataset": dataset, "metric": "test",
        "param_free_ops": sum(op in space.parameter_free_ops for op in ops),
        "skip_ops": ops.count("skip_connect"), "disconnected": _disconnected(row["arch"], space),
    }  # fmt: skip
    by_fidelity: dict[str, list[dict[str, Any]]] = {}
    for result in retrained.get((canonical_genotype(row["arch"]), dataset), []):
        by_fidelity.setdefault(result["fidelity"], []).append(result)
    if not by_fidelity:
        return [{**shared, "fidelity": "not-retrained", "accuracy": math.nan, "params": math.nan,
                 "madds": math.nan, "retrain_seeds": 0}]  # fmt: skip
    return [
        {
            **shared, "fidelity": name,
            "accuracy": sum(r["test_acc"] for r in results) / len(results),
            "params": results[0]["params"], "madds": results[0]["madds"],
            "retrain_seeds": len(results),
        }  # fmt: skip
        for name, results in sorted(by_fidelity.items())
    ]


def _accuracy_rows(
    row: dict[str, Any], space: SearchSpace, truth: GroundTruth
) -> list[dict[str, Any]]:
    ops = _kept_ops(row["arch"], space)
    # Imported subsets of the benchmark may lack a cell; other benchmarks' cells never match.
    known = space.benchmark == BENCHMARK and row["arch"] in truth
    shared = {
        **row,
        "benchmark_index": truth.index_of(row["arch"]) if known else -1,
        "param_free_ops": sum(op in space.parameter_free_ops for op in ops),
        "skip_ops": ops.count("skip_connect"),
        "disconnected": _disconnected(row["arch"], space),
    }
    rows = []
    for column in truth.columns:
        match = COLUMN_PATTERN.fullmatch(column)
        if match is None:
            continue
        dataset, metric, epochs = match.groups()
        rows.append(
            {
                **shared,
                "dataset": dataset,
                "metric": metric,
                "fidelity": f"{epochs}ep",
                "accuracy": (
                    truth.accuracy(row["arch"], dataset, metric, int(epochs)) if known else math.nan
                ),
            }
        )
    return rows
