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
from pathlib import Path

import torch

from harness.errors import HarnessError


def read_split_file(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, alpha) indices: the file's ``train`` and ``valid`` halves."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
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
    return weight, alpha


def split_file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
