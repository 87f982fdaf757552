"""Running selection methods on cached checkpoints, each result stored once.

A selection is stored at ``runs/<run_key>/selections/epoch_NNNN/<method>.<hash>.json``
where the hash covers the method's full settings; a stored selection is reused, so
adding a method later only runs that method.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.checkpoints import LoadedCheckpoint, load_supernet
from harness.config import hash_settings
from harness.data import CIFAR10Arrays
from harness.errors import HarnessError
from harness.locks import job_lock
from harness.search_data import make_search_data
from harness.store import atomic_write_json, read_json
from methods.selection import Selection, SelectionContext, SelectionMethod

log = logging.getLogger(__name__)

SELECTION_FORMAT_VERSION = 1


@dataclass
class StoredSelection:
    selection: Selection
    seed: int
    epoch: int
    run_key: str
    path: Path
    computed: bool  # False when it was read from the store


def selection_path(checkpoint_path: Path, epoch: int, method: SelectionMethod) -> Path:
    key = hash_settings({"settings": method.settings(), "format": SELECTION_FORMAT_VERSION})
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", method.display_name).strip("_")
    run_dir = Path(checkpoint_path).parent.parent
    return run_dir / "selections" / f"epoch_{epoch:04d}" / f"{slug}.{key[:12]}.json"


def select_at_checkpoint(
    checkpoint_path: Path,
    methods: list[SelectionMethod],
    data: CIFAR10Arrays,
    ground_truth: Any = None,
    device: str | None = None,
) -> list[StoredSelection]:
    """Every method on one checkpoint; stored selections are read, missing ones computed."""
    checkpoint = load_supernet(checkpoint_path, device=device or "cpu")
    if checkpoint.data_fingerprint != data.fingerprint:
        raise HarnessError(
            f"checkpoint {checkpoint_path} was trained on other CIFAR-10 data than the data "
            "given now: point --data (and --data-source) at the data that trained it"
        )
    # Beside the selections it guards (runs/<key>/selections/), as those are.
    run_dir = Path(checkpoint.path).parent.parent
    lock = run_dir / "selections" / f".epoch_{checkpoint.epoch:04d}.lock"
    # One process selects at a checkpoint at a time; what another stored meanwhile is read.
    with job_lock(lock, f"selections at {checkpoint.path}"):
        results = _select_locked(checkpoint, methods, data, ground_truth, device)
    return results


def _select_locked(
    checkpoint: LoadedCheckpoint,
    methods: list[SelectionMethod],
    data: CIFAR10Arrays,
    ground_truth: Any,
    device: str | None,
) -> list[StoredSelection]:
    config = checkpoint.config
    context = None
    results = []
    for method in methods:
        path = selection_path(checkpoint.path, checkpoint.epoch, method)
        raw = read_selection(path)
        if raw is not None:
            results.append(_stored(raw, checkpoint, path, computed=False))
            continue
        if path.exists():
            log.warning("%s is damaged; computing that selection again", path)
        if context is None:
            context = SelectionContext(
                data=make_search_data(
                    config.data, data, checkpoint.seed, config.train.batch_size, device or "cpu"
                ),
                seed=checkpoint.seed,
                device=torch.device(device or "cpu"),
                train_settings=config.train,
                ground_truth=ground_truth,
            )
        log.info("seed %d epoch %d: %s", checkpoint.seed, checkpoint.epoch, method.display_name)
        # Methods start from the same RNG state, so their results do not depend on order.
        torch.manual_seed(checkpoint.seed)
        selection = method.select(checkpoint.supernet, context)
        raw = {
            "selection": selection.to_dict(),
            "seed": checkpoint.seed,
            "epoch": checkpoint.epoch,
            "run_key": checkpoint.run_key,
            # Kept with the selection so tables never reload the checkpoint for them.
            "alphas": checkpoint.supernet.alphas.detach().cpu().double().tolist(),
            "format": SELECTION_FORMAT_VERSION,
        }
        atomic_write_json(path, raw)
        results.append(_stored(raw, checkpoint, path, computed=True))
    return results


def read_selection(path: Path) -> dict | None:
    """A stored selection, or None when it is missing or damaged (then it is recomputed)."""
    raw = read_json(path)
    try:
        Selection.from_dict(raw["selection"])
        int(raw["seed"]), int(raw["epoch"]), str(raw["run_key"])
    except (TypeError, KeyError, ValueError, AttributeError):
        return None
    return raw


def _stored(raw: dict, checkpoint: LoadedCheckpoint, path: Path, computed: bool):
    return StoredSelection(
        selection=Selection.from_dict(raw["selection"]),
        seed=raw["seed"],
        epoch=raw["epoch"],
        run_key=raw["run_key"],
        path=path,
        computed=computed,
    )
