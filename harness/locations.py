"""Where the data, the ground truth and the caches are: CLI option > environment > default.

The offline layout of this project keeps data beside the checkout
(``../shared/data``); real users point the harness at their own copies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.config import DATASET_NAMES, check_dataset_source
from harness.errors import HarnessError

DATA_ENV = "HARNESS_CIFAR10"
CACHE_ENV = "HARNESS_CACHE"
RESULTS_ENV = "HARNESS_RESULTS"
OFFLINE_DATA_ROOT = Path("..") / "shared" / "data"


@dataclass(frozen=True)
class DataLocation:
    """Everything needed to load a data set in any process (so it can be sent to workers)."""

    source: str  # "folder" or "torchvision"
    root: Path
    cache_dir: Path
    download: bool = False
    # Last and defaulted: locations pickled before CIFAR-100/SVHN still load as CIFAR-10.
    dataset: str = "cifar10"

    def load(self):
        from harness.data import load_dataset

        return load_dataset(
            self.dataset, self.source, self.root, self.cache_dir, download=self.download
        )


def resolve_data_location(
    cli_path: str | None,
    source: str = "folder",
    cache_dir: str | None = None,
    download=False,
    dataset: str = "cifar10",
) -> DataLocation:
    check_dataset_source(dataset, source)
    name = DATASET_NAMES[dataset]
    # HARNESS_CIFAR10 and the offline image folder hold CIFAR-10 only.
    raw = cli_path or (os.environ.get(DATA_ENV) if dataset == "cifar10" else None)
    if raw is None and dataset != "cifar10":
        raise HarnessError(
            f"no {name} location given: pass --data with the folder holding the official "
            f"{name} files (add --download to fetch them there)"
        )
    if raw is None:
        fallback = OFFLINE_DATA_ROOT / "cifar10-jpeg"
        if source == "folder" and fallback.is_dir():
            raw = str(fallback)
        else:
            raise HarnessError(
                "no CIFAR-10 location given: pass --data PATH or set HARNESS_CIFAR10 "
                "(an image folder with train/<class>/ and test/<class>/, or with "
                "--data-source torchvision the folder holding cifar-10-batches-py)"
            )
    return DataLocation(
        source=source,
        root=Path(raw).expanduser().resolve(),
        cache_dir=writable_folder(resolve_cache_dir(cache_dir), "--cache", create=False),
        download=download,
        dataset=dataset,
    )


def resolve_cache_dir(cli_value: str | None = None) -> Path:
    raw = cli_value or os.environ.get(CACHE_ENV)
    if raw:
        return Path(raw).expanduser().resolve()
    return Path.home() / ".cache" / "nas-harness"


def resolve_results_dir(cli_value: str | None = None) -> Path:
    return Path(cli_value or os.environ.get(RESULTS_ENV) or "results").expanduser().resolve()


def writable_folder(path: Path, flag: str, create: bool = True) -> Path:
    """``path`` as a folder this process can write in, else one sentence. With ``create``
    False nothing is made: the nearest existing folder above it must be writable (for
    checks at the boundary, before anything else may fail)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise HarnessError(f"{flag} {path} is a file, not a folder: pass a folder")
    if not create:
        existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
        if not existing.is_dir():
            raise HarnessError(f"{flag} {path} lies under the file {existing}: pass a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise HarnessError(f"{flag} {path} cannot be made in {existing} (not writable): "
                               "pass a folder you can write to")  # fmt: skip
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise HarnessError(
            f"cannot create the folder {path} for {flag} ({error.strerror}): pass a folder "
            "you can write to"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise HarnessError(f"{flag} {path} is not writable: pass a folder you can write to")
    return path
