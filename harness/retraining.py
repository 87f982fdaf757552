"""``harness retrain``: a genotype's evaluation network trained from scratch, the ground truth
of spaces without a tabular benchmark (the DARTS space and RobustDARTS's S1-S4).

The network is the space's (:meth:`spaces.base.SearchSpace.build_network`), and the space
reads and canonicalises the genotype text (:meth:`~spaces.base.SearchSpace.canonical_key`):
nothing here knows one space from another. A retrain is a job like training a supernet:
stored once under ``retrains/<key>/`` (key: genotype, settings, seed, data, dataset, and
what the space adds: :meth:`~spaces.base.SearchSpace.retrain_key_fields`), resumable from its
last checkpoint, exact on CPU after an interruption (the batches, cutout squares and
drop-path draws of epoch e depend only on (seed, e)), and runnable in worker processes
or on Dask. Its checkpoints are verified like a supernet's (``checkpoints/epoch_NNNN.pt``
with size and sha256 in ``manifest.json``; only the newest is kept); one that fails to
verify or to load is thrown away and the retrain starts again from a freshly built and
seeded network and optimiser, which gives exactly the uninterrupted result.
``result.json`` holds the test accuracy, parameter count and multiply-adds; the records
table joins it to every selection of that genotype (fidelity ``retrain-<protocol>``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from harness.batches import Tally
from harness.data import NORMALISATION, NUM_CLASSES, Batches, ImageArrays, downsample
from harness.errors import HarnessError
from harness.flops import count_multiply_adds
from harness.keys import hash_settings
from harness.locks import job_lock, lock_path
from harness.retrain_settings import RetrainSettings, fidelity
from harness.store import (
    CheckpointStore,
    atomic_write_bytes,
    atomic_write_json,
    read_json,
    remove_orphan_temp_files,
)
from spaces import space_named, space_names, space_reading
from spaces.base import SearchSpace, parameter_count

log = logging.getLogger(__name__)

RETRAIN_FORMAT_VERSION = 1


def genotype_space(genotype: str, space: SearchSpace | str | None = None) -> SearchSpace:
    """The space that reads ``genotype``: ``space`` itself, the registered space of that
    name, or (None) the first registered space whose codec reads the text."""
    if isinstance(space, SearchSpace):
        return space
    return space_reading(genotype) if space is None else space_named(space)


def canonical_genotype(text: str, space: SearchSpace | str | None = None) -> str:
    """The genotype as its space prints it (a DARTS genotype: each node's inputs in input
    order), so one cell has one key and one network, however it was written; ``space`` as
    :func:`genotype_space` takes it."""
    return genotype_space(text, space).canonical_key(text)


def retrain_key(genotype: str, settings: RetrainSettings, seed: int, fingerprint: str,
                dataset: str, space_fields: dict[str, Any] | None = None) -> str:  # fmt: skip
    """The store key; ``space_fields`` (the space's ``retrain_key_fields()``) join it only
    when there are any, so the DARTS spaces' keys are what they were before spaces had it."""
    identity = {
        "genotype": genotype, "settings": settings.identity(), "seed": seed,
        "data_fingerprint": fingerprint, "dataset": dataset, "format": RETRAIN_FORMAT_VERSION,
    }  # fmt: skip
    if space_fields:
        identity["space"] = dict(space_fields)
    return hash_settings(identity)


@dataclass
class RetrainOutcome:
    key: str
    result: dict[str, Any]
    epochs_trained: int  # in this call (0: the store held it)
    resumed_from: int


def retrain_dir(store_root: Path, key: str) -> Path:
    return Path(store_root) / "retrains" / key


# result.json's fields and the types the records table relies on (bool is no number here).
_RESULT_FIELDS = {"genotype": str, "fidelity": str, "dataset": str, "test_acc": float,
                  "seed": int, "params": int, "madds": int, "epochs": int}  # fmt: skip


def result_problem(raw: Any) -> str | None:
    """What makes a result.json unusable (None when it is sound)."""
    if not isinstance(raw, dict):
        return "not a JSON object"
    for name, kind in _RESULT_FIELDS.items():
        value = raw.get(name)
        number = kind is float and isinstance(value, int | float)
        if isinstance(value, bool) or not (number or isinstance(value, kind)):
            return f"{name} is {value!r}" if name in raw else f"no {name}"
    if not (math.isfinite(raw["test_acc"]) and 0 <= raw["test_acc"] <= 100):
        return f"test_acc {raw['test_acc']!r} is no percentage"
    if "space" in raw and not isinstance(raw["space"], str):
        return f"space is {raw['space']!r}"
    if "space" in raw and raw["space"] not in space_names():
        return f"its space {raw['space']} is not registered in this process"
    try:
        result_space(raw).decode_unchecked(raw["genotype"])
    except (HarnessError, ValueError, KeyError, TypeError, IndexError):
        return "its genotype cannot be read"
    return None


def result_space(raw: dict[str, Any]) -> SearchSpace:
    """The space a result's genotype belongs to: the one it records, or, in results written
    before they recorded it (all of a DARTS space), the first registered space that reads it."""
    return genotype_space(raw["genotype"], raw.get("space"))


def read_result(path: Path) -> dict[str, Any] | None:
    """A finished retrain's result; None when missing or unusable (then it is made again)."""
    raw = read_json(path)
    return raw if result_problem(raw) is None else None


def retrain_genotype(
    genotype: str,
    settings: RetrainSettings,
    seed: int,
    data: ImageArrays,
    store_root: Path,
    dataset: str = "cifar10",
    device: str = "cpu",
    progress: bool = False,
    space: SearchSpace | str | None = None,
) -> RetrainOutcome:
    """Retrain ``genotype`` (text the space reads) with ``settings``; ``space``: the space
    (or its registered name) whose network it is, None: the first registered space whose
    codec reads the text."""
    space = genotype_space(genotype, space)
    genotype = space.canonical_key(genotype)
    key = retrain_key(genotype, settings, seed, data.fingerprint, dataset,
                      space.retrain_key_fields())  # fmt: skip
    with job_lock(lock_path(store_root, "retrain", key), f"retraining {key} (seed {seed})"):
        folder = retrain_dir(store_root, key)
        if (done := read_result(folder / "result.json")) is not None:
            return RetrainOutcome(key, done, 0, done["epochs"])
        return _retrain_locked(genotype, space, settings, seed, data, folder, dataset, device,
                               progress)  # fmt: skip


def _seed(seed: int, *parts: object) -> int:
    digest = hashlib.sha256(":".join(map(str, ("harness.retrain", seed, *parts))).encode())
    return int.from_bytes(digest.digest()[:8], "little") >> 1


def _subset(count: int, wanted: int | None, seed: int, what: str) -> torch.Tensor:
    if wanted is not None and wanted > count:
        raise HarnessError(f"retrain.{what}={wanted} exceeds the {count} images there are")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return order if wanted is None else order[:wanted]


def _cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """DARTS's cutout: one size x size square per image (centre uniform, clipped at the
    borders) set to 0 after normalisation."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1), generator=generator).to(x.device)
    cx = torch.randint(0, w, (n, 1), generator=generator).to(x.device)
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    inside_y = (rows >= cy - size // 2) & (rows < cy + size - size // 2)
    inside_x = (cols >= cx - size // 2) & (cols < cx + size - size // 2)
    square = inside_y[:, :, None] & inside_x[:, None, :]
    return x.masked_fill(square[:, None], 0.0)


def _fresh(genotype: str, space: SearchSpace, settings: RetrainSettings, seed: int,
           dataset: str, device: torch.device) -> tuple[nn.Module, torch.optim.SGD]:  # fmt: skip
    """The network and optimiser as epoch 0 has them (seeded: always the same)."""
    torch.manual_seed(seed)
    net = space.build_network(space.decode_unchecked(genotype), settings, NUM_CLASSES[dataset])
    net = net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)  # fmt: skip
    return net, optimizer


def _resume(store: CheckpointStore, settings: RetrainSettings,
            fresh: Callable[[], tuple[nn.Module, torch.optim.SGD]]):  # fmt: skip
    """(net, optimizer, next epoch, metrics so far) from the newest verified checkpoint.

    Anything that fails throws the stored state away and starts from ``fresh()``: never from
    the network a failed ``load_state_dict`` leaves, which holds every tensor it copied
    before it raised."""
    net, optimizer = fresh()
    legacy = store.dir / "checkpoint.pt"
    try:
        if legacy.is_file():  # written before retrain checkpoints carried a hash
            raise HarnessError(f"{legacy} cannot be verified (it predates checkpoint hashes)")
        completed = store.completed_epochs()
        if not completed:
            store.keep_only([])  # files a kill left unlisted
            return net, optimizer, 0, []
        state = store.read_checkpoint(completed[-1])
        start, metrics = int(state["epoch"]), list(state["metrics"])
        if start != completed[-1] or len(metrics) != start or start > settings.epochs:
            raise ValueError(f"epoch {start} with {len(metrics)} epochs of metrics")
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        store.keep_only([start])  # an older one a kill left behind
        log.info("retrain %s: resuming from epoch %d", store.dir.name, start)
        return net, optimizer, start, metrics
    except (HarnessError, KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        reason = error if isinstance(error, HarnessError) else (
            f"its checkpoint does not fit this retrain ({type(error).__name__})")
        log.warning("retrain %s: %s; retraining from epoch 0 with a freshly built network",
                    store.dir.name, reason)  # fmt: skip
        store.forget_all()
        legacy.unlink(missing_ok=True)
        net, optimizer = fresh()
        return net, optimizer, 0, []


def _retrain_locked(genotype: str, space: SearchSpace, settings: RetrainSettings, seed: int,
                    data: ImageArrays, folder: Path, dataset: str, device_name: str,
                    progress: bool) -> RetrainOutcome:  # fmt: skip
    device = torch.device(device_name)
    train_idx = _subset(len(data.train_labels), settings.train_images, settings.subset_seed,
                        "train_images")  # fmt: skip
    test_idx = _subset(len(data.test_labels), settings.test_images, settings.subset_seed + 1,
                       "test_images")  # fmt: skip
    mean, std = NORMALISATION[dataset]
    train = Batches(downsample(data.train_images[train_idx], settings.resolution),
                    data.train_labels[train_idx], settings.batch_size, _seed(seed, "batches"),
                    augment=True, device=device, mean=mean, std=std)  # fmt: skip
    test = Batches(downsample(data.test_images[test_idx], settings.resolution),
                   data.test_labels[test_idx], 256, 0, augment=False, device=device, mean=mean,
                   std=std)  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    remove_orphan_temp_files(folder)  # what a killed retrain of this key left
    atomic_write_json(folder / "settings.json", {
        "genotype": genotype, "space": space.name, "settings": dataclasses.asdict(settings),
        "seed": seed,
        "dataset": dataset, "data_fingerprint": data.fingerprint, "torch": torch.__version__,
    })  # fmt: skip
    store = CheckpointStore(folder)
    net, optimizer, start, metrics = _resume(
        store, settings, lambda: _fresh(genotype, space, settings, seed, dataset, device)
    )
    params = parameter_count(net)
    madds = count_multiply_adds(net, (3, settings.resolution, settings.resolution))
    began_all = time.perf_counter()
    bar = tqdm(total=settings.epochs, initial=start, desc=f"retrain seed {seed}", unit="epoch",
               disable=not progress)  # fmt: skip
    for epoch in range(start, settings.epochs):
        began = time.perf_counter()
        # The draws of this epoch (drop-path, cutout) depend only on (seed, epoch).
        torch.manual_seed(_seed(seed, "epoch", epoch))
        cutout_rng = torch.Generator().manual_seed(_seed(seed, "cutout", epoch))
        lr = settings.lr_min + 0.5 * (settings.lr - settings.lr_min) * (
            1 + math.cos(math.pi * epoch / settings.epochs)
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        net.drop_prob = settings.drop_path * epoch / settings.epochs
        net.train()
        total, correct, count = 0.0, 0, 0
        for x, y in train.epoch(epoch):
            if settings.cutout:
                x = _cutout(x, settings.cutout, cutout_rng)
            logits, aux = _outputs(net(x))
            loss = F.cross_entropy(logits, y)
            if aux is not None:
                loss = loss + settings.auxiliary_weight * F.cross_entropy(aux, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip)
            optimizer.step()
            total += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            count += len(y)
        if not math.isfinite(total):
            raise HarnessError(f"retrain {folder.name}: the loss became {total / count} in epoch "
                               f"{epoch + 1}; lower retrain.lr")  # fmt: skip
        test_loss, test_acc = _evaluate(net, test)
        metrics.append({
            "epoch": epoch + 1, "lr": lr, "train_loss": total / count, "train_acc": correct / count,
            "test_loss": test_loss, "test_acc": test_acc, "seconds": time.perf_counter() - began,
            "threads": torch.get_num_threads(),
        })  # fmt: skip
        bar.set_postfix(loss=f"{total / count:.3f}", test=f"{test_acc:.3f}")
        bar.update(1)
        if (epoch + 1) % settings.checkpoint_every == 0 or epoch + 1 == settings.epochs:
            store.save_checkpoint(epoch + 1, {"epoch": epoch + 1, "model": net.state_dict(),
                                              "optimizer": optimizer.state_dict(),
                                              "metrics": metrics})  # fmt: skip
            store.keep_only([epoch + 1])  # one state suffices to resume; they are large
            atomic_write_bytes(folder / "metrics.csv",
                               pd.DataFrame(metrics).to_csv(index=False).encode())  # fmt: skip
    bar.close()
    result = {
        "genotype": genotype, "space": space.name, "fidelity": fidelity(settings),
        "protocol": settings.protocol,
        "seed": seed, "dataset": dataset, "data_fingerprint": data.fingerprint,
        "test_acc": metrics[-1]["test_acc"] * 100, "params": params, "madds": madds,
        "epochs": settings.epochs, "wall_seconds": sum(m["seconds"] for m in metrics),
        "settings": dataclasses.asdict(settings), "key": folder.name,
    }  # fmt: skip
    atomic_write_json(folder / "result.json", result)
    log.info("retrain %s: test acc %.2f %% in %.0f s", folder.name, result["test_acc"],
             time.perf_counter() - began_all)  # fmt: skip
    return RetrainOutcome(folder.name, result, settings.epochs - start, start)


def _outputs(out: torch.Tensor | tuple) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits, auxiliary logits or None) from what a space's network returns."""
    return out if isinstance(out, tuple) else (out, None)


@torch.no_grad()
def _evaluate(net: nn.Module, batches: Batches) -> tuple[float, float]:
    net.eval()
    tally = Tally()
    for x, y in batches.epoch(0):
        tally.add(_outputs(net(x))[0], y)
    return tally.mean_loss, tally.accuracy
