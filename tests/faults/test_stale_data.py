"""The decoded-data cache is keyed by the source's path: a changed source is noticed."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from test_data import make_folder, make_pickles

from harness.data import load_cifar10


def test_a_replaced_image_is_decoded_again(tmp_path):
    make_folder(tmp_path / "img")
    first = load_cifar10("folder", tmp_path / "img", tmp_path / "cache")
    image = sorted((tmp_path / "img" / "train").rglob("*.png"))[0]
    pixels = np.asarray(Image.open(image)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(image)
    os.utime(image, ns=(1, 1))  # a different modification time even on coarse clocks
    second = load_cifar10("folder", tmp_path / "img", tmp_path / "cache")
    assert second.fingerprint != first.fingerprint
    assert not torch.equal(second.train_images, first.train_images)
    # And the cache now describes the new pixels.
    third = load_cifar10("folder", tmp_path / "img", tmp_path / "cache")
    assert third.fingerprint == second.fingerprint


def test_a_replaced_official_batch_is_decoded_again(tmp_path):
    make_pickles(tmp_path / "a", seed=0)
    first = load_cifar10("torchvision", tmp_path / "a", tmp_path / "cache")
    batches = tmp_path / "a" / "cifar-10-batches-py"
    make_pickles(tmp_path / "b", seed=1)
    replacement = tmp_path / "b" / "cifar-10-batches-py" / "data_batch_3"
    (batches / "data_batch_3").write_bytes(replacement.read_bytes())
    second = load_cifar10("torchvision", tmp_path / "a", tmp_path / "cache")
    assert second.fingerprint != first.fingerprint
