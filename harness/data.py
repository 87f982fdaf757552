"""Data set loading (CIFAR-10, CIFAR-100, SVHN) and caching; splits and mini-batches are
:mod:`harness.batches` (re-exported here).

CIFAR-10 has two sources: an image-folder copy (``train/<class>/*.jpg``, ``test/<class>/*``)
and the official python pickles that torchvision downloads. CIFAR-100 and SVHN (the other
RobustDARTS data sets) are read from their official files only. Each is decoded once into
uint8 tensors and cached as a single ``.pt`` file, so every later run starts in well under a
second.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from PIL import Image

# Batching lives in harness.batches; its names are re-exported here for existing imports.
from harness.batches import (  # noqa: F401
    MEAN,
    NORMALISATION,
    STD,
    Batches,
    _seed_for,
    downsample,
    search_split,
)
from harness.config import DATASET_NAMES, check_dataset_source
from harness.errors import HarnessError
from harness.store import atomic_write

log = logging.getLogger(__name__)

# Bump whenever decoding or the cache layout changes, so stale caches are never reused.
CACHE_FORMAT_VERSION = 1

NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10}

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp"}
PICKLE_DIR = "cifar-10-batches-py"
_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR100_DIR = "cifar-100-python"
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
# Below this many images a process pool costs more to start than it saves.
_PARALLEL_MIN_IMAGES = 4096
_CHUNK = 2500

# (train images, train labels, test images, test labels, class names)
_Decoded = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]


@dataclass
class ImageArrays:
    """A decoded data set (CIFAR-10, CIFAR-100 or SVHN): uint8 N x 3 x H x W images and int64
    labels."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    fingerprint: str



