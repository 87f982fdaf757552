"""Tests for harness.data: decoding both CIFAR-10 formats, caching, splits and batching."""

from __future__ import annotations

import logging
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from required import missing

import harness.data as data
from harness.data import (
    MEAN,
    STD,
    Batches,
    ImageArrays,
    downsample,
    fingerprint_arrays,
    load_cifar10,
    search_split,
)
from harness.errors import HarnessError

CIFAR_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    return Path(os.environ.get("HARNESS_DATA_ROOT") or REPO.parent / "shared" / "data")


def make_folder(root: Path, n_train: int = 3, n_test: int = 2, size: int = 32, seed: int = 0):
    """Write a PNG image folder; return {split: (uint8 N x 3 x H x W, labels)} in load order."""
    rng = np.random.default_rng(seed)
    expected = {}
    # Created in reverse order so the test proves labels come from sorted names, not creation.
    for split, n in (("train", n_train), ("test", n_test)):
        imgs = rng.integers(0, 256, (len(CIFAR_CLASSES), n, size, size, 3), dtype=np.uint8)
        for c in reversed(range(len(CIFAR_CLASSES))):
            d = root / split / CIFAR_CLASSES[c]
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(imgs[c, i]).save(d / f"{i:04d}.png")
        x = torch.from_numpy(imgs.reshape(-1, size, size, 3)).permute(0, 3, 1, 2)
        y = torch.arange(len(CIFAR_CLASSES)).repeat_interleave(n)
        expected[split] = (x, y)
    return expected


def make_pickles(root: Path, per_batch: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Write an official-format cifar-10-batches-py; return the raw rows and labels."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rows, labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch).tolist()
        with open(d / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": x, b"labels": y}, f)
        rows.append(x)
        labels.append(y)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR_CLASSES]}, f)
    return {
        "train_x": np.concatenate(rows[:5]),
        "train_y": np.concatenate(labels[:5]),
        "test_x": rows[5],
        "test_y": np.asarray(labels[5]),
    }


# --- decoding --------------------------------------------------------------------------------


def test_folder_decodes_exact_pixels_and_sorted_labels(tmp_path):
    expected = make_folder(tmp_path / "img")
    d = load_cifar10("folder", tmp_path / "img", tmp_path / "cache")
    assert d.classes == CIFAR_CLASSES
    assert d.train_images.dtype == torch.uint8 and d.train_labels.dtype == torch.int64
    assert d.train_images.shape == (30, 3, 32, 32) and d.test_images.shape == (20, 3, 32, 32)
    assert torch.equal(d.train_images, expected["train"][0])
    assert torch.equal(d.train_labels, expected["train"][1])
    assert torch.equal(d.test_images, expected["test"][0])
    assert torch.equal(d.test_labels, expected["test"][1])
    assert d.fingerprint == fingerprint_arrays(
        d.train_images, d.train_labels, d.test_images, d.test_labels, d.classes
    )


def test_folder_converts_non_rgb_and_ignores_stray_files(tmp_path):
    expected = make_folder(tmp_path)
    gray = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)
    Image.fromarray(gray, mode="L").save(tmp_path / "test" / "truck" / "0000.png")
    (tmp_path / "test" / "truck" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / "README").write_text("not a class folder")
    d = load_cifar10("folder", tmp_path, tmp_path / "cache")
    assert len(d.test_images) == 20
    truck0 = int((expected["test"][1] == 9).nonzero()[0])
    assert torch.equal(d.test_images[truck0], torch.from_numpy(gray).expand(3, 32, 32))


def test_parallel_decode_matches_serial(tmp_path, monkeypatch):
    expected = make_folder(tmp_path / "img", n_train=5)
    monkeypatch.setattr(data, "_PARALLEL_MIN_IMAGES", 1)
    monkeypatch.setattr(data, "_CHUNK", 7)
    d = load_cifar10("folder", tmp_path / "img", tmp_path / "cache")
    assert torch.equal(d.train_images, expected["train"][0])
    assert torch.equal(d.test_images, expected["test"][0])


def test_pickles_decode_chw_layout_and_labels(tmp_path):
    raw = make_pickles(tmp_path)
    d = load_cifar10("torchvision", tmp_path, tmp_path / "cache")
    assert d.classes == CIFAR_CLASSES
    assert d.train_images.shape == (20, 3, 32, 32) and d.test_images.shape == (4, 3, 32, 32)
    assert d.train_images.dtype == torch.uint8 and d.test_labels.dtype == torch.int64
    # Row layout: 1024 R, 1024 G, 1024 B values, each 32x32 plane row-major.
    for n, c, y, x in [(0, 0, 0, 1), (7, 1, 5, 9), (19, 2, 31, 30)]:
        assert d.train_images[n, c, y, x] == raw["train_x"][n, c * 1024 + y * 32 + x]
    assert torch.equal(d.train_images.reshape(20, -1), torch.from_numpy(raw["train_x"]))
    assert torch.equal(d.test_images.reshape(4, -1), torch.from_numpy(raw["test_x"]))
    assert d.train_labels.tolist() == raw["train_y"].tolist()
    assert d.test_labels.tolist() == raw["test_y"].tolist()


