"""Search splits, downsampling and deterministic, augmented mini-batches of decoded images."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from harness.errors import HarnessError

# NAS-Bench-201 reference statistics; using other values would shift every reported accuracy.
MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
# (mean, std) per data set, in [0, 1] units. The CIFAR values are the ones hard-coded in
# NAS-Bench-201's data code (xautodl get_datasets), so accuracies compare with its tables;
# SVHN's are the training-set statistics RobustDARTS normalises with.
NORMALISATION = {
    "cifar10": (MEAN, STD),
    "cifar100": ((129.3 / 255, 124.1 / 255, 112.4 / 255), (68.2 / 255, 65.4 / 255, 70.4 / 255)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}

def search_split(
    num_train: int, split_seed: int, per_split: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint (weight, alpha) index halves of a seeded permutation of range(num_train).

    With an odd ``num_train`` the last permuted index is dropped so both halves match in size.
    """
    half = num_train // 2
    if half < 1:
        raise HarnessError(f"Cannot split {num_train} training images in two: use more data.")
    perm = torch.randperm(num_train, generator=torch.Generator().manual_seed(split_seed))
    weight, alpha = perm[:half], perm[half : 2 * half]
    if per_split is not None:
        if not 1 <= per_split <= half:
            raise HarnessError(
                f"data.images_per_split={per_split} is outside 1..{half} (half of {num_train} "
                "training images): choose a smaller subset size."
            )
        weight, alpha = weight[:per_split], alpha[:per_split]
    return weight.clone(), alpha.clone()


def downsample(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Area-resize uint8 N x C x H x W images to resolution x resolution, returning uint8."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 N x C x H x W, got {images.dtype} {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if resolution == h == w:
        return images
    if not 4 <= resolution <= min(h, w):
        raise HarnessError(
            f"Resolution {resolution} is not in 4..{min(h, w)} for {h}x{w} images: "
            "choose a resolution in that range."
        )
    out = images.new_empty((*images.shape[:2], resolution, resolution))
    # Chunked so that the float copy of 60k images never sits in memory at once.
    for i in range(0, len(images), 4096):
        x = F.interpolate(images[i : i + 4096].float(), size=(resolution, resolution), mode="area")
        out[i : i + 4096] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _seed_for(seed: int, epoch: int) -> int:
    """A 63-bit seed that depends only on (seed, epoch), stable across processes and versions."""
    digest = hashlib.sha256(f"harness.data:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class Batches:
    """Seeded mini-batches with standard CIFAR augmentation (pad 4 + random crop, h-flip).

    Shuffle order and augmentation of epoch ``e`` depend only on (seed, e), so a run resumed at
    epoch ``e`` sees exactly the batches of an uninterrupted run.
    """

    PAD = 4

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        seed: int,
        augment: bool,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
        mean: tuple[float, ...] = MEAN,
        std: tuple[float, ...] = STD,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels):
            raise ValueError(
                f"need uint8 N x C x H x W images and N labels, got "
                f"{images.dtype} {tuple(images.shape)} and {tuple(labels.shape)}"
            )
        if batch_size < 1:
            raise HarnessError(f"Batch size {batch_size} is invalid: use a positive batch size.")
        if len(images) == 0 or (drop_last and len(images) < batch_size):
            raise HarnessError(
                f"{len(images)} images give no batch of size {batch_size}: use more data or "
                "a smaller batch size."
            )
        self.device = torch.device(device)
        # Kept as uint8 on the device: a quarter of the float32 footprint, converted per batch.
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size, self.seed = batch_size, seed
        self.augment, self.drop_last = augment, drop_last
        # Kept so that a copy of these batches (other labels, another seed) can reuse them.
        self.mean, self.std = tuple(mean), tuple(std)
        shape = (1, images.shape[1], 1, 1)
        self._mean = torch.tensor(self.mean, device=self.device).view(shape) * 255
        self._std = torch.tensor(self.std, device=self.device).view(shape) * 255

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def epoch(self, epoch_index: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, (h, w) = len(self.images), self.images.shape[-2:]
        # All randomness is drawn up front on CPU, so it is identical on every device.
        gen = torch.Generator().manual_seed(_seed_for(self.seed, epoch_index))
        order = torch.randperm(n, generator=gen)
        if self.augment:
            off_y = torch.randint(0, 2 * self.PAD + 1, (n,), generator=gen)
            off_x = torch.randint(0, 2 * self.PAD + 1, (n,), generator=gen)
            flip = torch.randint(0, 2, (n,), generator=gen).bool()
            rows = off_y[:, None] + torch.arange(h)
            cols = off_x[:, None] + torch.arange(w)
            cols = torch.where(flip[:, None], cols.flip(1), cols)
            rows, cols = rows.to(self.device), cols.to(self.device)
        order = order.to(self.device)
        for b in range(len(self)):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            idx = order[sl]
            x = self.images[idx]
            if self.augment:
                x = self._crop_flip(x, rows[sl], cols[sl])
            yield (x.float() - self._mean) / self._std, self.labels[idx]

    def _crop_flip(self, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        p = self.PAD
        padded = F.pad(x, (p, p, p, p))  # zero pad in pixel space, as torchvision's RandomCrop
        bi = torch.arange(len(x), device=x.device)[:, None, None, None]
        ci = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


class Tally:
    """Summed cross-entropy and correct predictions over batches: mean loss and accuracy
    per image, however the batches were sized (every evaluation loop adds to one)."""

    def __init__(self) -> None:
        self.loss, self.correct, self.count = 0.0, 0, 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss += F.cross_entropy(logits, labels, reduction="sum").item()
        self.correct += (logits.argmax(1) == labels).sum().item()
        self.count += len(labels)

    @property
    def mean_loss(self) -> float:
        return self.loss / self.count

    @property
    def accuracy(self) -> float:
        return self.correct / self.count
