"""Which genotypes ``harness retrain`` trains, and running those jobs like ``harness run``'s
(in this process, in worker processes, or on a Dask cluster; the store coordinates).

A job names its genotype's space by its registered name; the space reads the genotype and
builds the network (:mod:`harness.retraining`), so any registered space without tabular
ground truth is retrained alike."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import torch
from tqdm.auto import tqdm

from harness.config import SpaceSettings
from harness.errors import HarnessError
from harness.locations import DataLocation
from harness.pipeline import Execution, run_parallel, torch_threads, where_this_runs
from harness.retrain_settings import RetrainSettings
from harness.retraining import genotype_space, retrain_genotype
from harness.selecting import read_selection
from harness.store import read_json
from spaces import make_space

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainJob:
    genotype: str
    dataset: str
    seed: int
    # The registered space whose network trains the genotype; None: the first registered
    # space whose codec reads it.
    space: str | None = None


@dataclass(frozen=True)
class _Stored:
    """One stored selection that retraining can judge."""

    space: str
    method: str
    epoch: int
    final_epoch: int
    arch: str
    dataset: str


def _stored_selections(results_dir: Path) -> list[_Stored]:
    """Every selection in a space without a tabular benchmark (upper bounds aside)."""
    found = []
    for run_dir in sorted(Path(results_dir).glob("runs/*")):
        settings = read_json(run_dir / "settings.json")
        if not isinstance(settings, dict):
            continue
        config = settings["config"]
        searched = make_space(SpaceSettings(**config["space"]))
        if searched.benchmark is not None:
            continue
        dataset = config["data"].get("dataset", "cifar10")
        for path in sorted(run_dir.glob("selections/epoch_*/*.json")):
            raw = read_selection(path)
            if raw is None or raw["selection"].get("upper_bound"):
                continue
            found.append(_Stored(searched.name, raw["selection"]["method"], int(raw["epoch"]),
                                 config["train"]["epochs"], raw["selection"]["arch"],
                                 dataset))  # fmt: skip
    return found


def genotypes_in_store(
    results_dir: Path,
    space: str | None = None,
    methods: list[str] | None = None,
    epoch: str | int = "final",
) -> list[tuple[str, str, str]]:
    """(genotype, dataset, space name) of every stored selection in a space without a tabular
    benchmark, at the final checkpoint (``epoch="final"``), a given epoch, or every one (``"all"``);
    ``space`` / ``methods`` (display names, e.g. ``darts-pt``) narrow it. [] when the store
    holds no such selection; one sentence naming the filter when a filter leaves none."""
    stored = _stored_selections(results_dir)
    if not stored:
        return []
    where = ""
    if space is not None:
        kept = [s for s in stored if s.space == space]
        if not kept:
            raise HarnessError(
                f"nothing to retrain: --space {space} matches no stored selection in a space "
                f"without tabular ground truth; the store holds them in "
                f"{_listed(s.space for s in stored)}"
            )
        stored, where = kept, f" in {space}"
    if methods is not None:
        kept = [s for s in stored if s.method in methods]
        if not kept:
            raise HarnessError(
                f"nothing to retrain: --methods {','.join(methods)} matches no stored "
                f"selection{where}; methods there: {_listed(s.method for s in stored)}"
            )
        stored, where = kept, f"{where} of {_listed(s.method for s in kept)}"
    kept = [s for s in stored if epoch == "all"
            or s.epoch == (s.final_epoch if epoch == "final" else int(epoch))]  # fmt: skip
    if not kept:
        finals = _listed(str(s.final_epoch) for s in stored)
        raise HarnessError(
            f"nothing to retrain: --epoch {epoch} matches no stored selection{where}; epochs "
            f"there: {_listed(str(s.epoch) for s in stored)} (final: {finals}), or --epoch all"
        )
    return list(dict.fromkeys((s.arch, s.dataset, s.space) for s in kept))


def _listed(values) -> str:
    unique = sorted(set(values))
    return ", ".join(sorted(unique, key=int) if all(v.isdigit() for v in unique) else unique)


def plan_jobs(genotypes: list[tuple[str, ...]], seeds: list[int],
              space: str | None = None) -> list[RetrainJob]:  # fmt: skip
    """One job per (genotype, dataset, seed) and what its space adds to the retrain key;
    genotypes are read and canonicalised by their space before any work.

    ``genotypes``: (genotype, dataset) or (genotype, dataset, space name) items. A pair's
    space is ``space``, or (None) the first registered space whose codec reads it."""
    jobs: dict[tuple, RetrainJob] = {}
    for item in genotypes:
        genotype, dataset, named = (*item, space) if len(item) == 2 else item
        found = genotype_space(genotype, named)
        canonical = found.canonical_key(genotype)
        fields = json.dumps(found.retrain_key_fields(), sort_keys=True, default=str)
        for seed in seeds:  # one job per retrain key: the first space that asked for it
            jobs.setdefault((canonical, dataset, seed, fields),
                            RetrainJob(canonical, dataset, seed, found.name))  # fmt: skip
    return list(jobs.values())


def run_jobs(
    jobs: list[RetrainJob],
    settings: RetrainSettings,
    locations: dict[str, DataLocation],
    results_dir: Path,
    execution: Execution,
    device: str = "cpu",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Every job's result (``cached`` True where the store already held it)."""
    if not jobs:
        raise HarnessError(
            "nothing to retrain: give --genotype, or select in a space without tabular "
            "ground truth first (e.g. harness run --preset darts-proxy ...) so that the store "
            "holds genotypes"
        )
    if execution.in_process:
        arrays = {dataset: location.load() for dataset, location in locations.items()}
        outcomes = []
        with torch_threads(execution.threads_per_job):
            for job in tqdm(jobs, desc="retrain", disable=not progress or len(jobs) == 1):
                outcome = retrain_genotype(job.genotype, settings, job.seed, arrays[job.dataset],
                                           results_dir, job.dataset, device,
                                           progress=progress, space=job.space)  # fmt: skip
                outcomes.append((outcome, "in-process"))
    else:
        tasks = [
            joblib.delayed(_retrain_job)(job, settings, locations[job.dataset], results_dir,
                                         device, execution.threads_per_job)  # fmt: skip
            for job in jobs
        ]
        outcomes = run_parallel(execution, tasks, "retrain", progress)
    return [
        {**outcome.result, "cached": outcome.epochs_trained == 0, "executor": where}
        for outcome, where in outcomes
    ]


def _retrain_job(job: RetrainJob, settings, location: DataLocation, results_dir: Path,
                 device: str, threads: int):  # fmt: skip
    torch.set_num_threads(threads)
    outcome = retrain_genotype(job.genotype, settings, job.seed, location.load(), results_dir,
                               job.dataset, device, space=job.space)  # fmt: skip
    return outcome, where_this_runs()
