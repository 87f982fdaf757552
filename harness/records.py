"""Tidy tables of everything in the store, joined with the ground truth.

``records.parquet``: one row per seed x checkpoint epoch x method x dataset x metric x
fidelity. ``selections.parquet``: one row per seed x epoch x method, with the method's
scores, the checkpoint's alphas and the ground-truth importance of every op on every
edge around the selected cell (for rank correlations). ``runs.parquet``: one row per
supernet run. ``mixing_weights.parquet``: one row per run x epoch x edge x op with the
softmax weight its ``metrics.csv`` recorded. They are rebuilt from the store's files, so
they never disagree with it. A selection file that cannot be read or does not describe a
selection of its run is left out, and the others still reach the tables; then writing them
ends with one sentence naming each such file (non-zero exit). Retrains of genotypes no
stored selection chose (``harness retrain --genotype``) get rows of their own: method
``genotype``, no supernet (seed -1, epoch 0), the first registered space that holds the cell
among those that retrain it as its retrain's space does (the widest DARTS space for a DARTS
genotype). Genotypes are read and canonicalised by their space (``canonical_key``).
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from harness import schema
from harness.config import SpaceSettings
from harness.errors import HarnessError
from harness.experiment import protocol_of, searched_as
from harness.ground_truth import COLUMN_PATTERN, GroundTruth
from harness.keys import config_key, hash_settings
from harness.locks import job_lock, lock_path
from harness.presets import SEARCH_PROTOCOL_PRESETS
from harness.retraining import result_problem, result_space
from harness.selecting import read_selection_checked
from harness.store import (
    atomic_write_bytes,
    load_checkpoint_file,
    parquet_bytes,
    read_json,
    remove_orphan_temp_files,
)
from spaces import make_space, space_named, space_names
from spaces.base import SearchSpace

log = logging.getLogger(__name__)

GENOTYPE = "genotype"  # the method (and config) of retrains given by --genotype
WEIGHT_COLUMN = re.compile(r"^w\[(?P<edge>[^\]]+)\]\[(?P<op>[^\]]+)\]$")


class SkippedSelections(HarnessError):
    """Tables written without some unusable selection files (named in the message)."""

    def __init__(self, message: str, tables: dict[str, pd.DataFrame]) -> None:
        super().__init__(message)
        self.tables = tables


def write_tables(results_dir: Path, truth: GroundTruth | None) -> dict[str, pd.DataFrame]:
    # Read and written under one lock: the last process to write has read everything that
    # any process had stored before it, so concurrent runs end with complete tables.
    with job_lock(lock_path(results_dir, "tables"), "writing the tables"):
        # Every run ends here, so every run clears what killed writers left in the store.
        remove_orphan_temp_files(results_dir)
        skipped: list[str] = []
        tables = collect_tables(results_dir, truth, skipped)
        for name, frame in tables.items():
            atomic_write_bytes(results_dir / f"{name}.parquet", parquet_bytes(frame))
    if skipped:
        raise SkippedSelections(
            f"{len(skipped)} selection file(s) left out of the tables: {'; '.join(skipped)}; "
            "delete them and re-run `harness run` with those methods to compute them again "
            "(everything else is in the tables)",
            tables,
        )
    return tables


# What a selection file that is not one of its run's selections raises while read.
_INVALID = (HarnessError, KeyError, TypeError, ValueError, AttributeError, IndexError)


def collect_tables(
    results_dir: Path, truth: GroundTruth | None, skipped: list[str] | None = None
) -> dict[str, pd.DataFrame]:
    """The tables; ``truth`` may be None while no selection needs a table lookup. A selection
    file left out is described in ``skipped`` (path, method, why)."""
    skipped = [] if skipped is None else skipped
    runs, selections, records, mixing = [], [], [], []
    alpha_cache: dict[Path, list] = {}
    retrained = _retrained_by_genotype(results_dir)
    chosen: set[tuple[str, str, str]] = set()  # _retrain_key of the selections retrained
    for run_dir in sorted(p for p in (results_dir / "runs").glob("*") if p.is_dir()):
        settings = read_json(run_dir / "settings.json")
        if not isinstance(settings, dict):
            if any(run_dir.glob("checkpoints/*.pt")):
                log.warning("%s is missing or damaged, so run %s is left out of the tables: "
                            "re-run harness run with its settings to rebuild it",
                            run_dir / "settings.json", run_dir.name)  # fmt: skip
            continue
        identity = _run_identity(settings)
        space = make_space(SpaceSettings(**settings["config"]["space"]))
        truth_here = truth if space.benchmark == BENCHMARK else None
        metrics = _read_metrics(run_dir / "metrics.csv")
        runs.append({**identity, **_run_summary(metrics, settings)})
        mixing.append(_mixing_weights(identity, metrics))
        paths = sorted(run_dir.glob("selections/epoch_*/*.json"))
        if paths and space.benchmark is not None and truth is None:
            raise HarnessError(
                f"{results_dir} holds selections in space {space.name}, whose tables need "
                "the NAS-Bench-201 ground truth: pass --ground-truth PATH (or set "
                "HARNESS_GROUND_TRUTH); everything computed so far is kept"
            )
        dataset = settings["config"]["data"].get("dataset", "cifar10")
        for path in paths:
            raw, problem = read_selection_checked(path, space)
            try:
                if raw is None:
                    raise ValueError(problem)
                row = _selection_row(identity, raw, space, path)
                selection = raw["selection"]
                checkpoint = run_dir / "checkpoints" / f"epoch_{raw['epoch']:04d}.pt"
                if "alphas" in raw:
                    alpha_cache[checkpoint] = raw["alphas"]
                elif checkpoint not in alpha_cache:  # stored before selections kept alphas
                    alpha_cache[checkpoint] = _checkpoint_alphas(checkpoint, space)
                neighbours = _neighbour_accuracies(selection["arch"], space, truth_here)
                selection_row = {
                    **row, "scores": json.dumps(selection["scores"]),
                    "alphas": json.dumps(alpha_cache[checkpoint]),
                    "gt_importance": json.dumps(neighbours),
                    "edge_order": json.dumps(selection["edge_order"]),
                }  # fmt: skip
                if space.benchmark is None:
                    found = _retrain_rows(row, space, retrained, dataset)
                    chosen.add(_retrain_key(row["arch"], space, dataset))
                else:
                    found = _accuracy_rows(row, space, truth)
            except _INVALID as error:
                skipped.append(_skipped(path, raw, error))
                continue
            selections.append(selection_row)
            records.extend(found)
    records.extend(_genotype_rows(retrained, chosen))
    return {
        "records": _frame(records, schema.RECORDS.columns),
        "selections": _frame(selections, schema.SELECTIONS.columns),
        "runs": _frame(runs, schema.RUNS.columns),
        "mixing_weights": (
            pd.concat(mixing, ignore_index=True) if mixing else _frame([], schema.MIXING.columns)
        ),
    }


_COSTS = schema.COSTS
# The ground truth every table is joined with (harness.ground_truth).
BENCHMARK = "nas-bench-201"


def _selection_row(
    identity: dict[str, Any], raw: dict[str, Any], space: SearchSpace, path: Path
) -> dict[str, Any]:
    """The columns one selection's rows share; raises when the file does not describe a
    selection of this run (wrong epoch, a cell outside the space, fields of the wrong type)."""
    selection, epoch = raw["selection"], raw["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise ValueError(f"epoch {epoch!r}")
    if path.parent.name != f"epoch_{epoch:04d}":
        raise ValueError(f"epoch {epoch} in folder {path.parent.name}")
    fields = {"method": selection["method"], "arch": selection["arch"],
              "settings.method": selection["settings"]["method"]}  # fmt: skip
    for name, value in fields.items():
        if not isinstance(value, str):
            raise ValueError(f"{name} {value!r}")
    space.decode(selection["arch"])  # one sentence when the cell is not in the run's space
    costs = {k: selection["cost"][k] for k in _COSTS}
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in costs.values()):
        raise ValueError(f"cost {costs!r}")
    return {
        **identity, "epoch": epoch, "method": selection["method"],
        "method_name": selection["settings"]["method"],
        "method_key": hash_settings(selection["settings"]),
        "upper_bound": bool(selection["upper_bound"]), "arch": selection["arch"], **costs,
    }  # fmt: skip


def _skipped(path: Path, raw: dict[str, Any] | None, error: Exception) -> str:
    """``path (method M: why)``; the method from the file when it says, else its name."""
    selection = raw.get("selection") if isinstance(raw, dict) else None
    method = selection.get("method") if isinstance(selection, dict) else None
    if not isinstance(method, str):
        method = path.name.rsplit(".", 2)[0]
    why = str(error) if isinstance(error, HarnessError | ValueError) else (
        f"{type(error).__name__}: {error}")
    return f"{path} (method {method}: {why.rstrip('.')})"


def _frame(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns))


def _run_identity(settings: dict[str, Any]) -> dict[str, Any]:
    config = settings["config"]
    return {
        "config_key": config_key(config, settings["data_fingerprint"]),
        "preset": config["preset"],
        "space": make_space(SpaceSettings(**config["space"])).label,
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
        return _frame([], schema.MIXING.columns)
    long = metrics.melt(id_vars=["epoch"], value_vars=list(columns), value_name="weight")
    long["edge"] = long["variable"].map(lambda c: columns[c]["edge"])
    long["op"] = long["variable"].map(lambda c: columns[c]["op"])
    for name, value in identity.items():
        long[name] = value
    return long[list(schema.MIXING.columns)]


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
        # Labels the report's rows by (a run is a protocol by its values, not its preset).
        "protocol": protocol_of(settings["config"]) or "",
        "search_protocol": next(
            (p for p in SEARCH_PROTOCOL_PRESETS if searched_as(settings["config"], p)), ""
        ),
    }


def _checkpoint_alphas(path: Path, space: SearchSpace) -> list[list[float]]:
    if not path.exists():
        return space.empty_scores().tolist()
    state = load_checkpoint_file(path)  # verified against its run's manifest
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


def stored_results(store_root: Path) -> list[dict[str, Any]]:
    """Every finished retrain in the store; an unusable result.json is left out with one
    sentence naming it (a text ``test_acc`` must not stop the tables of everything else)."""
    results = []
    for path in sorted((Path(store_root) / "retrains").glob("*/result.json")):
        raw = read_json(path)
        problem = "unreadable JSON" if raw is None else result_problem(raw)
        if problem is None:
            results.append(raw)
        else:
            log.warning("%s is damaged (%s) and left out of the tables: re-run the harness "
                        "retrain that made it, which rewrites it from the retrain's last "
                        "checkpoint", path, problem)  # fmt: skip
    return results


def _retrain_key(genotype: str, space: SearchSpace, dataset: str) -> tuple[str, str, str]:
    """What joins a selection to its retrains: the canonical genotype, the dataset, and what
    the space adds to retrain keys (nothing for the DARTS spaces, which share retrains)."""
    fields = json.dumps(space.retrain_key_fields(), sort_keys=True, default=str)
    return space.canonical_key(genotype), dataset, fields


def _retrained_by_genotype(results_dir: Path) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    found: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for result in stored_results(results_dir):
        key = _retrain_key(result["genotype"], result_space(result), result["dataset"])
        found.setdefault(key, []).append(result)
    return found


def _genotype_rows(retrained: dict, chosen: set[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Rows of the retrained genotypes that no stored selection chose (``harness retrain
    --genotype``): no supernet, so "—" for its algorithm and preset, seed -1, epoch 0."""
    rows = []
    for genotype, dataset, fields in sorted(set(retrained) - chosen):
        family = result_space(retrained[genotype, dataset, fields][0])
        space = _widest_space_holding(genotype, family)
        if space is None:
            log.warning("retrained genotype %s is in none of the spaces that retrain it as "
                        "space %s does, and left out of the tables", genotype,
                        family.name)  # fmt: skip
            continue
        row = {
            "config_key": GENOTYPE, "preset": "—", "space": space.label, "algorithm": "—",
            "run_key": "", "seed": -1, "final_epoch": 0, "epoch": 0, "method": GENOTYPE,
            "method_name": GENOTYPE, "method_key": "", "upper_bound": False, "arch": genotype,
            **dict.fromkeys(_COSTS, math.nan),
        }  # fmt: skip
        rows += _retrain_rows(row, space, retrained, dataset)
    return rows


