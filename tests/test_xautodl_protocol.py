"""The xautodl preset (the NAS-Bench-201 paper's DARTS protocol) and what it needs:
Nesterov, clipping over every parameter, the official split file, and keys of older stores."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from harness.cli import main
from harness.config import DataSettings, ExperimentConfig, TrainSettings
from harness.data import downsample
from harness.errors import HarnessError
from harness.experiment import build_config
from harness.keys import run_key
from harness.presets import PUBLISHED_PROTOCOL_PRESETS
from harness.search_data import make_search_data
from harness.store import RunStore
from harness.training import train_supernet
from methods.supernet import get_algorithm
from spaces.nb201 import NB201Space, NB201Supernet


def test_the_xautodl_preset_is_the_nb201_papers_darts_protocol():
    config = build_config("xautodl")
    train = config.train
    assert (train.epochs, train.batch_size, train.lr, train.lr_min) == (50, 64, 0.025, 0.001)
    assert (train.momentum, train.weight_decay, train.nesterov) == (0.9, 5e-4, True)
    assert (train.step_order, train.clip_scope, train.grad_clip) == (
        "weight-then-alpha", "all", 5.0,
    )  # fmt: skip
    assert (train.arch_lr, train.arch_weight_decay, train.arch_betas) == (3e-4, 1e-3, (0.5, 0.999))
    assert (config.space.channels, config.space.cells_per_stage) == (16, 5)
    assert not config.space.cell_bn_track_stats and not config.space.cell_bn_affine
    assert (config.data.resolution, config.data.images_per_split) == (32, None)
    assert config.data.split_file is None  # the seeded split unless the user gives the file
    assert "xautodl" in PUBLISHED_PROTOCOL_PRESETS


def test_the_weight_optimiser_is_nesterov_and_recorded_so():
    config = build_config("xautodl")
    net = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1)
    algorithm = get_algorithm("darts")(net, config.train, config.algorithm_options)
    assert algorithm.weight_optimizer.param_groups[0]["nesterov"] is True
    recorded = algorithm.recorded_settings()["weight_optimizer"]
    assert recorded["nesterov"] is True and recorded["clip_scope"] == "all"


def _batch(seed: int, n: int = 8):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=generator), torch.randint(0, 10, (n,),
                                                                        generator=generator)


@pytest.mark.parametrize("scope", ["all", "weights"])
def test_clip_scope_all_counts_the_alphas_left_over_and_training_gradients(scope):
    """One weight step, checked against its definition: the clip factor comes from the norm
    over the weights' gradient and the alphas' (last alpha step's + training loss's)."""
    train = TrainSettings(lr=0.1, momentum=0.0, weight_decay=0.0, grad_clip=0.05,
                          clip_scope=scope, step_order="weight-then-alpha")  # fmt: skip
    torch.manual_seed(0)
    net = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1)
    algorithm = get_algorithm("darts")(net, train)
    algorithm.step(_batch(0), _batch(1))  # leaves the alpha step's gradient on the alphas
    left_over = net.alphas.grad.clone()
    assert left_over.abs().sum() > 0
    params = list(net.weight_parameters())
    before = [p.detach().clone() for p in params]
    x, y = _batch(2)
    loss = F.cross_entropy(net(x, net.mixing_weights()), y)
    grads = torch.autograd.grad(loss, [*params, net.alphas], allow_unused=True)
    weight_grads = [
        torch.zeros_like(p) if g is None else g for p, g in zip(params, grads[:-1], strict=True)
    ]
    squares = sum(g.pow(2).sum() for g in weight_grads)
    if scope == "all":
        squares = squares + (left_over + grads[-1]).pow(2).sum()
    factor = min(1.0, train.grad_clip / (float(squares.sqrt()) + 1e-6))
    assert factor < 1  # the clip is active, so the scope matters
    algorithm.weight_step((x, y))
    for p, p0, g in zip(params, before, weight_grads, strict=True):
        torch.testing.assert_close(p.detach(), p0 - train.lr * factor * g, rtol=1e-5, atol=1e-7)


def test_resume_is_identical_with_clipping_over_all_parameters(tmp_path, tiny_arrays):
    config = build_config("smoke", {"train": {
        "epochs": 4, "checkpoint_every": 2, "clip_scope": "all", "grad_clip": 0.05,
        "nesterov": True, "step_order": "weight-then-alpha",
    }})  # fmt: skip
    straight = train_supernet(config, 0, tmp_path / "straight", tiny_arrays, progress=False)
    train_supernet(config, 0, tmp_path / "partial", tiny_arrays, progress=False)
    run = RunStore(tmp_path / "partial", straight.run_key)
    run.checkpoint_path(4).unlink()
    manifest = run.manifest()
    del manifest[run.checkpoint_path(4).name]
    run.manifest_path.write_text(json.dumps(manifest))
    assert train_supernet(config, 0, tmp_path / "partial", tiny_arrays,
                          progress=False).resumed_from == 2  # fmt: skip
    a = RunStore(tmp_path / "straight", straight.run_key).load_checkpoint(4)["model"]
    b = run.load_checkpoint(4)["model"]
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_settings_added_later_leave_older_keys_alone():
    """A config as written before nesterov, clip_scope and split_file existed reads back to
    the same record and hence the same run key; setting one changes the key."""
    config = build_config("proxy")
    recorded = config.to_dict()
    assert "nesterov" not in recorded["train"] and "clip_scope" not in recorded["train"]
    assert "split_file" not in recorded["data"]
    assert ExperimentConfig.from_dict(recorded).to_dict() == recorded
    key = run_key(config, 0, "data")
    assert run_key(ExperimentConfig.from_dict(recorded), 0, "data") == key
    changed = build_config("proxy", {"train": {"nesterov": True}})
    assert changed.to_dict()["train"]["nesterov"] is True
    assert run_key(changed, 0, "data") != key


def _split_file(path, train, valid, xautodl_form=True):
    def listed(values):
        return ["int", [str(v) for v in values]] if xautodl_form else list(values)

    path.write_text(json.dumps({"train": listed(train), "valid": listed(valid)}))
    return path


@pytest.mark.parametrize("xautodl_form", [True, False])
def test_the_split_file_picks_the_search_halves(tmp_path, tiny_arrays, xautodl_form):
    train_idx, valid_idx = [5, 0, 9, 3, 7], [1, 2, 4, 6, 8]
    split = _split_file(tmp_path / "cifar-split.txt", train_idx, valid_idx, xautodl_form)
    settings = DataSettings(source="torchvision", resolution=8, split_file=str(split),
                            images_per_split=4)  # fmt: skip
    settings.validate()
    data = make_search_data(settings, tiny_arrays, seed=0, batch_size=2)
    expected = downsample(tiny_arrays.train_images[train_idx[:4]], 8)
    assert torch.equal(data.weight_eval.images, expected)
    assert torch.equal(data.alpha_eval.labels, tiny_arrays.train_labels[valid_idx[:4]])


def test_the_run_key_follows_the_split_files_content_not_its_path(tmp_path):
    first = _split_file(tmp_path / "a.txt", [0, 2], [1, 3])
    same = _split_file(tmp_path / "b.txt", [0, 2], [1, 3])
    other = _split_file(tmp_path / "c.txt", [0, 3], [1, 2])

    def key(path):
        config = build_config("smoke", {"data": {"source": "torchvision",
                                                 "split_file": str(path)}})  # fmt: skip
        return run_key(config, 0, "data")

    assert key(first) == key(same) != key(other)
    assert key(first) != run_key(build_config("smoke", {"data": {"source": "torchvision"}}), 0,
                                 "data")  # fmt: skip


@pytest.mark.parametrize(
    ("content", "source", "pattern"),
    [
        (None, "torchvision", r"does not exist"),
        ("not json", "torchvision", r"not readable JSON"),
        ('{"train": [0, 1]}', "torchvision", r"'valid' list"),
        ('{"train": [0, 1], "valid": [1, 2]}', "torchvision", r"overlap"),
        ('{"train": [0, 1], "valid": [2, 3]}', "folder", r"--data-source torchvision"),
    ],
)
def test_a_bad_split_file_is_refused_in_one_sentence(tmp_path, capsys, content, source, pattern):
    path = tmp_path / "split.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(HarnessError, match=pattern):
        build_config("smoke", {"data": {"source": source, "split_file": str(path)}})
    code = main(["run", "--preset", "smoke", "--data-source", source, "--data", str(tmp_path),
                 "--results", str(tmp_path / "r"), "--set", f"data.split_file={path}"])  # fmt: skip
    assert code != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "runs").exists()


def test_an_index_beyond_the_training_set_is_refused(tmp_path, tiny_arrays):
    split = _split_file(tmp_path / "s.txt", [0, 600], [1, 2])
    settings = DataSettings(source="torchvision", resolution=8, split_file=str(split))
    with pytest.raises(HarnessError, match="indexes image 600, but the training set has 600"):
        make_search_data(settings, tiny_arrays, seed=0, batch_size=2)
