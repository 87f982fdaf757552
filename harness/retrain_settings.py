"""How ``harness retrain`` trains a genotype's network: :class:`RetrainSettings`, the
published protocols (:data:`PROTOCOLS`) and the fidelity label a result is recorded at.
The jobs themselves: :mod:`harness.retraining`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from harness.config import check_field_types
from harness.errors import HarnessError
from harness.keys import hash_settings


@dataclass(frozen=True)
class RetrainSettings:
    """How a genotype is retrained. Defaults: DARTS's CIFAR-10 evaluation (quark0/darts
    ``cnn/train.py``): 20 cells at C=36, 600 epochs, batch 96, SGD 0.025 cosine to 0,
    momentum 0.9, weight decay 3e-4, clip 5, auxiliary head weight 0.4, drop-path 0.2
    (scaled linearly over the epochs), cutout 16, the full training and test sets.

    ``channels_last`` is how the network computes, not what it is trained to: the DARTS and
    NAS-Bench-201 networks run in channels-last memory (1.4-1.6x a training step on a CPU,
    ``benchmarks/retrain_step.py``; equal to float tolerance, tested in float64). It joins
    the store key, since float-level differences grow over the epochs, but not the fidelity
    label; ``False`` reproduces, under their old keys, retrains stored before it existed."""

    protocol: str = "paper"  # a label: the fidelity says whether the values are its own
    channels: int = 36
    layers: int = 20
    epochs: int = 600
    batch_size: int = 96
    lr: float = 0.025
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    auxiliary_weight: float = 0.4
    drop_path: float = 0.2
    cutout: int = 16
    resolution: int = 32
    train_images: int | None = None  # None: every training image
    test_images: int | None = None  # None: every test image
    subset_seed: int = 0  # which images a subset takes
    checkpoint_every: int = 1  # how often a resumable state is written (not in the key)
    channels_last: bool = True  # a space's network may ignore it (a plugin's, say)

    def validate(self) -> RetrainSettings:
        check_field_types(self, "retrain")
        for name in ("channels", "layers", "epochs", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise HarnessError(f"retrain.{name} must be positive, got {getattr(self, name)}")
        if self.layers < 3:
            raise HarnessError("retrain.layers must be at least 3 (two reduction cells and one "
                               "normal cell)")  # fmt: skip
        for name in ("lr", "grad_clip"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise HarnessError(f"retrain.{name} must be a positive number")
        if not 0 <= self.lr_min <= self.lr:
            raise HarnessError(f"retrain.lr_min must be in [0, lr], got {self.lr_min}")
        if not (0 <= self.drop_path < 1 and 0 <= self.momentum < 1):
            raise HarnessError("retrain.drop_path and retrain.momentum must be in [0, 1)")
        if self.weight_decay < 0 or self.auxiliary_weight < 0 or self.cutout < 0:
            raise HarnessError("retrain.weight_decay, auxiliary_weight and cutout must be >= 0")
        if not 8 <= self.resolution <= 32:
            raise HarnessError(f"retrain.resolution must be in 8..32, got {self.resolution}")
        if self.auxiliary_weight > 0 and self.resolution != 32:
            raise HarnessError(
                "the auxiliary head is built for the 8x8 maps of 32x32 images: set "
                f"retrain.auxiliary_weight=0 at resolution {self.resolution}"
            )
        for name in ("train_images", "test_images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise HarnessError(f"retrain.{name} must be positive or none, got {value}")
        return self

    def identity(self) -> dict[str, Any]:
        """What determines the trained network (the key): all but the label and cadence, and
        ``channels_last`` only when set (retrains stored before it existed ran without)."""
        values = dataclasses.asdict(self)
        del values["protocol"], values["checkpoint_every"]
        if not self.channels_last:
            del values["channels_last"]
        return values

    def protocol_values(self) -> dict[str, Any]:
        """What the fidelity label compares with the protocol's own: the identity without
        how the network computes."""
        values = self.identity()
        values.pop("channels_last", None)
        return values


PROTOCOLS: dict[str, RetrainSettings] = {
    "paper": RetrainSettings(),
    # Minutes on a CPU: 8 cells at C=16 on 16x16 images (cutout scaled with them; no
    # auxiliary head, which needs 32x32), 10 epochs of 5000 training images, 2000 test.
    "proxy": RetrainSettings(
        protocol="proxy", channels=16, layers=8, epochs=10, resolution=16, cutout=8,
        auxiliary_weight=0.0, train_images=5000, test_images=2000,
    ),  # fmt: skip
    # RobustDARTS's evaluation (src/evaluation/args.py; --cutout --auxiliary): DARTS's
    # recipe at 8 cells and C=16, with which DARTS-PT evaluated CIFAR-100 and SVHN.
    "robustdarts": RetrainSettings(protocol="robustdarts", channels=16, layers=8),
    "smoke": RetrainSettings(
        protocol="smoke", channels=4, layers=5, epochs=2, batch_size=32, resolution=8,
        cutout=4, auxiliary_weight=0.0, train_images=128, test_images=64,
    ),  # fmt: skip
}


def retrain_settings(protocol: str, overrides: dict[str, Any] | None = None) -> RetrainSettings:
    if protocol not in PROTOCOLS:
        raise HarnessError(f"unknown retrain protocol {protocol!r}; available: "
                           f"{', '.join(PROTOCOLS)}")  # fmt: skip
    known = {f.name for f in dataclasses.fields(RetrainSettings)} - {"protocol"}
    unknown = set(overrides or {}) - known
    if unknown:
        raise HarnessError(f"unknown retrain setting(s) {', '.join(sorted(unknown))}; known: "
                           f"{', '.join(sorted(known))}")  # fmt: skip
    return dataclasses.replace(PROTOCOLS[protocol], **(overrides or {})).validate()


def fidelity(settings: RetrainSettings) -> str:
    """``retrain-<protocol>`` when the values are the protocol's own, else marked custom."""
    values = settings.protocol_values()
    if values == PROTOCOLS[settings.protocol].protocol_values():
        return f"retrain-{settings.protocol}"
    return f"retrain-{settings.protocol}-custom-{hash_settings(values)[:6]}"