def _widest_space_holding(genotype: str, family: SearchSpace) -> SearchSpace | None:
    """The first registered space holding the cell (``decode``) among those that retrain it
    as ``family`` does (the same ``retrain_key_fields``); registered full spaces come before
    their subsets (the full DARTS space holds every DARTS cell without S4's noise op)."""
    fields = family.retrain_key_fields()
    for name in space_names():
        space = space_named(name)
        if space.retrain_key_fields() != fields:
            continue
        try:
            space.decode(genotype)
        except (HarnessError, ValueError, KeyError, TypeError, IndexError):
            continue
        return space
    return None


def _kept_ops(arch: str, space: SearchSpace) -> list[str]:
    """The cell's ops; in a space that prunes inputs, only the kept edges'."""
    ops = [space.op_names[k] for k in space.decode(arch)]
    return [op for op in ops if op != "none"] if space.prunes_inputs else ops


def _disconnected(arch: str, space: SearchSpace) -> bool:
    return not space.output_reachable(space.decode(arch))


def _retrain_rows(
    row: dict[str, Any], space: SearchSpace, retrained: dict, dataset: str
) -> list[dict[str, Any]]:
    """One row per retrain fidelity of the selected genotype (accuracy: the mean over its
    retrain seeds); a selection not yet retrained keeps one row, fidelity ``not-retrained``."""
    ops = _kept_ops(row["arch"], space)
    shared = {
        **row, "benchmark_index": -1, "dataset": dataset, "metric": "test",
        "param_free_ops": sum(op in space.parameter_free_ops for op in ops),
        "skip_ops": ops.count("skip_connect"), "disconnected": _disconnected(row["arch"], space),
    }  # fmt: skip
    by_fidelity: dict[str, dict[int, dict[str, Any]]] = {}
    for result in retrained.get(_retrain_key(row["arch"], space, dataset), []):
        seeds = by_fidelity.setdefault(result["fidelity"], {})
        # One retrain per seed: the same seed in both memory formats (a store retrained
        # before channels_last was the default, and again after) is one seed, the current
        # default's.
        if result["seed"] not in seeds or _channels_last(result):
            seeds[result["seed"]] = result
    if not by_fidelity:
        return [{**shared, "fidelity": "not-retrained", "accuracy": math.nan, "params": math.nan,
                 "madds": math.nan, "retrain_seeds": 0}]  # fmt: skip
    rows = []
    for name, seeds in sorted(by_fidelity.items()):
        results = list(seeds.values())
        rows.append({
            **shared, "fidelity": name,
            "accuracy": sum(r["test_acc"] for r in results) / len(results),
            "params": results[0]["params"], "madds": results[0]["madds"],
            "retrain_seeds": len(results),
        })  # fmt: skip
    return rows


def _channels_last(result: dict[str, Any]) -> bool:
    settings = result.get("settings")
    return isinstance(settings, dict) and settings.get("channels_last") is True


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
