"""The official NAS-Bench-201 CIFAR-10 search split, read from a file the user supplies.

AutoDL-Projects ships ``configs/nas-benchmark/cifar-split.txt``: two disjoint halves
(25k + 25k) of the official CIFAR-10 training set, by index in the order of the
official ``data_batch_*`` files, in xautodl's config syntax::

    {"train": ["int", ["0", "5", ...]], "valid": ["int", ["1", "2", ...]]}

Plain integer lists (``{"train": [0, 5, ...], "valid": [...]}``) are accepted too.
The harness does not ship the file; without it the seeded split is used, and the run
records which (its content hash is part of the run key).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.errors import HarnessError


@dataclass(frozen=True)
class SplitFile:
    """A split file as read once: its halves and its content hash (what run keys hold)."""

    path: str
    weight: torch.Tensor
    alpha: torch.Tensor
    digest: str

    def halves(
        self, num_train: int, images_per_split: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, alpha) indices into a training set of ``num_train`` images;
        ``images_per_split`` takes the first N of each half."""
        largest = int(max(self.weight.max(), self.alpha.max()))
        if largest >= num_train:
            raise HarnessError(
                f"split file {self.path} indexes image {largest}, but the training set "
                f"has {num_train}: it belongs to another data set"
            )
        weight, alpha = self.weight, self.alpha
        if images_per_split is not None:
            if images_per_split > min(len(weight), len(alpha)):
                raise HarnessError(
                    f"images_per_split={images_per_split} exceeds the split file's halves "
                    f"({len(weight)} / {len(alpha)} images)"
                )
            weight, alpha = weight[:images_per_split], alpha[:images_per_split]
        return weight, alpha


def read_split_file(path: str | Path) -> SplitFile:
    """The file's ``train`` (weight) and ``valid`` (alpha) halves, checked, and its hash."""
    path = Path(path)
    try:
        content = path.read_bytes()
        raw = json.loads(content.decode())
    except FileNotFoundError:
        raise HarnessError(
            f"split file {path} does not exist: pass the path of AutoDL-Projects' "
            "configs/nas-benchmark/cifar-split.txt, or leave data.split_file unset"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HarnessError(f"split file {path} is not readable JSON ({error})") from None
    halves = []
    for name in ("train", "valid"):
        values = raw.get(name) if isinstance(raw, dict) else None
        if isinstance(values, list) and len(values) == 2 and values[0] == "int":
            values = values[1]  # xautodl's ["int", [...]] form
        try:
            indices = [int(v) for v in values]
        except (TypeError, ValueError):
            indices = []
        if not indices or min(indices) < 0:
            raise HarnessError(
                f"split file {path} needs a {name!r} list of non-negative image indices"
            )
        halves.append(torch.tensor(indices, dtype=torch.long))
    weight, alpha = halves
    if len(set(weight.tolist()) & set(alpha.tolist())):
        raise HarnessError(f"split file {path}: its train and valid halves overlap")
    return SplitFile(str(path), weight, alpha, digest_of(content))


def digest_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:16]


def split_file_digest(path: str | Path) -> str:
    """The content hash alone (for keys of settings not resolved into an experiment)."""
    return digest_of(Path(path).read_bytes())