def test_torchvision_download_only_when_absent(tmp_path, monkeypatch):
    import torchvision

    calls = []

    def fake_cifar10(root, train, download):
        calls.append((root, train, download))
        make_pickles(Path(root))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar10)
    with pytest.raises(HarnessError, match="cifar-10-batches-py.*--download"):
        load_cifar10("torchvision", tmp_path / "a", tmp_path / "cache")
    assert calls == []
    d = load_cifar10("torchvision", tmp_path / "a", tmp_path / "cache", download=True)
    assert calls == [(str((tmp_path / "a").resolve()), True, True)]
    assert len(d.train_images) == 20
    # Already present: must be read directly, never re-fetched (and never md5-checked).
    make_pickles(tmp_path / "b")
    load_cifar10("torchvision", tmp_path / "b", tmp_path / "cache2", download=True)
    assert len(calls) == 1


def test_download_failure_is_harness_error(tmp_path, monkeypatch):
    import torchvision

    def offline(root, train, download):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(HarnessError, match="Could not download"):
        load_cifar10("torchvision", tmp_path, tmp_path / "cache", download=True)


# --- cache -----------------------------------------------------------------------------------


def test_cache_is_written_once_and_reused(tmp_path, monkeypatch):
    make_folder(tmp_path / "img")
    cache = tmp_path / "cache"
    first = load_cifar10("folder", tmp_path / "img", cache)
    files = sorted(cache.iterdir())
    assert [f.suffix for f in files] == [".pt", ".source"]  # no temp files left behind

    def no_decode(*args):
        raise AssertionError("decoded again despite a cache")

    monkeypatch.setattr(data, "_decode", no_decode)
    second = load_cifar10("folder", str(tmp_path / "img"), str(cache))
    assert second.fingerprint == first.fingerprint
    assert torch.equal(second.train_images, first.train_images)
    assert torch.equal(second.test_labels, first.test_labels)
    assert second.classes == first.classes
    monkeypatch.undo()
    # A fresh decode of the same data must reproduce the fingerprint exactly.
    fresh = load_cifar10("folder", tmp_path / "img", tmp_path / "c2")
    assert fresh.fingerprint == first.fingerprint


def test_cache_key_depends_on_source_and_root(tmp_path):
    a = data.cache_path("folder", tmp_path / "x", tmp_path)
    assert a == data.cache_path("folder", tmp_path / "y" / ".." / "x", tmp_path)
    assert a != data.cache_path("folder", tmp_path / "y", tmp_path)
    assert a != data.cache_path("torchvision", tmp_path / "x", tmp_path)
    assert a.parent == tmp_path and a.suffix == ".pt"


def test_fingerprint_changes_with_one_pixel(tmp_path):
    make_folder(tmp_path / "a")
    make_folder(tmp_path / "b")
    img = tmp_path / "b" / "test" / "ship" / "0001.png"
    px = np.array(Image.open(img))
    px[0, 0, 0] ^= 1
    Image.fromarray(px).save(img)
    fa = load_cifar10("folder", tmp_path / "a", tmp_path / "cache").fingerprint
    fb = load_cifar10("folder", tmp_path / "b", tmp_path / "cache").fingerprint
    assert len(fa) == 64 and fa != fb


def test_corrupt_cache_is_rebuilt(tmp_path, caplog):
    make_folder(tmp_path / "img")
    path = data.cache_path("folder", tmp_path / "img", tmp_path / "cache")
    path.parent.mkdir()
    path.write_bytes(b"truncated garbage")
    # Its source stamp is current, so the cache itself is what fails to load.
    signature = data.source_signature("folder", (tmp_path / "img").resolve())
    path.with_name(path.name + ".source").write_text(signature)
    with caplog.at_level(logging.WARNING, logger="harness.data"):
        d = load_cifar10("folder", tmp_path / "img", tmp_path / "cache")
    assert "Ignoring unreadable" in caplog.text
    assert len(d.train_images) == 30
    assert isinstance(torch.load(path, weights_only=True), dict)


# --- user errors -----------------------------------------------------------------------------


def test_unknown_source(tmp_path):
    with pytest.raises(HarnessError, match="unknown data source 'imagenet'.*folder"):
        load_cifar10("imagenet", tmp_path, tmp_path / "cache")


