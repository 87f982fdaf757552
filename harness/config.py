"""Experiment settings as plain dataclasses, validated once at the boundary.

Everything that determines a supernet checkpoint lives in :class:`ExperimentConfig`;
its canonical JSON form is hashed into the store key (see :mod:`harness.keys`).
Presets (:mod:`harness.presets`) are just dictionaries of overrides of these fields. Each
dataclass checks its own fields and nothing else: which space, algorithm, split file and
device the settings name is resolved once, in :mod:`harness.experiment`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError


@dataclass(frozen=True)
class SpaceSettings:
    name: str = "nb201"
    channels: int = 16
    cells_per_stage: int = 5
    # Search-supernet cells use affine-free BN (both reference codes); DARTS-PT keeps
    # running statistics, xautodl does not.
    cell_bn_affine: bool = False
    cell_bn_track_stats: bool = True
    # Whether a cell convolution before an affine-free BatchNorm carries a bias. The
    # reference codes differ: xautodl's NB201 search cells do (``bias=not affine``),
    # DARTS-PT's and Lambda-DARTS's NB201 code and DARTS's CNN code do not. None: as the
    # space's own reference builds it (NB201: with, the DARTS space: without); a value equal
    # to that is stored as None, so stores made before this setting keep their keys.
    cell_conv_bias: bool | None = None
    # Narrowing a space's candidate ops (see spaces.nb201.space.nb201_space): one set for
    # every edge ("skip_connect,nor_conv_3x3"), or one per edge separated by ";".
    ops: str | None = None
    edge_ops: str | None = None

    def validate(self) -> None:
        """The fields' own checks. Whether ``name`` and the ops name a space is checked where
        the space is made (``spaces.make_space``, one sentence): settings are plain data and
        know no space."""
        check_field_types(self, "space")
        _positive(channels=self.channels, cells_per_stage=self.cells_per_stage)


# Keys are what configs and run keys store; values name the data set in messages.
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN"}
DATASETS = tuple(DATASET_NAMES)
# Only CIFAR-10 has an image-folder copy in the offline layout; the others are read
# from the files torchvision downloads.
OFFICIAL_FILES_ONLY = ("cifar100", "svhn")
# Where the images come from: an image folder, or the official files torchvision reads.
SOURCES = ("folder", "torchvision")


def check_dataset_source(dataset: str, source: str) -> None:
    """The one check of a data set and its source (settings, data locations and loaders
    all call it), one sentence for each way it can be wrong."""
    if dataset not in DATASETS:
        raise HarnessError(f"unknown dataset {dataset!r}; available: {', '.join(DATASETS)}")
    if source not in SOURCES:
        raise HarnessError(f"unknown data source {source!r}; use {' or '.join(SOURCES)}")
    if dataset in OFFICIAL_FILES_ONLY and source != "torchvision":
        raise HarnessError(
            f"{DATASET_NAMES[dataset]} is read only from its official files, not from an image "
            "folder: set data.source to 'torchvision' (--data-source torchvision)"
        )


@dataclass(frozen=True)
class DataSettings:
    dataset: str = "cifar10"
    source: str = "folder"  # "folder" (image folder) or "torchvision" (official files)
    resolution: int = 32
    images_per_split: int | None = None  # None: the full 25k/25k search split
    split_seed: int = 0
    augment: bool = True
    # The official NB201 split (AutoDL-Projects' cifar-split.txt) when given; else the
    # seeded split. Its content hash, not its path, is in the run key.
    split_file: str | None = None

    def validate(self) -> None:
        check_field_types(self, "data")
        if self.split_seed < 0:
            raise HarnessError(f"data.split_seed must be 0 or positive, got {self.split_seed}")
        check_dataset_source(self.dataset, self.source)
        if not 4 <= self.resolution <= 32:
            raise HarnessError(f"resolution must be between 4 and 32, got {self.resolution}")
        if self.images_per_split is not None:
            _positive(images_per_split=self.images_per_split)
        # The file itself is read once, when the experiment is resolved
        # (harness.experiment.resolve_experiment).
        if self.split_file is not None and self.source != "torchvision":
            raise HarnessError(
                "data.split_file indexes the official CIFAR-10 training files; "
                "use it with --data-source torchvision"
            )


CLIP_SCOPES = ("weights", "all")


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 100
    batch_size: int = 64
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    checkpoint_every: int = 10
    # Also keep the untrained supernet as checkpoint 0, so that rules usable at
    # initialisation (Zero-Cost-PT) can select from it.
    initial_checkpoint: bool = False
    # DARTS updates alphas on a validation batch before each weight step.
    step_order: str = "alpha-then-weight"
    nesterov: bool = False
    # "weights": clip the weights' gradient norm (DARTS); "all": clip over every parameter,
    # alphas included, as xautodl's search scripts do (see SupernetAlgorithm.weight_step).
    clip_scope: str = "weights"

    def validate(self) -> None:
        check_field_types(self, "train")
        _positive(epochs=self.epochs, batch_size=self.batch_size)
        _positive(checkpoint_every=self.checkpoint_every)
        _in_range("train.lr", self.lr, 0, low_open=True)
        _in_range("train.arch_lr", self.arch_lr, 0, low_open=True)
        _in_range("train.grad_clip", self.grad_clip, 0, low_open=True)
        _in_range("train.momentum", self.momentum, 0, 1)
        _in_range("train.weight_decay", self.weight_decay, 0)
        _in_range("train.arch_weight_decay", self.arch_weight_decay, 0)
        for beta in self.arch_betas:
            _in_range("train.arch_betas", beta, 0, 1)
        if not (math.isfinite(self.lr_min) and 0 <= self.lr_min <= self.lr):
            raise HarnessError(f"lr_min must be in [0, lr], got {self.lr_min}")
        if self.step_order not in ("alpha-then-weight", "weight-then-alpha"):
            raise HarnessError(
                f"unknown step_order {self.step_order!r}; "
                "use 'alpha-then-weight' or 'weight-then-alpha'"
            )
        if self.clip_scope not in CLIP_SCOPES:
            raise HarnessError(
                f"unknown clip_scope {self.clip_scope!r}; use {' or '.join(CLIP_SCOPES)}"
            )
        if self.nesterov and self.momentum <= 0:
            raise HarnessError("train.nesterov needs a positive train.momentum")


CELL_IMPLEMENTATIONS = ("fused", "reference")
AUTOCAST_DTYPES = ("none", "bf16")


@dataclass(frozen=True)
class ComputeSettings:
    """How the supernet computes: equal results to float tolerance, so all are in the key.

    ``cell`` ``fused`` groups a cell's work by source node, ``reference`` runs op by op as
    the benchmark's code does (what format-1 stores used); ``autocast`` ``bf16`` runs
    convolutions in bfloat16 (results differ beyond float tolerance); ``compile`` wraps the
    supernet in ``torch.compile``.
    """

    cell: str = "fused"
    channels_last: bool = True
    autocast: str = "none"
    compile: bool = False

    def validate(self) -> None:
        check_field_types(self, "compute")
        if self.cell not in CELL_IMPLEMENTATIONS:
            raise HarnessError(
                f"unknown compute.cell {self.cell!r}; use one of {', '.join(CELL_IMPLEMENTATIONS)}"
            )
        if self.autocast not in AUTOCAST_DTYPES:
            raise HarnessError(
                f"unknown compute.autocast {self.autocast!r}; "
                f"use one of {', '.join(AUTOCAST_DTYPES)}"
            )
        for name in ("channels_last", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise HarnessError(f"compute.{name} must be true or false")


# Fields added after store format 2, with the default that reproduces the earlier behaviour.
LATER_FIELDS: dict[str, dict[str, Any]] = {
    "space": {"ops": None, "edge_ops": None, "cell_conv_bias": None},
    "train": {"nesterov": False, "clip_scope": "weights", "initial_checkpoint": False},
    "data": {"split_file": None},
}

# What made stores written before the compute section existed (store format 1).
FORMAT_1_COMPUTE = ComputeSettings(cell="reference", channels_last=False)


@dataclass(frozen=True)
class ExperimentConfig:
    preset: str = "paper"
    space: SpaceSettings = field(default_factory=SpaceSettings)
    data: DataSettings = field(default_factory=DataSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    compute: ComputeSettings = field(default_factory=ComputeSettings)
    algorithm: str = "darts"
    algorithm_options: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"

    def validate(self) -> ExperimentConfig:
        self.space.validate()
        self.data.validate()
        self.train.validate()
        self.compute.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        """The settings as recorded and hashed; fields added after store format 2 are left
        out while at their default, so that stores made before they existed keep their
        keys (a non-default value is recorded and changes the key)."""
        raw = dataclasses.asdict(self)
        for section, defaults in LATER_FIELDS.items():
            for name, default in defaults.items():
                if raw[section][name] == default:
                    del raw[section][name]
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ExperimentConfig:
        return cls(
            preset=raw["preset"],
            space=SpaceSettings(**raw["space"]),
            data=DataSettings(**raw["data"]),
            train=TrainSettings(
                **{**raw["train"], "arch_betas": tuple(raw["train"]["arch_betas"])}
            ),
            compute=ComputeSettings(**raw["compute"]) if "compute" in raw else FORMAT_1_COMPUTE,
            algorithm=raw["algorithm"],
            algorithm_options=dict(raw["algorithm_options"]),
            device=raw["device"],
        )


def _positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise HarnessError(f"{name} must be positive, got {value}")


def _in_range(name: str, value: float, low: float, high: float = math.inf,
              low_open: bool = False) -> None:  # fmt: skip
    """``value`` finite and in [low, high) (in (low, high) when ``low_open``)."""
    below = value <= low if low_open else value < low
    if not math.isfinite(value) or below or value >= high:
        if math.isinf(high):
            wanted = f"{'>' if low_open else '>='} {low}"
        else:
            wanted = f"in {'(' if low_open else '['}{low}, {high})"
        raise HarnessError(f"{name} must be a finite number {wanted}, got {value}")


def check_field_types(settings: Any, section: str) -> None:
    """Every field of a settings dataclass has its declared type (ints pass for floats;
    booleans never pass for numbers), so a typo in ``--set`` is refused, not stored."""
    hints = typing.get_type_hints(type(settings))
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if not _has_type(value, hints[f.name]):
            expected = _type_name(hints[f.name])
            raise HarnessError(f"{section}.{f.name} must be {expected}, got {value!r}")


def _has_type(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        args = typing.get_args(hint)
        return (isinstance(value, tuple | list) and len(value) == len(args)
                and all(_has_type(v, a) for v, a in zip(value, args, strict=True)))  # fmt: skip
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
    args = typing.get_args(hint)
    if type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return f"{_type_name(inner[0])} or none"
    if typing.get_origin(hint) is tuple:
        return f"{len(args)} numbers"
    return names.get(hint, str(hint))
