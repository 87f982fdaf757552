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
    ImageArrays,
    downsample,
    search_split,
)
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
    """(weight, alpha) image indices; raises before any work when the data cannot give them.
    (A resolved experiment holds them: :attr:`harness.experiment.Experiment.split`.)"""
    if settings.split_file is None:
        return search_split(num_train, settings.split_seed, settings.images_per_split)
    return read_split_file(settings.split_file).halves(num_train, settings.images_per_split)


def make_search_data(
    settings: DataSettings,
    arrays: ImageArrays,
    seed: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    split: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> SearchData:
    """The batch streams of one seed; ``split``: the (weight, alpha) indices when already
    resolved (else derived from ``settings``)."""
    weight_idx, alpha_idx = split or split_indices(settings, len(arrays.train_labels))
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
