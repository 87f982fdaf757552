"""The checks a supernet algorithm passes in one space (see :func:`check_in_space`)."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch

from harness.config import TrainSettings
from harness.errors import HarnessError
from harness.plugins import protocol_problem
from methods.conformance.common import (
    BATCH_SIZE,
    NUM_CLASSES,
    ConformanceError,
    Skip,
    Subject,
    cloned,
    differing,
    failer,
    guarded,
    shown,
    tiny_data,
    tiny_space,
)
from methods.supernet import algorithm_registry, get_algorithm
from methods.supernet.base import SupernetAlgorithm, parse_options


def algorithm_label(cls: type) -> str:
    return f"supernet algorithm {getattr(cls, 'name', '?')!r} ({cls.__module__}:{cls.__qualname__})"


def subject(
    algorithm: Any,
    options: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    train: dict[str, Any] | None = None,
    steps: int = 2,
    fixed_alphas: bool | None = None,
) -> Subject:
    cls, parsed, settings = prepare(algorithm, options or {}, train or {})
    fixed = getattr(cls, "fixed_alphas", False) if fixed_alphas is None else fixed_alphas
    check = functools.partial(
        check_in_space, cls, parsed, train=settings, seed=seed, steps=steps, fixed_alphas=fixed
    )
    return Subject(algorithm_label(cls), cls.name, check)


def prepare(algorithm: Any, options: dict[str, Any], train: dict[str, Any]):
    """(class, parsed options, train settings): the options as a run's config holds them."""
    cls = get_algorithm(algorithm) if isinstance(algorithm, str) else algorithm
    where = f"{getattr(cls, '__module__', '?')}:{getattr(cls, '__qualname__', repr(cls))}"
    problem = protocol_problem(cls, SupernetAlgorithm, "algorithm")
    if problem is not None:
        raise ConformanceError(f"supernet algorithm {where}", None, problem)
    taken = algorithm_registry().classes.get(cls.name)
    if taken not in (None, cls):
        problem = f"takes the name of {taken.__module__}:{taken.__qualname__}; rename it"
        raise ConformanceError(algorithm_label(cls), None, problem)
    try:
        cls.options_class()
    except TypeError as error:
        reason = f"needs a default for every option (runs name only those they change): {error}"
        raise ConformanceError(algorithm_label(cls), None, reason) from None
    settings = TrainSettings(
        **{"epochs": 2, "batch_size": BATCH_SIZE, "checkpoint_every": 1, **train}
    )
    settings.validate()
    return cls, parse_options(cls.options_class, options, cls.name), settings


@dataclass
class Run:
    start: dict[str, torch.Tensor]  # the supernet's state before the first step
    state: dict[str, torch.Tensor]  # ... after the last
    losses: list[float]
    algorithm: SupernetAlgorithm


def check_in_space(
    cls: type[SupernetAlgorithm],
    options: Any,
    space_name: str,
    train: TrainSettings,
    *,
    seed: int = 0,
    steps: int = 2,
    fixed_alphas: bool = False,
) -> None:
    """Train a small supernet of the space ``train.epochs`` epochs of ``steps`` steps (the
    training loop's calls: ``begin_epoch``, ``step``, ``end_epoch``) and check:

    * it applies there as the harness decides (``check_settings`` refuses nothing; a space
      it refuses is skipped with that sentence);
    * construction and every call run without raising; ``step`` returns (loss, accuracy),
      numbers, the loss finite; no parameter or buffer ends NaN or infinite;
    * the weights move, and the alphas move unless the algorithm keeps them fixed
      (``fixed_alphas``) — then they stay bit for bit;
    * options are recorded: ``recorded_settings()`` is plain JSON with the name and every
      option; the options come back unchanged from the run key's JSON (the key hashes every
      option, defaults included); a plugin's record names its source;
    * determinism and resumption: a second run from the same seed, resumed after the first
      epoch from ``state_dict()``/``load_state_dict()`` and the supernet's own state as a
      checkpoint holds them, ends bit for bit where the first did, with the same losses.
    """
    settings, space = tiny_space(space_name)
    fail = failer(algorithm_label(cls), space_name)
    try:
        cls.check_settings(options, train, space)
    except HarnessError as error:  # as the harness refuses a run, before any work
        raise Skip(str(error)) from None
    except Exception as error:
        fail(f"raised {type(error).__name__} in check_settings() ({error})", error)
    data = tiny_data(seed)
    first = _train(cls, options, settings, space, train, data, seed, steps, fail)
    _check_moves(first, fixed_alphas, train, steps, fail)
    _check_records(cls, options, first.algorithm, fail)
    resume = 1 if train.epochs > 1 else None
    second = _train(cls, options, settings, space, train, data, seed, steps, fail, resume)
    if not _differences(first, second):
        return
    third = _train(cls, options, settings, space, train, data, seed, steps, fail)
    if found := _differences(first, third):
        fail(f"is not deterministic: two runs from seed {seed} differ in {found}")
    fail(
        f"does not resume exactly: resumed after epoch 1 from its state_dict(), a run ends "
        f"with other {_differences(first, second)} (keep all its state in state_dict() and "
        "load_state_dict())"
    )


