"""``harness run``: plan the jobs, skip what the store holds, run the rest, write tables.

Jobs are independent: one training job per seed, then one selection job per
checkpoint (covering every method missing there). They run in this process
(``jobs=1``), in joblib worker processes (``jobs>1``) or on a Dask cluster; the store
on a (shared) file system is the only coordination.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import torch
from tqdm.auto import tqdm

from harness.config import TrainSettings
from harness.errors import HarnessError
from harness.experiment import Experiment
from harness.ground_truth import GroundTruth
from harness.locations import DataLocation, writable_folder
from harness.locks import job_lock, lock_path
from harness.presets import SELECTION_DEFAULTS
from harness.records import SkippedSelections, write_tables
from harness.selecting import (
    MethodProblem,
    MethodsFailed,
    read_selection,
    select_at_checkpoint,
    selection_path,
)
from harness.store import RunStore
from harness.training import missing_checkpoints, train_supernet
from methods.selection import SelectionMethod, make_method, method_spec

log = logging.getLogger(__name__)

# How long --cluster ADDRESS waits for the scheduler before saying it could not reach it.
SCHEDULER_CONNECT_TIMEOUT = "20s"


@dataclass
class RunSummary:
    trained_seeds: list[int] = field(default_factory=list)
    selections_computed: int = 0
    selections_reused: int = 0
    records: int = 0
    seconds: float = 0.0
    run_keys: dict[int, str] = field(default_factory=dict)
    # Where jobs ran, as each job itself saw it: "dask <worker address>" only when it ran
    # on a Dask worker, else "process <pid>" ("in-process" without workers).
    executors: set[str] = field(default_factory=set)
    # Methods that stored nothing at a checkpoint (raised, returned no valid selection or
    # changed the supernet): the run finishes everything else, then raises MethodsFailed.
    problems: list[MethodProblem] = field(default_factory=list)


_SCHEDULER = re.compile(r"(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}")


@dataclass(frozen=True)
class Execution:
    """How jobs run: ``jobs`` worker processes, or a Dask cluster (address or "local").

    ``threads`` is torch's intra-op thread count in every job (default: the machine's
    cores divided among the jobs). CPU results are bit-identical for the same settings,
    seed and thread count; other thread counts differ in the last float bits.
    """

    jobs: int = 1
    cluster: str | None = None
    threads: int | None = None

    def validate(self) -> Execution:
        if self.jobs < 1:
            raise HarnessError(f"--jobs must be at least 1, got {self.jobs}")
        if self.threads is not None and self.threads < 1:
            raise HarnessError(f"--threads must be at least 1, got {self.threads}")
        if self.cluster not in (None, "local") and not _SCHEDULER.fullmatch(self.cluster):
            raise HarnessError(
                f"--cluster {self.cluster!r} is not a scheduler address: use 'local' or "
                "tcp://HOST:PORT (IPv6 hosts in brackets, e.g. tcp://[::1]:8786)"
            )
        return self

    @property
    def threads_per_job(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.jobs)

    @property
    def in_process(self) -> bool:
        return self.jobs == 1 and self.cluster is None


@contextlib.contextmanager
def torch_threads(count: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_experiment(
    experiment: Experiment,
    seeds: list[int],
    methods: list[SelectionMethod],
    location: DataLocation,
    truth: GroundTruth,
    results_dir: Path,
    execution: Execution = Execution(),
    progress: bool = True,
) -> RunSummary:
    """Train every seed's supernet and select at every checkpoint, reusing the store."""
    began = time.perf_counter()
    summary = RunSummary()
    config = experiment.config
    data = location.load()
    # The split (one sentence when e.g. images_per_split is too large) and the run keys.
    experiment = experiment.on_data(data, seeds)
    writable_folder(results_dir, "--results")  # made only now that nothing else failed
    keys = dict(experiment.run_keys)
    summary.run_keys = keys

    for key in keys.values():  # a deleted or damaged settings.json / metrics.csv comes back
        # Not while another process trains that run (it is writing those files itself).
        with job_lock(lock_path(results_dir, "train", key), "repair", wait=False) as held:
            if held:
                RunStore(results_dir, key).repair_metadata()
    to_train = [s for s in seeds if not _trained(results_dir, keys[s], config.train)]
    if to_train:
        log.info("training seeds %s", to_train)
        if execution.in_process:
            with torch_threads(execution.threads_per_job):
                outcomes = [
                    (train_supernet(experiment, s, results_dir, data, progress), "in-process")
                    for s in to_train
                ]
        else:
            threads = execution.threads_per_job
            jobs = [
                joblib.delayed(_train_job)(experiment, s, results_dir, location, threads)
                for s in to_train
            ]
            outcomes = run_parallel(execution, jobs, "training", progress)
        summary.executors.update(where for _, where in outcomes)
        # Seeds this process trained; another process may have trained some meanwhile.
        summary.trained_seeds = sorted(o.seed for o, _ in outcomes if o.epochs_trained > 0)

    baselines = SELECTION_DEFAULTS.get(config.preset, {})
    pending = []
    for seed in seeds:
        store = RunStore(results_dir, keys[seed])
        for epoch in store.completed_epochs():
            path = store.checkpoint_path(epoch)
            missing = [method_spec(m) for m in methods if not _selected(path, m)]
            summary.selections_reused += len(methods) - len(missing)
            if missing:
                pending.append((path, missing))
    if pending:
        log.info("%d selections to compute at %d checkpoints",
                 sum(len(missing) for _, missing in pending), len(pending))  # fmt: skip
        if execution.in_process:
            with torch_threads(execution.threads_per_job):
                done = []
                # The method objects themselves: a class defined in a notebook needs no import.
                by_spec = {method_spec(m): m for m in methods}
                for path, missing in tqdm(pending, desc="selection", disable=not progress):
                    methods_here = [by_spec[s] for s in missing]
                    found: list[MethodProblem] = []
                    stored = select_at_checkpoint(
                        path, methods_here, data, truth, config.device, problems=found
                    )
                    done.append((sum(s.computed for s in stored), "in-process", found))
        else:
            threads = execution.threads_per_job
            jobs = [
                joblib.delayed(_select_job)(
                    path, missing, baselines, location, truth, config.device, threads
                )
                for path, missing in pending
            ]
            done = run_parallel(execution, jobs, "selection", progress)
        summary.executors.update(where for _, where, _ in done)
        summary.problems = [problem for _, _, found in done for problem in found]
        # Selections this process computed; ones another process stored meanwhile are reused.
        summary.selections_computed = sum(count for count, _, _ in done)
        planned = sum(len(missing) for _, missing in pending)
        summary.selections_reused += planned - summary.selections_computed - len(summary.problems)
    try:
        tables, skipped = write_tables(results_dir, truth), None
    except SkippedSelections as incomplete:  # written without them: said after the rest
        tables, skipped = incomplete.tables, incomplete
    summary.records = len(tables["records"])
    summary.seconds = time.perf_counter() - began
    if summary.problems:  # only now: a broken method never keeps the others from the tables
        also = f"; also: {skipped}" if skipped else ""
        raise MethodsFailed(
            summary.problems,
            "the other methods' selections and the tables are written; re-run once it is "
            f"fixed (what is stored is reused){also}",
            summary,
        )
    if skipped:
        raise skipped
    return summary