def test_missing_folder_message_names_path_and_fix(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(HarnessError) as err:
        load_cifar10("folder", missing, tmp_path / "cache")
    msg = str(err.value)
    assert str(missing) in msg and "--data" in msg and "torchvision" in msg
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    ("breakage", "pattern"),
    [
        (lambda r: os.rename(r / "test", r / "val"), "no test/ subfolder"),
        (lambda r: [p.unlink() for p in (r / "train" / "cat").iterdir()], "cat has no images"),
        (lambda r: os.rename(r / "test" / "dog", r / "test" / "doggo"), "Class folders differ"),
        (lambda r: (r / "train" / "bird" / "0000.png").write_bytes(b"xx"), "Cannot decode"),
        (
            lambda r: Image.new("RGB", (16, 16)).save(r / "train" / "frog" / "0000.png"),
            r"frog/0000\.png differs in size",
        ),
    ],
)
def test_bad_folder_layouts(tmp_path, breakage, pattern):
    make_folder(tmp_path / "img")
    breakage(tmp_path / "img")
    with pytest.raises(HarnessError, match=pattern):
        load_cifar10("folder", tmp_path / "img", tmp_path / "cache")


def test_corrupt_pickle_is_harness_error(tmp_path):
    make_pickles(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(HarnessError, match="data_batch_3"):
        load_cifar10("torchvision", tmp_path, tmp_path / "cache")


# --- search split ----------------------------------------------------------------------------


def test_search_split_halves_are_disjoint_and_deterministic():
    w, a = search_split(50_000, split_seed=3)
    assert len(w) == len(a) == 25_000 and w.dtype == torch.int64
    assert torch.equal(torch.cat([w, a]).sort().values, torch.arange(50_000))
    w2, a2 = search_split(50_000, split_seed=3)
    assert torch.equal(w, w2) and torch.equal(a, a2)
    w3, _ = search_split(50_000, split_seed=4)
    assert not torch.equal(w, w3)
    assert not torch.equal(w[:100], torch.arange(100))  # actually shuffled


def test_search_split_per_split_and_odd_sizes():
    w, a = search_split(1000, 0)
    ws, as_ = search_split(1000, 0, per_split=64)
    assert torch.equal(ws, w[:64]) and torch.equal(as_, a[:64])
    w, a = search_split(11, 0)
    assert len(w) == len(a) == 5 and not set(w.tolist()) & set(a.tolist())
    assert len(search_split(1000, 0, per_split=500)[1]) == 500
    for bad in (501, 0):
        with pytest.raises(HarnessError, match="per_split"):
            search_split(1000, 0, per_split=bad)
    with pytest.raises(HarnessError):
        search_split(1, 0)


# --- downsample ------------------------------------------------------------------------------


def test_downsample_area_averages_blocks():
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    y = downsample(x, 16)
    assert y.shape == (5, 3, 16, 16) and y.dtype == torch.uint8
    blocks = x.float().reshape(5, 3, 16, 2, 16, 2).mean(dim=(3, 5)).round()
    assert torch.equal(y, blocks.to(torch.uint8))
    assert downsample(x, 32) is x
    assert downsample(x, 20).shape == (5, 3, 20, 20)
    flat = torch.full((2, 3, 32, 32), 77, dtype=torch.uint8)
    assert torch.equal(downsample(flat, 7), torch.full((2, 3, 7, 7), 77, dtype=torch.uint8))


@pytest.mark.parametrize("resolution", [33, 64, 3, 0])
def test_downsample_rejects_bad_resolution(resolution):
    with pytest.raises(HarnessError, match="Resolution"):
        downsample(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), resolution)


def test_downsample_rejects_float_input():
    with pytest.raises(ValueError):
        downsample(torch.zeros(1, 3, 32, 32), 16)


# --- batches ---------------------------------------------------------------------------------


def _unnormalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return ((x * std + mean) * 255).round().to(torch.uint8)


@pytest.fixture
def toy():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (100, 3, 12, 12), dtype=torch.uint8, generator=g)
    # Labels = index, so every batch tells us exactly which samples it holds.
    return images, torch.arange(100)


def _collect(batches: Batches, epoch: int):
    out = list(batches.epoch(epoch))
    return torch.cat([x for x, _ in out]), torch.cat([y for _, y in out]), out


def test_batches_without_augmentation_reproduce_source(toy):
    images, labels = toy
    b = Batches(images, labels, batch_size=32, seed=1, augment=False)
    xs, ys, out = _collect(b, 0)
    assert len(b) == len(out) == 4 and [len(y) for _, y in out] == [32, 32, 32, 4]
    assert xs.dtype == torch.float32 and ys.dtype == torch.int64
    assert sorted(ys.tolist()) == list(range(100))  # each sample exactly once
    assert torch.equal(_unnormalise(xs), images[ys])
    # Normalisation uses the NAS-Bench-201 constants.
    assert torch.allclose(xs[:, 0], (images[ys, 0].float() / 255 - MEAN[0]) / STD[0], atol=1e-5)


