"""CIFAR-100 and SVHN from their official files, beside an unchanged CIFAR-10.

Every file here is a tiny fake in the official layout; nothing is downloaded (the
torchvision classes are replaced wherever a download would be attempted).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

import harness.data as data
from harness.config import DataSettings
from harness.data import (
    MEAN,
    NORMALISATION,
    NUM_CLASSES,
    STD,
    Batches,
    ImageArrays,
    fingerprint_arrays,
    load_cifar10,
    load_dataset,
)
from harness.errors import HarnessError
from harness.experiment import build_config
from harness.locations import DataLocation, resolve_data_location
from harness.search_data import make_search_data
from harness.store import RunStore
from harness.training import train_supernet

FINE_NAMES = [f"fine{i:02d}" for i in range(100)]


def _write_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(obj, f)


def make_cifar100(root: Path, n_train: int = 12, n_test: int = 5, seed: int = 0) -> dict:
    """Official cifar-100-python pickles (bytes keys); returns the raw arrays written."""
    rng = np.random.default_rng(seed)
    raw = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 100, n)]
        y[0] = 99  # the largest fine label must survive
        _write_pickle(
            root / "cifar-100-python" / split,
            {b"data": x, b"fine_labels": y, b"coarse_labels": [v // 5 for v in y]},
        )
        raw[split] = (x, y)
    _write_pickle(
        root / "cifar-100-python" / "meta",
        {b"fine_label_names": [n.encode() for n in FINE_NAMES], b"coarse_label_names": []},
    )
    return raw


def make_svhn(root: Path, n_train: int = 12, n_test: int = 4, seed: int = 0) -> dict:
    """Official {train,test}_32x32.mat files (X: 32x32x3xN, y: Nx1 in 1..10)."""
    rng = np.random.default_rng(seed)
    raw = {}
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # 1..10, 10 = digit 0
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
        raw[split] = (x, y)
    return raw


def make_cifar10_pickles(root: Path, n: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    raw = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        _write_pickle(folder / name, {b"data": x, b"labels": y})
        raw[name] = (x, y)
    _write_pickle(folder / "batches.meta", {b"label_names": [b"c%d" % i for i in range(10)]})
    return raw


def _touch_later(path: Path) -> None:
    # A rewrite within one clock tick can keep the mtime; push it so the change is seen.
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))


# --- decoding ----------------------------------------------------------------------------------


def test_cifar100_decodes_chw_images_fine_labels_and_names(tmp_path):
    raw = make_cifar100(tmp_path)
    d = load_dataset("cifar100", "torchvision", tmp_path, tmp_path / "cache")
    assert isinstance(d, ImageArrays)
    assert d.classes == FINE_NAMES
    assert d.train_images.shape == (12, 3, 32, 32) and d.test_images.shape == (5, 3, 32, 32)
    assert d.train_images.dtype == torch.uint8 and d.train_labels.dtype == torch.int64
    # Row layout as CIFAR-10: 1024 R, 1024 G, 1024 B values, each plane row-major.
    x, y = raw["train"]
    assert d.train_images[3, 2, 5, 7] == x[3, 2 * 1024 + 5 * 32 + 7]
    assert torch.equal(d.train_images.reshape(12, -1), torch.from_numpy(x))
    assert d.train_labels.tolist() == y and d.test_labels.tolist() == raw["test"][1]
    assert d.fingerprint == fingerprint_arrays(
        d.train_images, d.train_labels, d.test_images, d.test_labels, d.classes
    )


def test_svhn_decodes_hwcn_to_nchw_and_maps_label_10_to_0(tmp_path):
    raw = make_svhn(tmp_path)
    d = load_dataset("svhn", "torchvision", tmp_path, tmp_path / "cache")
    assert d.classes == [str(i) for i in range(10)]
    assert d.train_images.shape == (12, 3, 32, 32) and d.test_images.shape == (4, 3, 32, 32)
    assert d.train_images.dtype == torch.uint8 and d.test_labels.dtype == torch.int64
    x, y = raw["train"]
    assert d.train_images[4, 1, 6, 30] == x[6, 30, 1, 4]
    assert torch.equal(d.train_images, torch.from_numpy(x).permute(3, 2, 0, 1))
    assert y.ravel().tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2]
    assert d.train_labels.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    assert d.test_labels.tolist() == [1, 2, 3, 4]


def test_num_classes_and_normalisation_cover_every_dataset():
    assert NUM_CLASSES == {"cifar10": 10, "cifar100": 100, "svhn": 10}
    assert set(NORMALISATION) == set(NUM_CLASSES)
    assert NORMALISATION["cifar10"] == (MEAN, STD)
    for mean, std in NORMALISATION.values():
        assert len(mean) == len(std) == 3 and all(0 < v < 1 for v in (*mean, *std))


# --- caching -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "make", "changed"),
    [
        ("cifar100", make_cifar100, "cifar-100-python/test"),
        ("svhn", make_svhn, "test_32x32.mat"),
    ],
)
def test_second_load_hits_the_cache_and_a_changed_file_is_decoded_again(
    tmp_path, monkeypatch, dataset, make, changed
):
    make(tmp_path / "src")
    first = load_dataset(dataset, "torchvision", tmp_path / "src", tmp_path / "cache")
    (cached,) = (tmp_path / "cache").glob("*.pt")
    assert cached.name.startswith(f"{dataset}-torchvision-")

    def no_decode(*args):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(data, "_decode", no_decode)
    again = load_dataset(dataset, "torchvision", tmp_path / "src", tmp_path / "cache")
    assert again.fingerprint == first.fingerprint
    assert torch.equal(again.train_images, first.train_images)
    monkeypatch.undo()

    make(tmp_path / "src2", seed=1)  # same sizes, other pixels
    os.replace(tmp_path / "src2" / changed, tmp_path / "src" / changed)
    _touch_later(tmp_path / "src" / changed)
    fresh = load_dataset(dataset, "torchvision", tmp_path / "src", tmp_path / "cache")
    assert fresh.fingerprint != first.fingerprint
    assert torch.equal(fresh.train_images, first.train_images)
    assert not torch.equal(fresh.test_images, first.test_images)


def test_datasets_in_one_folder_get_separate_caches(tmp_path):
    make_cifar100(tmp_path)
    make_svhn(tmp_path)
    make_cifar10_pickles(tmp_path)
    a = load_dataset("cifar100", "torchvision", tmp_path, tmp_path / "cache")
    b = load_dataset("svhn", "torchvision", tmp_path, tmp_path / "cache")
    c = load_dataset("cifar10", "torchvision", tmp_path, tmp_path / "cache")
    assert len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3
    names = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").glob("*.pt"))
    assert names == ["cifar10", "cifar100", "svhn"]


def test_cifar10_cache_path_signature_and_fingerprint_are_unchanged(tmp_path):
    raw = make_cifar10_pickles(tmp_path / "c10")
    root = (tmp_path / "c10").resolve()
    # The key and file name every existing CIFAR-10 cache was written under.
    digest = hashlib.sha256(f"torchvision|{root}|v1".encode()).hexdigest()[:16]
    expected = tmp_path / "cache" / f"cifar10-torchvision-{digest}.pt"
    assert data.cache_path("torchvision", root, tmp_path / "cache") == expected
    assert data.cache_path("torchvision", root, tmp_path / "cache", "cifar10") == expected
    d = load_cifar10("torchvision", root, tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").glob("*.pt")] == [expected.name]
    # The recorded signature: the pickles' names, sizes and mtimes, as before.
    h = hashlib.sha256()
    for entry in sorted((root / "cifar-10-batches-py").iterdir()):
        info = entry.stat()
        h.update(f"cifar-10-batches-py/{entry.name}|{info.st_size}|{info.st_mtime_ns}\n".encode())
    assert expected.with_name(expected.name + ".source").read_text() == h.hexdigest()
    names = [f"data_batch_{i}" for i in range(1, 6)]
    train_x = np.concatenate([raw[n][0] for n in names]).reshape(-1, 3, 32, 32)
    train_y = [v for n in names for v in raw[n][1]]
    assert d.fingerprint == fingerprint_arrays(
        torch.from_numpy(train_x),
        torch.tensor(train_y),
        torch.from_numpy(raw["test_batch"][0].reshape(-1, 3, 32, 32)),
        torch.tensor(raw["test_batch"][1]),
        [f"c{i}" for i in range(10)],
    )
    same = load_dataset("cifar10", "torchvision", root, tmp_path / "cache")
    assert same.fingerprint == d.fingerprint


# --- user errors -------------------------------------------------------------------------------


def test_missing_cifar100_names_the_folder_and_download(tmp_path):
    with pytest.raises(HarnessError, match=r"CIFAR-100.*cifar-100-python.*--download") as err:
        load_dataset("cifar100", "torchvision", tmp_path / "none", tmp_path / "cache")
    assert str(tmp_path / "none" / "cifar-100-python") in str(err.value)
    assert not (tmp_path / "cache").exists()


def test_missing_svhn_file_names_the_path_and_download(tmp_path):
    make_svhn(tmp_path)
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(HarnessError, match="--download") as err:
        load_dataset("svhn", "torchvision", tmp_path, tmp_path / "cache")
    assert str(tmp_path / "test_32x32.mat") in str(err.value)


@pytest.mark.parametrize("dataset", ["cifar100", "svhn"])
def test_folder_source_is_refused_with_the_fix(tmp_path, dataset):
    with pytest.raises(HarnessError, match="official files.*'torchvision'"):
        load_dataset(dataset, "folder", tmp_path, tmp_path / "cache")


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    with pytest.raises(HarnessError, match="'mnist'.*cifar10, cifar100, svhn"):
        load_dataset("mnist", "torchvision", tmp_path, tmp_path / "cache")


def test_damaged_cifar100_pickle(tmp_path):
    make_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "train").write_bytes(b"not a pickle")
    with pytest.raises(HarnessError, match=r"Cannot read CIFAR-100 batch .*train.*fetch it again"):
        load_dataset("cifar100", "torchvision", tmp_path, tmp_path / "cache")


def test_cifar100_labels_beyond_the_names_are_damage(tmp_path):
    make_cifar100(tmp_path)
    x = np.zeros((2, 3072), dtype=np.uint8)
    _write_pickle(tmp_path / "cifar-100-python" / "test", {b"data": x, b"fine_labels": [0, 100]})
    with pytest.raises(HarnessError, match="labels outside 0..99"):
        load_dataset("cifar100", "torchvision", tmp_path, tmp_path / "cache")


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"garbage", "Cannot read SVHN file"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1))}, "malformed"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1], [11]])}, "outside 1..10"),
        ({"Y": np.zeros(1)}, "Cannot read SVHN file"),
    ],
)
def test_damaged_svhn_file(tmp_path, content, pattern):
    make_svhn(tmp_path)
    target = tmp_path / "train_32x32.mat"
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        scipy.io.savemat(target, content)
    with pytest.raises(HarnessError, match=f"{pattern}.*delete it and fetch it again"):
        load_dataset("svhn", "torchvision", tmp_path, tmp_path / "cache")


# --- downloads (faked) -------------------------------------------------------------------------


def test_cifar100_download_only_when_absent(tmp_path, monkeypatch):
    import torchvision

    calls = []

    def fake_cifar100(root, train, download):
        calls.append((root, train, download))
        make_cifar100(Path(root))

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", fake_cifar100)
    with pytest.raises(HarnessError, match="--download"):
        load_dataset("cifar100", "torchvision", tmp_path / "a", tmp_path / "cache")
    assert calls == []
    d = load_dataset("cifar100", "torchvision", tmp_path / "a", tmp_path / "cache", download=True)
    assert calls == [(str((tmp_path / "a").resolve()), True, True)]
    assert len(d.train_labels) == 12
    make_cifar100(tmp_path / "b")
    load_dataset("cifar100", "torchvision", tmp_path / "b", tmp_path / "cache", download=True)
    assert len(calls) == 1


def test_svhn_downloads_only_the_missing_split(tmp_path, monkeypatch):
    import torchvision

    calls = []

    def fake_svhn(root, split, download):
        calls.append((split, download))
        make_svhn(Path(root) / "fresh")
        os.replace(Path(root) / "fresh" / f"{split}_32x32.mat", Path(root) / f"{split}_32x32.mat")

    monkeypatch.setattr(torchvision.datasets, "SVHN", fake_svhn)
    make_svhn(tmp_path)
    (tmp_path / "train_32x32.mat").unlink()
    d = load_dataset("svhn", "torchvision", tmp_path, tmp_path / "cache", download=True)
    assert calls == [("train", True)]
    assert len(d.train_labels) == 12


def test_failed_download_is_one_sentence(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "SVHN", offline)
    with pytest.raises(HarnessError, match="Could not download SVHN .*network unreachable"):
        load_dataset("svhn", "torchvision", tmp_path, tmp_path / "cache", download=True)


# --- settings and locations --------------------------------------------------------------------


def test_data_settings_accept_the_three_datasets():
    DataSettings().validate()
    DataSettings(dataset="cifar100", source="torchvision").validate()
    DataSettings(dataset="svhn", source="torchvision").validate()
    with pytest.raises(HarnessError, match="'imagenet'; available: cifar10, cifar100, svhn"):
        DataSettings(dataset="imagenet").validate()


@pytest.mark.parametrize(("dataset", "name"), [("cifar100", "CIFAR-100"), ("svhn", "SVHN")])
def test_data_settings_need_torchvision_for_official_only_datasets(dataset, name):
    with pytest.raises(HarnessError, match=f"{name} is read only from its official files.*"
                       "data.source to 'torchvision'"):  # fmt: skip
        DataSettings(dataset=dataset).validate()


def test_resolve_location_carries_the_dataset_and_loads_it(tmp_path):
    make_cifar100(tmp_path / "data")
    location = resolve_data_location(
        str(tmp_path / "data"), "torchvision", str(tmp_path / "cache"), dataset="cifar100"
    )
    assert location.dataset == "cifar100"
    assert location.load().classes == FINE_NAMES


def test_resolve_location_without_path_for_cifar100_says_pass_data(tmp_path, monkeypatch):
    # HARNESS_CIFAR10 names a CIFAR-10 copy: it must not be taken for CIFAR-100.
    monkeypatch.setenv("HARNESS_CIFAR10", str(tmp_path))
    with pytest.raises(HarnessError, match="no CIFAR-100 location.*--data.*--download"):
        resolve_data_location(None, "torchvision", str(tmp_path / "cache"), dataset="cifar100")
    with pytest.raises(HarnessError, match="--data-source torchvision"):
        resolve_data_location(str(tmp_path), "folder", str(tmp_path / "cache"), dataset="svhn")


def test_location_defaults_to_cifar10_also_when_unpickled_from_before(tmp_path):
    assert DataLocation("torchvision", tmp_path, tmp_path).dataset == "cifar10"
    # What unpickling a location stored before the field existed produces.
    old = DataLocation.__new__(DataLocation)
    for name, value in (("source", "torchvision"), ("root", tmp_path),
                        ("cache_dir", tmp_path), ("download", False)):  # fmt: skip
        object.__setattr__(old, name, value)
    assert old.dataset == "cifar10"


# --- normalisation, search data, training ------------------------------------------------------


def _images(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 4, 4), generator=g, dtype=torch.uint8)
    return images, torch.arange(n) % 10


def test_batches_default_is_cifar10_bit_for_bit():
    images, labels = _images()
    mean10, std10 = NORMALISATION["cifar10"]
    x, _ = next(Batches(images, labels, 8, seed=0, augment=False).epoch(0))
    x10, _ = next(Batches(images, labels, 8, 0, False, mean=mean10, std=std10).epoch(0))
    order = torch.randperm(8, generator=torch.Generator().manual_seed(data._seed_for(0, 0)))
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD).view(1, 3, 1, 1) * 255
    assert torch.equal(x, (images[order].float() - mean) / std)
    assert torch.equal(x, x10)


@pytest.mark.parametrize("dataset", ["cifar100", "svhn"])
def test_batches_normalise_with_the_dataset_statistics(dataset):
    images, labels = _images()
    mean, std = NORMALISATION[dataset]
    x, _ = next(Batches(images, labels, 8, seed=0, augment=False, mean=mean, std=std).epoch(0))
    x10, _ = next(Batches(images, labels, 8, seed=0, augment=False).epoch(0))
    order = torch.randperm(8, generator=torch.Generator().manual_seed(data._seed_for(0, 0)))
    m = torch.tensor(mean).view(1, 3, 1, 1) * 255
    s = torch.tensor(std).view(1, 3, 1, 1) * 255
    assert torch.equal(x, (images[order].float() - m) / s)
    assert not torch.allclose(x, x10)


def test_search_data_uses_the_dataset_classes_and_statistics(tmp_path):
    make_cifar100(tmp_path, n_train=40)
    arrays = load_dataset("cifar100", "torchvision", tmp_path, tmp_path / "cache")
    settings = DataSettings(dataset="cifar100", source="torchvision", resolution=8)
    search = make_search_data(settings, arrays, seed=0, batch_size=8)
    assert search.num_classes == 100
    for batches in (search.weight_batches, search.alpha_batches, search.alpha_eval):
        assert (batches.mean, batches.std) == NORMALISATION["cifar100"]
    cifar10 = make_search_data(DataSettings(resolution=8), arrays, seed=0, batch_size=8)
    assert cifar10.num_classes == 10 and cifar10.alpha_eval.mean == MEAN


def test_training_builds_and_records_a_100_class_supernet(tmp_path):
    make_cifar100(tmp_path / "data", n_train=64, n_test=8)
    arrays = load_dataset("cifar100", "torchvision", tmp_path / "data", tmp_path / "cache")
    config = build_config(
        "smoke",
        {
            "data": {"dataset": "cifar100", "source": "torchvision", "images_per_split": 16},
            "train": {"epochs": 1, "batch_size": 16},
        },
    ).validate()
    outcome = train_supernet(config, 0, tmp_path / "store", arrays, progress=False)
    run = RunStore(tmp_path / "store", outcome.run_key)
    assert json.loads(run.settings_path.read_text())["num_classes"] == 100
    state = run.load_checkpoint(1)
    heads = [t for t in state["model"].values() if t.dim() == 2 and t.shape[0] == 100]
    assert heads, "the classifier should have 100 outputs"
