"""Shared fixtures: small real data sets the tests build, and the offline data root."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from required import missing

from harness.data import ImageArrays

REPO = Path(__file__).resolve().parents[1]
CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests use tiny networks: intra-op threads gain nothing there and, next to other
    processes on the same cores, lose minutes spinning. Subprocesses keep the default."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def offline_data_root() -> Path:
    return Path(os.environ.get("HARNESS_DATA_ROOT", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def ground_truth_csv() -> Path:
    path = Path(
        os.environ.get(
            "HARNESS_GROUND_TRUTH", offline_data_root() / "nasbench201" / "nb201_accuracy.csv"
        )
    )
    if not path.is_file():
        missing(f"NAS-Bench-201 ground-truth table not found at {path}")
    return path


def make_arrays(train: int = 600, test: int = 100, size: int = 16, seed: int = 0):
    """Random but learnable images: each class has its own mean colour."""
    generator = torch.Generator().manual_seed(seed)

    def split(count):
        labels = torch.arange(count) % 10
        base = (labels.float() * 25).view(-1, 1, 1, 1)
        noise = torch.randint(0, 60, (count, 3, size, size), generator=generator).float()
        return (base + noise).clamp(0, 255).to(torch.uint8), labels.long()

    train_images, train_labels = split(train)
    test_images, test_labels = split(test)
    return ImageArrays(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        classes=list(CLASSES),
        fingerprint=f"synthetic-{train}-{test}-{size}-{seed}",
    )


@pytest.fixture(scope="session")
def tiny_arrays() -> ImageArrays:
    return make_arrays()


@pytest.fixture(scope="session")
def tiny_image_folder(tmp_path_factory) -> Path:
    """A CIFAR-10-shaped image folder (PNG, 30 train + 5 test images per class)."""
    root = tmp_path_factory.mktemp("cifar_folder")
    arrays = make_arrays(train=300, test=50, size=32, seed=1)
    for split, images, labels in (
        ("train", arrays.train_images, arrays.train_labels),
        ("test", arrays.test_images, arrays.test_labels),
    ):
        for n, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = root / split / CLASSES[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
            Image.fromarray(pixels).save(folder / f"{n:04d}.png")
    return root


@pytest.fixture
def run_args(tmp_path, tiny_image_folder, ground_truth_csv):
    """`harness run` on the smoke preset and the tiny image folder, results in
    ``tmp_path / "results"``; later arguments (e.g. another --seeds) win."""

    def build(*extra: str) -> list[str]:
        return [
            "run", "--preset", "smoke", "--seeds", "0-1", "--quiet",
            "--data", str(tiny_image_folder), "--cache", str(tmp_path / "cache"),
            "--results", str(tmp_path / "results"), "--ground-truth", str(ground_truth_csv),
            *extra,
        ]  # fmt: skip

    return build
