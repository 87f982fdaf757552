"""Running selection methods on cached checkpoints, each result stored once.

A selection is stored at ``runs/<run_key>/selections/epoch_NNNN/<method>.<hash>.json``
where the hash covers the method's full settings; a stored selection is reused, so
adding a method later only runs that method.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.checkpoints import LoadedCheckpoint, load_supernet
from harness.config import SpaceSettings
from harness.data import ImageArrays
from harness.errors import HarnessError
from harness.keys import hash_settings
from harness.locks import job_lock
from harness.plugins import is_plugin, torch_state_kept
from harness.search_data import make_search_data
from harness.store import atomic_write_json, read_json
from methods.selection import Selection, SelectionContext, SelectionMethod
from methods.selection.base import InvalidSelection, check_selection, method_label
from spaces import make_space
from spaces.base import SearchSpace

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
    data: ImageArrays,
    ground_truth: Any = None,
    device: str | None = None,
    problems: list[MethodProblem] | None = None,
) -> list[StoredSelection]:
    """Every method on one checkpoint; stored selections are read, missing ones computed.

    A method that raises (a plugin; a built-in's error stops the run as before), returns
    no valid selection or changes the supernet it was given stores nothing: the others
    are computed and stored all the same. Its :class:`MethodProblem` is appended to
    ``problems``; without that list, :class:`MethodsFailed` is raised once the checkpoint's
    other methods are stored.
    """
    checkpoint = load_supernet(checkpoint_path, device=device or "cpu")
    if checkpoint.data_fingerprint != data.fingerprint:
        raise HarnessError(
            f"checkpoint {checkpoint_path} was trained on other CIFAR-10 data than the data "
            "given now: point --data (and --data-source) at the data that trained it"
        )
    # Beside the selections it guards (runs/<key>/selections/), as those are.
    run_dir = Path(checkpoint.path).parent.parent
    lock = run_dir / "selections" / f".epoch_{checkpoint.epoch:04d}.lock"
    found: list[MethodProblem] = []
    # One process selects at a checkpoint at a time; what another stored meanwhile is read.
    with job_lock(lock, f"selections at {checkpoint.path}"):
        results = _select_locked(checkpoint, methods, data, ground_truth, device, found)
    if problems is None and found:
        raise MethodsFailed(found, "the other methods' selections there are stored")
    if problems is not None:
        problems.extend(found)
    return results


def _select_locked(
    checkpoint: LoadedCheckpoint,
    methods: list[SelectionMethod],
    data: ImageArrays,
    ground_truth: Any,
    device: str | None,
    problems: list[MethodProblem],
) -> list[StoredSelection]:
    config = checkpoint.config
    space = checkpoint.supernet.space
    context = guard = alphas = None
    results = []
    for method in methods:
        path = selection_path(checkpoint.path, checkpoint.epoch, method)
        raw = read_selection(path, space)
        if raw is not None:
            results.append(_stored(raw, checkpoint, path, computed=False))
            continue
        if path.exists():
            log.warning("%s is damaged or invalid; computing that selection again", path)
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
            guard = SupernetGuard(checkpoint, device or "cpu")
            # Kept with the selection so tables never reload the checkpoint for them; read
            # before any method ran, so they are the checkpoint's whatever a method does.
            alphas = checkpoint.supernet.alphas.detach().cpu().double().tolist()
        log.info("seed %d epoch %d: %s", checkpoint.seed, checkpoint.epoch, method.display_name)
        selection, reason = _run_method(method, checkpoint, context, guard)
        if reason is not None:
            problem = MethodProblem(method_label(method), reason, checkpoint.seed, checkpoint.epoch)
            log.info("%s", problem.sentence())
            problems.append(problem)
            continue
        raw = {
            "selection": selection.to_dict(),
            "seed": checkpoint.seed,
            "epoch": checkpoint.epoch,
            "run_key": checkpoint.run_key,
            "alphas": alphas,
            "format": SELECTION_FORMAT_VERSION,
        }
        atomic_write_json(path, raw)
        results.append(_stored(raw, checkpoint, path, computed=True))
    return results


def _run_method(
    method: SelectionMethod,
    checkpoint: LoadedCheckpoint,
    context: SelectionContext,
    guard: SupernetGuard,
) -> tuple[Selection | None, str | None]:
    """(the method's checked selection, None) or (None, why nothing of it is stored)."""
    reasons = []
    returned = None
    # Methods start from the same RNG state, so their results do not depend on order; each
    # gets its own context object, so reassigning a field reaches no other method.
    torch.manual_seed(checkpoint.seed)
    try:
        with torch_state_kept():
            returned = method.select(checkpoint.supernet, dataclasses.replace(context))
    except InvalidSelection as error:
        reasons.append(error.reason)
    except Exception as error:
        # A built-in's HarnessError is the user's to fix and stops the run in one sentence;
        # anything else from a built-in is a bug and keeps its traceback. A plugin's error
        # of any kind stops only that plugin.
        if not is_plugin(type(method)):
            raise
        # Its first line, shortened: the report is one sentence, never a traceback.
        first = (str(error).strip().splitlines() or [""])[0]
        first = first if len(first) <= 200 else f"{first[:197]}..."
        reasons.append(f"raised {type(error).__name__}" + (f" ({first})" if first else ""))
    changed = guard.changed()
    guard.tidy()
    if changed:
        shown = ", ".join(changed[:3]) + (
            f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        )
        reasons.append(
            f"changed the supernet it was given ({shown}; the methods after it share that "
            "supernet: change only a methods.selection.working_copy(supernet))"
        )
        guard.restore()
    if not reasons:
        try:
            return check_selection(returned, checkpoint.supernet.space, method), None
        except InvalidSelection as error:
            reasons.append(error.reason)
    return None, " and ".join(reasons)


class SupernetGuard:
    """The supernet a checkpoint's methods share, as it was loaded.

    Methods must not change it (DESIGN "Core interfaces"); a plugin may all the same. After
    each method every parameter and buffer (BatchNorm running statistics and batch counts
    included) is compared bit for bit with the bytes taken at load time: one memory compare,
    far cheaper than a copy of the supernet per method. A change refuses that method's
    result, and the supernet is loaded again from its checkpoint, so the methods after it
    see the checkpoint itself. Train/eval modes, requires_grad flags and gradients are no
    result of a method and are put back silently. (Hooks or attributes a method sets on
    modules are beyond this check.)
    """

    def __init__(self, checkpoint: LoadedCheckpoint, device: str) -> None:
        self.checkpoint, self.device = checkpoint, device
        self._snapshot()

    def _snapshot(self) -> None:
        net = self.checkpoint.supernet
        state = net.state_dict()
        self.layout = _layout(state)
        self.bytes = _flat(state).clone()
        self.entries, start = {}, 0  # name -> (dtype, shape, device), where its bytes are
        for (name, *key), tensor in zip(self.layout, state.values(), strict=True):
            size = tensor.numel() * tensor.element_size()
            self.entries[name] = (tuple(key), slice(start, start + size))
            start += size
        self.modes = [(module, module.training) for module in net.modules()]
        self.flags = [(p, p.requires_grad, p.grad) for p in net.parameters()]

    def changed(self) -> list[str]:
        """Names of the tensors (added, removed or changed) that differ from the loaded ones."""
        state = self.checkpoint.supernet.state_dict()
        layout = _layout(state)
        if layout == self.layout:
            try:
                if torch.equal(_wide(_flat(state)), _wide(self.bytes)):  # NaN equals NaN here
                    return []
            except RuntimeError:  # tensors on several devices: compared one by one below
                pass
        names = sorted(set(state) ^ set(self.entries))
        for (name, *key), tensor in zip(layout, state.values(), strict=True):
            if name in self.entries:
                was, where = self.entries[name]
                if tuple(key) != was or not torch.equal(_as_bytes(tensor), self.bytes[where]):
                    names.append(name)
        return names

    def tidy(self) -> None:
        for module, training in self.modes:
            if module.training != training:
                module.training = training
        for parameter, requires_grad, grad in self.flags:
            if parameter.requires_grad != requires_grad:
                parameter.requires_grad_(requires_grad)
            if parameter.grad is not grad:
                parameter.grad = grad

    def restore(self) -> None:
        fresh = load_supernet(self.checkpoint.path, device=self.device)
        self.checkpoint.supernet = fresh.supernet
        self._snapshot()


def _layout(state: dict[str, torch.Tensor]) -> list[tuple]:
    return [(name, t.dtype, tuple(t.shape), t.device) for name, t in state.items()]


def _flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([_as_bytes(t) for t in state.values()])


def _as_bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().reshape(-1).view(torch.uint8)


def _wide(flat: torch.Tensor) -> torch.Tensor:
    """The same bytes as 8-byte words where they divide evenly: compared several times faster."""
    return flat.view(torch.int64) if flat.numel() % 8 == 0 else flat


@dataclass(frozen=True)
class MethodProblem:
    """Why a method stored nothing at one checkpoint (plain values: it crosses processes)."""

    label: str  # "selection method 'name' (module:Class)"
    reason: str
    seed: int
    epoch: int

    def sentence(self) -> str:
        return f"{self.label} {self.reason} at seed {self.seed} epoch {self.epoch}"


class MethodsFailed(HarnessError):
    """Methods stored nothing at some checkpoints; raised once everything else is done."""

    def __init__(self, problems: list[MethodProblem], done: str, summary: Any = None) -> None:
        self.problems, self.summary = list(problems), summary
        by_label: dict[str, list[MethodProblem]] = {}
        for problem in problems:
            by_label.setdefault(problem.label, []).append(problem)
        parts = []
        for found in by_label.values():
            more = len(found) - 1
            also = f" (and at {more} more checkpoint{'s' * (more > 1)})" if more else ""
            parts.append(f"{found[0].sentence()}{also}, so it stored nothing there")
        super().__init__("; ".join([*parts, done]))


def read_selection(path: Path, space: SearchSpace | None = None) -> dict | None:
    """A stored selection, or None when it is missing, damaged or no selection in its run's
    space (then it is recomputed, and the tables leave it out); ``space``: the run's, read
    from its settings.json when not given."""
    return read_selection_checked(path, space)[0]


def read_selection_checked(
    path: Path, space: SearchSpace | None = None
) -> tuple[dict | None, str | None]:
    """(the stored selection, None), or (None, why the file holds none, in words)."""
    raw = read_json(path)
    if raw is None:
        return None, "missing or not JSON"
    try:
        selection = Selection.from_dict(raw["selection"])
        int(raw["seed"]), int(raw["epoch"]), str(raw["run_key"])
        space = space or _run_space(Path(path).parent.parent.parent)
        if space is not None:  # what is written now was checked; earlier versions wrote anything
            check_selection(selection, space)
    except InvalidSelection as error:
        return None, error.reason
    except (TypeError, KeyError, ValueError, AttributeError) as error:
        return None, f"incomplete ({type(error).__name__}: {error})"
    return raw, None


def _run_space(run_dir: Path) -> SearchSpace | None:
    try:
        stat = (run_dir / "settings.json").stat()
    except OSError:
        return None
    return _space_in_settings(str(run_dir), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _space_in_settings(run_dir: str, mtime_ns: int, size: int) -> SearchSpace | None:
    # Keyed by the file's time and size too: a rebuilt settings.json is read again.
    settings = read_json(Path(run_dir) / "settings.json")
    try:
        return make_space(SpaceSettings(**settings["config"]["space"]))
    except (TypeError, KeyError, ValueError, HarnessError):
        return None  # the tables report a damaged settings.json themselves


def _stored(raw: dict, checkpoint: LoadedCheckpoint, path: Path, computed: bool):
    return StoredSelection(
        selection=Selection.from_dict(raw["selection"]),
        seed=raw["seed"],
        epoch=raw["epoch"],
        run_key=raw["run_key"],
        path=path,
        computed=computed,
    )
