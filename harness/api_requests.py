"""What ``run``, ``train`` and ``retrain`` are asked to do, as one dataclass each.

The Python API (:mod:`harness.api`) and the command line (:mod:`harness.cli`) build the
same request and hand it to the same function, so the 20-odd parameters are written once,
here, with their defaults; each field's kind is checked once when the request is made
(one :class:`~harness.errors.HarnessError` sentence naming the field, see
:mod:`harness.api_arguments`). What the values mean (a known preset, a device this machine
has) is checked when the experiment is resolved.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harness.api_arguments import Seeds, Settings, check_arguments
from harness.errors import HarnessError

Folder = str | Path | None


@dataclass(frozen=True)
class ExperimentFields:
    """Which experiment: the preset and what overrides it."""

    preset: str = "proxy"
    space: str | None = None
    epochs: int | None = None
    checkpoint_every: int | None = None
    settings: Settings = None  # {"train.lr": 0.05} or ["train.lr=0.05"]
    device: str = "cpu"


@dataclass(frozen=True)
class DataFields:
    """Where the images come from."""

    data: Folder = None
    data_source: str = "folder"
    download: bool = False
    cache: Folder = None


@dataclass(frozen=True)
class RunRequest(ExperimentFields, DataFields):
    """``harness run`` / :func:`harness.api.run`."""

    methods: Any = "all"  # "ostr,magnitude", or specs, SelectionMethod classes and instances
    seeds: Seeds = "0"
    algorithm: str | Iterable[str] = "darts"  # several: a list or comma-separated
    results: Folder = None
    ground_truth: Folder = None
    jobs: int = 1
    threads: int | None = None
    cluster: str | None = None
    progress: bool = False
    notes: Callable[[str], None] | None = None  # receives warnings; default warnings.warn

    def __post_init__(self) -> None:
        check_arguments("run", _values(self))


@dataclass(frozen=True)
class TrainRequest(ExperimentFields, DataFields):
    """``harness train`` / :func:`harness.api.train`."""

    seeds: Seeds = "0"
    algorithm: str = "darts"
    results: Folder = None
    threads: int | None = None
    progress: bool = False
    notes: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        check_arguments("train", _values(self))


@dataclass(frozen=True)
class RetrainRequest(DataFields):
    """``harness retrain`` / :func:`harness.api.retrain`."""

    genotypes: Any = None  # genotype strings or Genotype tuples; None: the store's cells
    protocol: str = "proxy"
    seeds: Seeds = 0
    settings: Settings = None  # {"retrain.epochs": 3} or ["retrain.epochs=3"]
    space: str | None = None
    methods: Iterable[str] | str | None = None
    epoch: str | int = "final"
    dataset: str = "cifar10"
    results: Folder = None
    ground_truth: Folder = None
    jobs: int = 1
    threads: int | None = None
    cluster: str | None = None
    device: str = "cpu"
    progress: bool = False
    notes: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        check_arguments("retrain", _values(self))


Request = TypeVar("Request", RunRequest, TrainRequest, RetrainRequest)


def make_request(kind: type[Request], function: str, given: Mapping[str, Any]) -> Request:
    """``kind`` from keyword arguments, or one sentence naming an unknown one."""
    names = [f.name for f in dataclasses.fields(kind)]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise HarnessError(
            f"api.{function}() got unknown argument(s) {', '.join(unknown)}; it takes "
            f"{', '.join(names)}"
        )
    return kind(**given)


# Where an argparse destination differs from the request's field name.
_FROM_ARGUMENT = {"set": "settings", "genotype": "genotypes"}


def request_from_arguments(kind: type[Request], args: argparse.Namespace, **extra: Any) -> Request:
    """The request a command line's parsed arguments make (``--quiet`` turns progress off)."""
    fields = {f.name for f in dataclasses.fields(kind)}
    values = {}
    for name, value in vars(args).items():
        field_name = _FROM_ARGUMENT.get(name, name)
        if field_name in fields:
            values[field_name] = value
    if "progress" in fields and "quiet" in vars(args):
        values["progress"] = not args.quiet
    return kind(**{**values, **extra})


def _values(request: Any) -> dict[str, Any]:
    return {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