def test_batches_are_pure_function_of_seed_and_epoch(toy):
    images, labels = toy
    a = Batches(images, labels, batch_size=16, seed=7, augment=True)
    # A fresh object starting at epoch 3 stands in for a resumed run.
    resumed = Batches(images.clone(), labels.clone(), batch_size=16, seed=7, augment=True)
    for e in range(3):
        list(a.epoch(e))
    xa, ya, _ = _collect(a, 3)
    xr, yr, _ = _collect(resumed, 3)
    assert torch.equal(xa, xr) and torch.equal(ya, yr)
    x4, y4, _ = _collect(a, 4)
    assert not torch.equal(ya, y4)
    xs, ys, _ = _collect(Batches(images, labels, 16, seed=8, augment=True), 3)
    assert not torch.equal(ya, ys)


def test_batches_drop_last(toy):
    images, labels = toy
    b = Batches(images, labels, batch_size=32, seed=0, augment=False, drop_last=True)
    _, ys, out = _collect(b, 0)
    assert len(b) == len(out) == 3 and all(len(y) == 32 for _, y in out)
    assert len(set(ys.tolist())) == 96


def test_augmentation_is_pad_crop_flip_of_source(toy):
    images, labels = toy
    b = Batches(images, labels, batch_size=50, seed=3, augment=True)
    xs, ys, _ = _collect(b, 0)
    assert xs.shape == (100, 3, 12, 12) and sorted(ys.tolist()) == list(range(100))
    aug = _unnormalise(xs)
    changed = (aug != images[ys]).flatten(1).any(1)
    assert changed.float().mean() > 0.8  # 1/162 chance per image of the identity transform
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    flipped, offsets = 0, set()
    for k in range(100):
        src = padded[ys[k]]
        matches = [
            (dy, dx, f)
            for dy in range(9)
            for dx in range(9)
            for f in (False, True)
            if torch.equal(
                src[:, dy : dy + 12, dx : dx + 12].flip(-1)
                if f
                else src[:, dy : dy + 12, dx : dx + 12],
                aug[k],
            )
        ]
        assert matches, f"augmented sample {k} is not a crop/flip of its source"
        flipped += matches[0][2]
        offsets.add(matches[0][:2])
    assert 25 < flipped < 75 and len(offsets) > 20


def test_batches_reject_bad_arguments(toy):
    images, labels = toy
    with pytest.raises(HarnessError, match="positive batch size"):
        Batches(images, labels, 0, seed=0, augment=False)
    with pytest.raises(HarnessError):
        Batches(images[:10], labels[:10], 32, seed=0, augment=False, drop_last=True)
    with pytest.raises(ValueError):
        Batches(images.float(), labels, 8, seed=0, augment=False)
    with pytest.raises(ValueError):
        Batches(images, labels[:5], 8, seed=0, augment=False)


def test_seed_for_is_stable():
    assert data._seed_for(0, 0) == data._seed_for(0, 0)
    assert len({data._seed_for(s, e) for s in range(5) for e in range(5)}) == 25
    assert 0 <= data._seed_for(2**40, 10**6) < 2**63


# --- the real shared folder ------------------------------------------------------------------


def test_real_cifar10_folder(tmp_path):
    root = shared_data_root() / "cifar10-jpeg"
    if not (root / "train").is_dir():
        missing(f"shared CIFAR-10 image folder not found at {root}")
    t0 = time.perf_counter()
    d = load_cifar10("folder", root, tmp_path)
    t_decode = time.perf_counter() - t0
    assert isinstance(d, ImageArrays)
    assert d.classes == CIFAR_CLASSES
    assert d.train_images.shape == (50_000, 3, 32, 32)
    assert d.test_images.shape == (10_000, 3, 32, 32)
    assert torch.equal(torch.bincount(d.train_labels), torch.full((10,), 5000))
    assert torch.equal(torch.bincount(d.test_labels), torch.full((10,), 1000))
    # Real photos, not blank decodes: per-channel means near the CIFAR statistics.
    means = d.train_images[::10].float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(means, torch.tensor(MEAN), atol=0.05)
    t0 = time.perf_counter()
    again = load_cifar10("folder", root, tmp_path)
    t_cached = time.perf_counter() - t0
    assert again.fingerprint == d.fingerprint
    assert torch.equal(again.train_images, d.train_images)
    cache = data.cache_path("folder", root, tmp_path)
    logging.getLogger(__name__).info(
        "decode %.1fs, cache %.0f MB, cached load %.2fs",
        t_decode,
        cache.stat().st_size / 1e6,
        t_cached,
    )
    assert t_cached < 5
    cache.unlink()  # pytest keeps recent tmp dirs; don't leave 185 MB behind in each
