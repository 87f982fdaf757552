"""The search splits of one experiment, ready as batch streams on the device.

Training uses the weight half (augmented) for weight steps and the alpha half for
alpha steps; evaluation and selection methods score on the alpha half without
augmentation (the DARTS "validation" split).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.config import DataSettings
from harness.data import (
    NORMALISATION,
    NUM_CLASSES,
    Batches,
    CIFAR10Arrays,
    downsample,
    search_split,
)
from harness.errors import HarnessError
from harness.split_file import read_split_file


@dataclass
class SearchData:
    weight_batches: Batches  # augmented; weight steps
    alpha_batches: Batches  # augmented like the reference code; alpha steps
    weight_eval: Batches  # no augmentation; training-loss criteria (opp-loss)
    alpha_eval: Batches  # no augmentation; validation accuracy and selection scores
    fingerprint: str
    num_classes: int


def _stream_seed(seed: int, stream: int) -> int:
    # Separate, fixed streams per purpose so adding one never shifts another.
    return seed * 1000 + stream


def split_indices(settings: DataSettings, num_train: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, alpha) image indices; raises before any work when the data cannot give them."""
    if settings.split_file is None:
        return search_split(num_train, settings.split_seed, settings.images_per_split)
    return official_split(settings, num_train)


def official_split(settings: DataSettings, num_train: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The split file's halves; ``images_per_split`` takes the first N of each."""
    weight, alpha = read_split_file(settings.split_file)
    largest = int(max(weight.max(), alpha.max()))
    if largest >= num_train:
        raise HarnessError(
            f"split file {settings.split_file} indexes image {largest}, but the training set "
            f"has {num_train}: it belongs to another data set"
        )
    count = settings.images_per_split
    if count is not None:
        if count > min(len(weight), len(alpha)):
            raise HarnessError(
                f"images_per_split={count} exceeds the split file's halves "
                f"({len(weight)} / {len(alpha)} images)"
            )
        weight, alpha = weight[:count], alpha[:count]
    return weight, alpha


def make_search_data(
    settings: DataSettings,
    arrays: CIFAR10Arrays,
    seed: int,
    batch_size: int,
    device: torch.device | str = "cpu",
) -> SearchData:
    weight_idx, alpha_idx = split_indices(settings, len(arrays.train_labels))
    weight_images = downsample(arrays.train_images[weight_idx], settings.resolution)
    alpha_images = downsample(arrays.train_images[alpha_idx], settings.resolution)
    weight_labels = arrays.train_labels[weight_idx]
    alpha_labels = arrays.train_labels[alpha_idx]
    mean, std = NORMALISATION[settings.dataset]

    def batches(images, labels, stream, augment):
        stream_seed = _stream_seed(seed, stream)
        return Batches(images, labels, batch_size, stream_seed, augment, device, mean=mean, std=std)

    return SearchData(
        weight_batches=batches(weight_images, weight_labels, 1, settings.augment),
        alpha_batches=batches(alpha_images, alpha_labels, 2, settings.augment),
        weight_eval=batches(weight_images, weight_labels, 3, False),
        alpha_eval=batches(alpha_images, alpha_labels, 4, False),
        fingerprint=arrays.fingerprint,
        num_classes=NUM_CLASSES[settings.dataset],
    )