def _trained(results_dir: Path, key: str, train: TrainSettings) -> bool:
    # Every checkpoint of the schedule, not only the last: a deleted middle one is remade.
    return not missing_checkpoints(train, RunStore(results_dir, key).completed_epochs())


def _selected(checkpoint_path: Path, method: SelectionMethod) -> bool:
    # Reading the epoch from the file name avoids loading the checkpoint to plan.
    epoch = int(checkpoint_path.stem.split("_")[1])
    return read_selection(selection_path(checkpoint_path, epoch, method)) is not None


def _train_job(experiment: Experiment, seed: int, results_dir: Path, location: DataLocation,
               threads: int):  # fmt: skip
    torch.set_num_threads(threads)
    outcome = train_supernet(experiment, seed, results_dir, location.load(), progress=False)
    return outcome, where_this_runs()


def _select_job(path: Path, specs, baselines, location, truth, device: str, threads: int):
    torch.set_num_threads(threads)
    methods = [make_method(s, baselines) for s in specs]
    found: list[MethodProblem] = []
    stored = select_at_checkpoint(path, methods, location.load(), truth, device, problems=found)
    return sum(s.computed for s in stored), where_this_runs(), found


def where_this_runs() -> str:
    try:
        from distributed import get_worker

        return f"dask {get_worker().address}"
    except (ImportError, ValueError):  # ValueError: not inside a Dask worker
        return f"process {os.getpid()}"


def run_parallel(execution: Execution, tasks: list, stage: str, progress: bool) -> list:
    with _backend(execution):
        results = joblib.Parallel(return_as="generator_unordered")(tasks)
        return list(tqdm(results, total=len(tasks), desc=stage, disable=not progress))


@contextlib.contextmanager
def _backend(execution: Execution):
    if execution.cluster is None:
        with joblib.parallel_config(
            backend="loky", n_jobs=execution.jobs, inner_max_num_threads=execution.threads_per_job
        ):
            yield
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise HarnessError(
            "--cluster needs Dask: pip install 'nas-selection-harness[cluster]'"
        ) from None
    if execution.cluster == "local":
        cluster = LocalCluster(
            n_workers=execution.jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None,
        )  # fmt: skip
        client = Client(cluster)
    else:
        cluster = None
        try:
            client = Client(execution.cluster, timeout=SCHEDULER_CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as error:
            raise HarnessError(
                f"could not reach the Dask scheduler at {execution.cluster} ({error}): start "
                "it (`dask scheduler`) or check the address; nothing was lost, re-run when it "
                "is up"
            ) from None
    try:
        with joblib.parallel_config(backend="dask"):
            yield
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
