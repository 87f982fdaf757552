"""Read the three result tables of ``harness run`` and narrow them to one config per algorithm.

The report reads only ``records.parquet``, ``selections.parquet``, ``runs.parquet`` and
(when present) ``mixing_weights.parquet``; it never opens checkpoints or the ground-truth
file, so a results directory copied off a cluster is enough to rebuild every figure and
table.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness import schema
from harness.errors import HarnessError
from harness.store import read_parquet_table

log = logging.getLogger(__name__)

RECORDS_FILE = schema.RECORDS.file
SELECTIONS_FILE = schema.SELECTIONS.file
RUNS_FILE = schema.RUNS.file
MIXING_FILE = schema.MIXING.file  # optional: results written before it existed lack it
MIXING_COLUMNS = schema.MIXING.columns
READ = (schema.RECORDS, schema.SELECTIONS, schema.RUNS)


@dataclass
class ResultTables:
    records: pd.DataFrame
    selections: pd.DataFrame
    runs: pd.DataFrame
    mixing: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=MIXING_COLUMNS))

    @property
    def algorithms(self) -> list[str]:
        return sorted(self.records["algorithm"].unique())

    def config_for(self, algorithm: str) -> str:
        return str(self.records.loc[self.records["algorithm"] == algorithm, "config_key"].iloc[0])


def load_results(results_dir: Path) -> ResultTables:
    """Read the three tables; a missing file or column is the user's to fix, not a bug."""
    results_dir = Path(results_dir)
    frames: dict[str, pd.DataFrame] = {}
    for table in READ:
        path = results_dir / table.file
        if not path.is_file():
            raise HarnessError(f"no results in {results_dir}: run `harness run` first")
        frames[table.file] = _read_table(path, table)
    mixing_path = results_dir / MIXING_FILE
    if mixing_path.is_file():
        mixing = _read_table(mixing_path, schema.MIXING)
    else:
        log.info("%s is absent (older results): no alpha-trajectory figure", mixing_path)
        mixing = pd.DataFrame(columns=MIXING_COLUMNS)
    tables = ResultTables(frames[RECORDS_FILE], frames[SELECTIONS_FILE], frames[RUNS_FILE], mixing)
    if tables.records.empty:
        raise HarnessError(f"no results in {results_dir}: run `harness run` first")
    log.info(
        "loaded %d records, %d selections, %d runs from %s",
        len(tables.records),
        len(tables.selections),
        len(tables.runs),
        results_dir,
    )
    return tables


def _read_table(path: Path, table: schema.TableSchema) -> pd.DataFrame:
    # Page checksums catch damaged data pages, the schema recorded in the file (harness.store)
    # a damaged footer, which can rename a column or change its type without a read failing.
    frame = read_parquet_table(
        path, "delete it and re-run `harness run`, which rebuilds the tables from the store"
    )
    if "space" not in frame.columns:
        frame["space"] = schema.SPACE_BEFORE_IT_WAS_RECORDED
    missing = [c for c in table.required if c not in frame.columns]
    if missing:
        raise HarnessError(
            f"{path} lacks the column(s) {', '.join(missing)}; it was written by another "
            "version of the harness: re-run `harness run`"
        )
    for column, unknown in table.filled.items():
        if column not in frame.columns:
            frame[column] = unknown
    return frame


def select_results(
    tables: ResultTables,
    preset: str | None = None,
    algorithm: str | None = None,
    config_key: str | None = None,
    space: str | None = None,
) -> ResultTables:
    """Keep the rows matching the filters; exactly one config may remain per algorithm."""
    records = tables.records
    wanted = pd.Series(True, index=records.index)
    asked = []
    if preset is not None:
        wanted &= records["preset"] == preset
        asked.append(f"preset {preset!r}")
    if space is not None:
        wanted &= records["space"] == space
        asked.append(f"space {space!r}")
    if algorithm is not None:
        wanted &= records["algorithm"] == algorithm
        asked.append(f"algorithm {algorithm!r}")
    if config_key is not None:
        # A unique prefix is enough, like git hashes: keys are 16 hex digits.
        wanted &= records["config_key"].astype(str).str.startswith(config_key)
        asked.append(f"config {config_key!r}")
    kept = records[wanted]
    if kept.empty:
        raise HarnessError(
            f"no results match {' and '.join(asked)}; available: {_choices(tables, records)}"
        )
    for algo, group in kept.groupby("algorithm"):
        if group["config_key"].nunique() > 1:
            raise HarnessError(
                f"the results hold {group['config_key'].nunique()} configurations of algorithm "
                f"{algo!r} ({_choices(tables, group)}): pass --space, --preset or --config to "
                "pick one"
            )
    keys = set(kept["config_key"])
    return ResultTables(
        records=kept.reset_index(drop=True),
        selections=_rows_of(tables.selections, keys, preset),
        runs=_rows_of(tables.runs, keys, preset),
        mixing=_rows_of(tables.mixing, keys, preset),
    )


def _rows_of(frame: pd.DataFrame, keys: set[str], preset: str | None) -> pd.DataFrame:
    # Config keys leave the preset name out, so two presets with equal values share one.
    wanted = frame["config_key"].isin(keys)
    if preset is not None:
        wanted &= frame["preset"] == preset
    return frame[wanted].reset_index(drop=True)


def _choices(tables: ResultTables, records: pd.DataFrame) -> str:
    keys = sorted(records["config_key"].unique())
    descriptions = describe_configs(tables, keys)
    return "; ".join(descriptions[key] for key in keys)


def describe_configs(tables: ResultTables, keys: list[str]) -> dict[str, str]:
    """One line per config: preset, key, algorithm, epochs, seeds and what sets it apart."""
    flat = {key: flatten_settings(settings_of(tables.runs, key)) for key in keys}
    differing = sorted(
        name
        for name in set().union(*flat.values())
        if len({json.dumps(f.get(name), default=str) for f in flat.values()}) > 1
    )
    out = {}
    for key in keys:
        rows = tables.records[tables.records["config_key"] == key]
        first = rows.iloc[0]
        epochs = int(rows["final_epoch"].max())
        text = (
            f"space {first['space']} preset {first['preset']} --config {key} "
            f"({first['algorithm']}, {epochs} epochs, "
            f"{rows['seed'].nunique()} seeds"
        )
        diff = [f"{name}={flat[key].get(name)}" for name in differing[:4] if name != "algorithm"]
        out[key] = text + (", " + ", ".join(diff) if diff else "") + ")"
    return out


def settings_of(runs: pd.DataFrame, key: str) -> dict[str, Any]:
    """The settings record of the first run of a config ({} when unreadable)."""
    rows = runs[runs["config_key"] == key].sort_values("seed")
    for raw in rows["settings"]:
        if isinstance(raw, str):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                log.warning("unreadable settings JSON for config %s", key)
                continue
            if isinstance(value, dict):
                return value
    return {}


def flatten_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings -> dotted names, without the per-seed fields (they always differ)."""
    flat: dict[str, Any] = {}
    for name, value in settings.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(flatten_settings(value, dotted + "."))
        elif name not in ("seed", "run_key"):
            flat[dotted] = value
    return flat