def fingerprint_arrays(
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    classes: list[str],
) -> str:
    """sha256 over shapes, pixels, labels and class names: identical data <=> identical key."""
    h = hashlib.sha256()
    for t in (train_images, train_labels, test_images, test_labels):
        h.update(repr((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.contiguous().numpy().tobytes())
    h.update("\n".join(classes).encode())
    return h.hexdigest()


def cache_path(
    source: str, root: str | Path, cache_dir: str | Path, dataset: str = "cifar10"
) -> Path:
    key = f"{source}|{Path(root).expanduser().resolve()}|v{CACHE_FORMAT_VERSION}"
    if dataset != "cifar10":  # CIFAR-10's key predates the other data sets; existing caches stay
        key = f"{dataset}|{key}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(cache_dir).expanduser() / f"{dataset}-{source}-{digest}.pt"


def load_cifar10(
    source: str, root: str | Path, cache_dir: str | Path, download: bool = False
) -> ImageArrays:
    """Return CIFAR-10 from the cache for (source, root), decoding and caching it on a miss."""
    return load_dataset("cifar10", source, root, cache_dir, download=download)


def load_dataset(
    dataset: str, source: str, root: str | Path, cache_dir: str | Path, download: bool = False
) -> ImageArrays:
    """Return ``dataset`` from the cache for (source, root), decoding and caching it on a miss.

    ``dataset`` is one of :data:`DATASETS`; CIFAR-100 and SVHN need ``source="torchvision"``.
    """
    check_dataset_source(dataset, source)
    name = DATASET_NAMES[dataset]
    root = Path(root).expanduser().resolve()
    path = cache_path(source, root, cache_dir, dataset)
    stamp = path.with_name(path.name + ".source")
    if path.is_file():
        # The cache is keyed by the source's path: reuse it only while every source file
        # still has the size and modification time it had when the cache was made.
        current = source_signature(source, root, dataset)
        recorded = stamp.read_text().strip() if stamp.is_file() else None
        if recorded == current:
            cached = _load_cache(path, name)
            if cached is not None:
                return cached
        else:
            log.warning("%s at %s changed since its cache %s was made (or the cache "
                        "predates this check); decoding it again", name, root, path)  # fmt: skip
    data = _decode(source, root, download, dataset)
    _save_cache(data, path, name)
    signature = source_signature(source, root, dataset)
    atomic_write(stamp, lambda handle: handle.write(signature.encode()))
    return data


def source_signature(source: str, root: Path, dataset: str = "cifar10") -> str:
    """sha256 over the name, size and modification time of every file the decoder reads."""
    if dataset == "svhn":
        return _files_signature(root, [root / name for name in SVHN_FILES.values()])
    folders = [root / (CIFAR100_DIR if dataset == "cifar100" else PICKLE_DIR)]
    if source == "folder":  # the images _list_split decodes; scandir keeps this ~0.3 s for 60k
        folders = [c for split in ("train", "test") if (root / split).is_dir()
                   for c in sorted((root / split).iterdir())
                   if c.is_dir() and not c.name.startswith(".")]  # fmt: skip
    h = hashlib.sha256()
    for folder in folders:
        if not folder.is_dir():
            continue
        prefix = folder.relative_to(root)
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                wanted = source != "folder" or (
                    os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES
                    and not entry.name.startswith(".")
                )
                if wanted and entry.is_file():
                    info = entry.stat()
                    h.update(f"{prefix}/{entry.name}|{info.st_size}|{info.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _files_signature(root: Path, files: list[Path]) -> str:
    # Named files rather than a folder scan: SVHN's .mat files usually sit beside other data.
    h = hashlib.sha256()
    for path in files:
        if path.is_file():
            info = path.stat()
            h.update(f"{path.relative_to(root)}|{info.st_size}|{info.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _load_cache(path: Path, name: str = "CIFAR-10") -> ImageArrays | None:
    try:
        fields = torch.load(path, map_location="cpu", weights_only=True)
        data = ImageArrays(**fields)
    except Exception as exc:  # any unreadable or outdated cache is simply rebuilt
        log.warning("Ignoring unreadable %s cache %s (%s); decoding again", name, path, exc)
        return None
    log.info(
        "Loaded %s cache %s (%d train / %d test)",
        name,
        path,
        len(data.train_labels),
        len(data.test_labels),
    )
    return data


def _save_cache(data: ImageArrays, path: Path, name: str = "CIFAR-10") -> None:
    # A crash or a concurrent run never sees half a file.
    atomic_write(path, lambda handle: torch.save(vars(data), handle))
    log.info("Wrote %s cache %s (%.1f MB)", name, path, path.stat().st_size / 1e6)


def _decode(source: str, root: Path, download: bool, dataset: str = "cifar10") -> ImageArrays:
    if dataset == "cifar100":
        decoded = _decode_cifar100(root, download)
    elif dataset == "svhn":
        decoded = _decode_svhn(root, download)
    elif source == "folder":
        decoded = _decode_folder(root)
    else:
        decoded = _decode_pickles(root, download)
    return ImageArrays(*decoded, fingerprint=fingerprint_arrays(*decoded))


def _folder_hint(root: Path) -> str:
    return (
        f"pass --data PATH or set HARNESS_CIFAR10 to a folder with train/<class>/ and "
        f"test/<class>/ images (got {root}), or use --data-source torchvision"
    )


def _list_split(root: Path, split: str) -> dict[str, list[Path]]:
    split_dir = root / split
    if not split_dir.is_dir():
        raise HarnessError(f"CIFAR-10 folder has no {split}/ subfolder: {_folder_hint(root)}.")
    files: dict[str, list[Path]] = {}
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        if class_dir.name.startswith("."):
            continue
        files[class_dir.name] = sorted(
            p
            for p in class_dir.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if not files[class_dir.name]:
            raise HarnessError(f"Class folder {class_dir} has no images: remove it or fill it.")
    if not files:
        raise HarnessError(f"{split_dir} has no class subfolders: {_folder_hint(root)}.")
    return files


def _decode_files(paths: list[Path]) -> np.ndarray:
    images = []
    for p in paths:
        try:
            with Image.open(p) as im:
                images.append(np.asarray(im if im.mode == "RGB" else im.convert("RGB")))
        except OSError as exc:
            raise HarnessError(f"Cannot decode image {p} ({exc}): replace or delete it.") from exc
        if images[-1].shape != images[0].shape:
            raise HarnessError(f"Image {p} differs in size from {paths[0]}: resize it to match.")
    # One array per chunk: pickling back thousands of tiny arrays from workers is slow.
    return np.stack(images)


def _decode_images(paths: list[Path], where: Path) -> torch.Tensor:
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    n_jobs = min(os.cpu_count() or 1, 8) if len(paths) >= _PARALLEL_MIN_IMAGES else 1
    # PIL decoding is GIL-bound for tiny images, so processes (not threads) give the speed-up.
    results = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_decode_files)(c) for c in chunks
    )
    arrays: list[np.ndarray] = []
    for arr in results:
        arrays.append(arr)
        log.info("Decoded %d/%d images from %s", sum(map(len, arrays)), len(paths), where)
    if len({a.shape[1:] for a in arrays}) > 1:
        raise HarnessError(f"Images in {where} differ in size: resize them all to one size.")
    return torch.from_numpy(np.concatenate(arrays)).permute(0, 3, 1, 2).contiguous()


def _decode_folder(root: Path) -> _Decoded:
    if not root.is_dir():
        raise HarnessError(f"CIFAR-10 image folder {root} not found: {_folder_hint(root)}.")
    train_files, test_files = _list_split(root, "train"), _list_split(root, "test")
    classes = sorted(train_files)
    if classes != sorted(test_files):
        raise HarnessError(
            f"Class folders differ between {root / 'train'} and {root / 'test'} "
            f"({classes} vs {sorted(test_files)}): give both splits the same class folders."
        )
    out = []
    for split, files in (("train", train_files), ("test", test_files)):
        paths = [p for c in classes for p in files[c]]
        labels = [i for i, c in enumerate(classes) for _ in files[c]]
        out += [_decode_images(paths, root / split), torch.tensor(labels, dtype=torch.int64)]
    if out[0].shape[1:] != out[2].shape[1:]:
        raise HarnessError(f"Train and test images in {root} differ in size: make them equal.")
    return out[0], out[1], out[2], out[3], classes


def _decode_pickles(root: Path, download: bool) -> _Decoded:
    batch_dir = root / PICKLE_DIR
    if not batch_dir.is_dir() and download:
        import torchvision  # deferred: only this rare path needs it

        log.info("Downloading CIFAR-10 into %s via torchvision", root)
        try:
            torchvision.datasets.CIFAR10(str(root), train=True, download=True)
        except (OSError, RuntimeError) as exc:
            raise HarnessError(
                f"Could not download CIFAR-10 into {root} ({exc}): check the network or "
                f"place {PICKLE_DIR} there by hand."
            ) from exc
    if not batch_dir.is_dir():
        raise HarnessError(
            f"Official CIFAR-10 batches not found at {batch_dir}: pass --download to fetch them "
            f"or point --data at the folder that contains {PICKLE_DIR}."
        )
    classes = [n.decode() for n in _read_pickle(batch_dir / "batches.meta", b"label_names")[0]]
    train_x, train_y = zip(*(_read_batch(batch_dir / name) for name in _TRAIN_BATCHES), strict=True)
    test_x, test_y = _read_batch(batch_dir / "test_batch")
    return torch.cat(train_x), torch.cat(train_y), test_x, test_y, classes


def _read_pickle(path: Path, *keys: bytes, name: str = "CIFAR-10") -> list:
    # The official files are trusted pickles; the (bytes-keyed) dict layout is fixed by the release.
    try:
        with path.open("rb") as f:
            obj = pickle.load(f, encoding="bytes")
        return [obj[k] for k in keys]
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError) as exc:
        raise HarnessError(
            f"Cannot read {name} batch {path} ({exc!r}): delete {path.parent} and fetch it again."
        ) from exc


def _read_batch(
    path: Path, label_key: bytes = b"labels", name: str = "CIFAR-10"
) -> tuple[torch.Tensor, torch.Tensor]:
    data, labels = _read_pickle(path, b"data", label_key, name=name)
    data, labels = np.asarray(data, dtype=np.uint8), np.asarray(labels, dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise HarnessError(f"{path} has malformed data {data.shape}: delete it and fetch it again.")
    # Each row is the 1024 red, then green, then blue values, each plane row-major: i.e. CHW.
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


def _fetch(name: str, root: Path, expected: str, fetch) -> None:
    """Run ``fetch(torchvision.datasets)``, turning a failed download into one sentence."""
    import torchvision  # deferred: only this rare path needs it

    log.info("Downloading %s into %s via torchvision", name, root)
    try:
        fetch(torchvision.datasets)
    except (OSError, RuntimeError) as exc:
        raise HarnessError(
            f"Could not download {name} into {root} ({exc}): check the network or "
            f"place {expected} there by hand."
        ) from exc


def _decode_cifar100(root: Path, download: bool) -> _Decoded:
    folder = root / CIFAR100_DIR
    if not folder.is_dir() and download:
        # One archive holds train, test and meta, so fetching the train split brings all three.
        _fetch(
            "CIFAR-100",
            root,
            CIFAR100_DIR,
            lambda tv: tv.CIFAR100(str(root), train=True, download=True),
        )
    if not folder.is_dir():
        raise HarnessError(
            f"Official CIFAR-100 files not found at {folder}: pass --download to fetch them "
            f"or point --data at the folder that contains {CIFAR100_DIR}."
        )
    names = _read_pickle(folder / "meta", b"fine_label_names", name="CIFAR-100")[0]
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    out = []
    for split in ("train", "test"):
        images, labels = _read_batch(folder / split, b"fine_labels", name="CIFAR-100")
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < len(classes):
            raise HarnessError(
                f"{folder / split} has labels outside 0..{len(classes) - 1}: delete "
                f"{folder} and fetch it again."
            )
        out += [images, labels]
    return out[0], out[1], out[2], out[3], classes


def _decode_svhn(root: Path, download: bool) -> _Decoded:
    paths = {split: root / name for split, name in SVHN_FILES.items()}
    if download:
        for split, path in paths.items():
            if not path.is_file():
                _fetch(
                    "SVHN",
                    root,
                    path.name,
                    lambda tv, s=split: tv.SVHN(str(root), split=s, download=True),
                )
    missing = [path for path in paths.values() if not path.is_file()]
    if missing:
        raise HarnessError(
            f"Official SVHN file {missing[0]} not found: pass --download to fetch it or point "
            f"--data at the folder that contains {' and '.join(SVHN_FILES.values())}."
        )
    out = []
    for path in paths.values():
        out += _read_svhn(path)
    return out[0], out[1], out[2], out[3], [str(digit) for digit in range(10)]


def _read_svhn(path: Path) -> list[torch.Tensor]:
    import scipy.io  # deferred: only SVHN needs it

    try:
        mat = scipy.io.loadmat(str(path))
        images, labels = np.asarray(mat["X"]), np.asarray(mat["y"]).astype(np.int64).reshape(-1)
    except Exception as exc:  # scipy raises many types for a truncated or foreign file
        raise HarnessError(
            f"Cannot read SVHN file {path} ({exc!r}): delete it and fetch it again."
        ) from exc
    well_formed = images.dtype == np.uint8 and images.shape == (32, 32, 3, len(labels))
    if not well_formed:
        raise HarnessError(
            f"{path} has malformed data {images.dtype} {images.shape} for {len(labels)} labels: "
            "delete it and fetch it again."
        )
    # The release labels digit 0 as 10; torchvision (and so RobustDARTS) maps it back to 0.
    labels[labels == 10] = 0
    if len(labels) and not 0 <= labels.min() <= labels.max() <= 9:
        raise HarnessError(f"{path} has labels outside 1..10: delete it and fetch it again.")
    # X is H x W x C x N; the harness keeps N x C x H x W like the CIFAR pickles.
    images = np.ascontiguousarray(images.transpose(3, 2, 0, 1))
    return [torch.from_numpy(images), torch.from_numpy(labels)]
