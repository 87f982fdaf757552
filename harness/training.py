"""The shared supernet training loop: resumable, cached, one run per (settings, seed).

Resumption is exact on CPU: model, both optimisers, the scheduler, the algorithm's
own state and the RNG state are checkpointed, and the batches of epoch e depend only
on (seed, e), so a run resumed from epoch e continues as if it was never stopped.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

import harness
from harness.batches import Tally
from harness.config import ExperimentConfig, TrainSettings
from harness.data import NUM_CLASSES, Batches, ImageArrays
from harness.errors import HarnessError
from harness.experiment import Experiment, experiment_of
from harness.keys import STORE_FORMAT_VERSION
from harness.locks import job_lock, lock_path
from harness.search_data import make_search_data
from harness.store import RunStore, atomic_write_bytes

log = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    run_key: str
    seed: int
    run_dir: Path
    epochs_trained: int  # in this call; 0 when the store already held the run
    resumed_from: int  # epoch of the checkpoint resumed from (0 = fresh start)
    checkpoint_epochs: list[int]


def settings_record(config: ExperimentConfig, seed: int, fingerprint: str, key: str, algorithm):
    return {
        "run_key": key,
        "seed": seed,
        "config": config.to_dict(),
        "algorithm": algorithm.recorded_settings(),
        "num_classes": NUM_CLASSES[config.data.dataset],
        "data_fingerprint": fingerprint,
        "store_format": STORE_FORMAT_VERSION,
        "harness_version": harness.__version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
    }


@torch.no_grad()
def evaluate(supernet, batches: Batches, weights: torch.Tensor | None = None):
    """Mean loss and accuracy over one pass of ``batches`` in eval mode."""
    was_training = supernet.training
    supernet.eval()
    tally = Tally()
    for x, y in batches.epoch(0):
        tally.add(supernet(x, weights), y)
    supernet.train(was_training)
    return tally.mean_loss, tally.accuracy


def train_supernet(
    experiment: Experiment | ExperimentConfig,
    seed: int,
    store_root: Path,
    data: ImageArrays,
    progress: bool = True,
) -> TrainOutcome:
    """Train (or resume, or find trained) the run of ``seed``. ``experiment`` is resolved
    once by the caller (:func:`harness.experiment.resolve_experiment`); settings alone are
    resolved here, for callers outside a study."""
    if isinstance(experiment, ExperimentConfig):
        experiment = experiment_of(experiment)
    experiment = experiment.on_data(data, [seed])
    key = experiment.run_key(seed)
    run = RunStore(store_root, key)
    # One process trains a run; another waits, then finds it trained (or resumes it).
    with job_lock(lock_path(store_root, "train", key), f"training run {key} (seed {seed})"):
        return _train_locked(experiment, seed, run, data, progress)


def _train_locked(
    experiment: Experiment, seed: int, run: RunStore, data: ImageArrays, progress: bool
) -> TrainOutcome:
    config = experiment.config
    key = run.key
    run.remove_stale_temp_files()
    total = config.train.epochs
    completed = run.completed_epochs()
    missing = missing_checkpoints(config.train, completed)
    if not missing:
        log.info("seed %d: run %s already trained (%d epochs)", seed, key, total)
        return TrainOutcome(key, seed, run.dir, 0, completed[-1], completed)
    # Resume from the newest checkpoint before the first hole; training stops at the last
    # missing checkpoint (a deleted middle checkpoint is remade, later ones are kept).
    stop = missing[-1]
    newest = completed[-1] if completed else 0
    completed = [e for e in completed if e < missing[0]]

    device = torch.device(config.device)
    torch.manual_seed(seed)
    supernet = experiment.build_supernet().to(device)
    algorithm = experiment.build_algorithm(supernet)
    # Data first: a split the data cannot give fails before the run directory exists.
    search = make_search_data(
        config.data, data, seed, config.train.batch_size, device, split=experiment.split
    )
    settings = settings_record(config, seed, data.fingerprint, key, algorithm)
    run.write_settings(settings)

    start, metrics = 0, []
    if completed:
        state = run.load_checkpoint(completed[-1])
        supernet.load_state_dict(state["model"])
        algorithm.load_state_dict(state["algorithm"])
        torch.set_rng_state(state["rng"]["torch"])
        metrics = list(state["metrics"])
        start = state["epoch"]
        log.info("seed %d: resuming run %s from epoch %d", seed, key, start)

    def save(done: int) -> None:
        run.save_checkpoint(
            done,
            {
                "epoch": done,
                "settings": settings,
                "model": supernet.state_dict(),
                "algorithm": algorithm.state_dict(),
                "rng": {"torch": torch.get_rng_state()},
                "metrics": metrics,
            },
        )

    if start == 0 and 0 in missing:
        save(0)  # the untrained supernet (train.initial_checkpoint)
    bar = tqdm(total=stop, initial=start, desc=f"seed {seed}", unit="epoch", disable=not progress)
    for epoch in range(start, stop):
        began = time.perf_counter()
        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update(algorithm.begin_epoch(epoch, search.weight_batches, search.alpha_batches))
        # After begin_epoch, which may restart the schedule (OPP-DARTS).
        row["lr"] = algorithm.weight_optimizer.param_groups[0]["lr"]
        row["threads"] = torch.get_num_threads()  # results are bit-exact per thread count
        row["platform"] = PLATFORM  # ... and per machine kernels: see compute_platform()
        supernet.train()
        losses, accuracies = [], []
        for weight_batch, alpha_batch in zip(
            search.weight_batches.epoch(epoch), search.alpha_batches.epoch(epoch), strict=False
        ):
            loss, acc = algorithm.step(weight_batch, alpha_batch)
            if not math.isfinite(loss):
                raise HarnessError(
                    f"seed {seed}: the training loss became {loss} in epoch {epoch + 1} of run "
                    f"{key}; nothing of that epoch was saved (last checkpoint: epoch "
                    f"{_last(run.completed_epochs())}): lower train.lr or train.arch_lr"
                )
            losses.append(loss)
            accuracies.append(acc)
        row.update(algorithm.end_epoch(epoch))
        valid_loss, valid_acc = evaluate(supernet, search.alpha_eval)
        row.update(
            train_loss=sum(losses) / len(losses),
            train_acc=sum(accuracies) / len(accuracies),
            valid_loss=valid_loss,
            valid_acc=valid_acc,
            seconds=time.perf_counter() - began,
        )
        row.update(_alpha_columns(supernet))
        metrics.append(row)
        if epoch + 1 > newest:  # metrics.csv already holds the epochs up to the newest
            _write_metrics(run, metrics)
        log.info(
            "seed %d epoch %d/%d: train loss %.3f acc %.3f, valid acc %.3f, %.1fs",
            seed, epoch + 1, total, row["train_loss"], row["train_acc"], valid_acc, row["seconds"],
        )  # fmt: skip
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", valid=f"{valid_acc:.3f}",
                        s_per_epoch=f"{row['seconds']:.1f}")  # fmt: skip
        bar.update(1)
        done = epoch + 1
        if done in missing:
            save(done)
    bar.close()
    return TrainOutcome(key, seed, run.dir, stop - start, start, run.completed_epochs())


def checkpoint_epochs(train: TrainSettings) -> list[int]:
    every, total = train.checkpoint_every, train.epochs
    initial = {0} if train.initial_checkpoint else set()
    return sorted({*initial, *range(every, total + 1, every), total})


def missing_checkpoints(train: TrainSettings, completed: list[int]) -> list[int]:
    """Checkpoint epochs of the schedule that the store lacks, ascending."""
    have = set(completed)
    return [e for e in checkpoint_epochs(train) if e not in have]


def _alpha_columns(supernet) -> dict[str, Any]:
    """The softmax weight of every candidate op on every edge, and the cell they pick."""
    space = supernet.space
    with torch.no_grad():
        weights = supernet.mixing_weights().cpu()
    columns: dict[str, Any] = {
        f"w[{edge}][{space.op_names[k]}]": weights[e, k].item()
        for e, edge in enumerate(space.edge_names)
        for k in space.candidates[e]
    }
    columns["argmax_arch"] = space.encode(space.discretise(weights.double().numpy()))
    return columns


def _write_metrics(run: RunStore, metrics: list[dict[str, Any]]) -> None:
    atomic_write_bytes(run.metrics_path, pd.DataFrame(metrics).to_csv(index=False).encode())


def compute_platform() -> str:
    """What decides the rounding of CPU results besides settings and threads: the kernels
    torch dispatches to on this CPU, and the torch build."""
    return f"{torch.backends.cpu.get_cpu_capability()} torch {torch.__version__}"


PLATFORM = compute_platform()


def _last(epochs: list[int]) -> str:
    return str(epochs[-1]) if epochs else "none"