def _train(cls, options, settings, space, train, data, seed, steps, fail, resume_at=None) -> Run:
    """The training loop's calls, ``steps`` steps per epoch, the state saved and loaded
    into a new supernet and algorithm at the start of epoch ``resume_at`` (None: never)."""
    recorded = dataclasses.asdict(options)  # what a run's config holds

    def build():
        torch.manual_seed(seed)
        net = space.build_supernet(settings, num_classes=NUM_CLASSES)
        return net, guarded(fail, "when constructed", cls, net, train, recorded)

    net, algorithm = build()
    start, losses = cloned(net.state_dict()), []
    for epoch in range(train.epochs):
        if epoch == resume_at:  # as a checkpoint holds it, and as training resumes from one
            saved = {"model": net.state_dict(), "algorithm": algorithm.state_dict()}
            saved = guarded(fail, "in state_dict()", copy.deepcopy, saved)
            rng = torch.get_rng_state()
            net, algorithm = build()
            net.load_state_dict(saved["model"])
            guarded(fail, "in load_state_dict()", algorithm.load_state_dict, saved["algorithm"])
            torch.set_rng_state(rng)
        streams = data.weight_batches, data.alpha_batches
        guarded(fail, f"in begin_epoch({epoch})", algorithm.begin_epoch, epoch, *streams)
        net.train()
        batches = zip(*(stream.epoch(epoch) for stream in streams), strict=False)
        for index, (weight_batch, alpha_batch) in enumerate(batches):
            if index == steps:
                break
            what = f"in step() of epoch {epoch}"
            result = guarded(fail, what, algorithm.step, weight_batch, alpha_batch)
            if not _loss_and_accuracy(result):
                fail(f"returned {result!r} from step(), not (training loss, training accuracy)")
            if not math.isfinite(result[0]):
                fail(f"reached a training loss of {result[0]} in epoch {epoch} step {index}")
            losses.append(float(result[0]))
        guarded(fail, f"in end_epoch({epoch})", algorithm.end_epoch, epoch)
    return Run(start, cloned(net.state_dict()), losses, algorithm)


def _check_moves(run: Run, fixed_alphas: bool, train: TrainSettings, steps: int, fail) -> None:
    bad = [
        name
        for name, tensor in run.state.items()
        if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    ]
    if bad:
        fail(f"left NaN or infinite values in {shown(bad)}")
    net = run.algorithm.supernet
    names = {id(p): name for name, p in net.named_parameters()}
    moved = set(differing(run.start, run.state))
    trained = f"in {train.epochs} epoch(s) of {steps} step(s)"
    if not moved & {names[id(p)] for p in net.weight_parameters()}:
        fail(f"left every weight unchanged {trained}")
    alphas = {names[id(p)] for p in net.arch_parameters()}
    if fixed_alphas and moved & alphas:
        fail(f"moved the alphas {trained}, though it keeps them fixed (fixed_alphas)")
    if not fixed_alphas and not moved & alphas:
        fail(
            f"left the alphas unchanged {trained} (an algorithm that trains the weights only "
            "declares fixed_alphas = True)"
        )


def _check_records(cls, options: Any, algorithm: SupernetAlgorithm, fail) -> None:
    recorded = guarded(fail, "in recorded_settings()", algorithm.recorded_settings)
    try:
        recorded = json.loads(json.dumps(recorded))
    except (TypeError, ValueError) as error:
        fail(f"records settings that settings.json cannot hold ({error})")
    if not isinstance(recorded, dict) or recorded.get("name") != cls.name:
        fail(f"records name {_get(recorded, 'name')!r} in recorded_settings(), not {cls.name!r}")
    try:
        keyed = json.loads(json.dumps(dataclasses.asdict(options)))
    except (TypeError, ValueError) as error:
        fail(f"has an option that a run key cannot hash as JSON ({error})")
    if parse_options(cls.options_class, keyed, cls.name) != options:
        fail("has options that come back from the run key's JSON as other options")
    if algorithm.options != options:
        fail(f"runs with options {algorithm.options}, not the {options} it was given")
    if recorded.get("options") != keyed:
        fail(
            f"records options {_get(recorded, 'options')} in recorded_settings(), not its "
            f"options {keyed}"
        )
    if not cls.__module__.startswith("methods.supernet.") and "source" not in recorded:
        fail(
            "records no source (its package and version) in recorded_settings(): keep the "
            "base class's entries"
        )


def _loss_and_accuracy(result: Any) -> bool:
    return (
        isinstance(result, tuple | list)
        and len(result) == 2
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in result)
    )


def _get(record: Any, key: str) -> Any:
    return record.get(key) if isinstance(record, dict) else None


def _differences(a: Run, b: Run) -> str:
    changed = differing(a.state, b.state)
    if changed:
        return f"parameters or buffers ({shown(changed)})"
    return "training losses" if a.losses != b.losses else ""
