"""The DARTS evaluation network in channels-last memory (``harness retrain``'s default):
the same network as in the default format, to float tolerance, and its retrains keyed
apart from the default format's."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from conftest import make_arrays

from harness.records import collect_tables
from harness.retrain_settings import fidelity, retrain_settings
from harness.retraining import retrain_genotype, retrain_key
from spaces import space_named
from spaces.darts.genotype import DARTS_V2, Genotype
from spaces.darts.networks import DartsEvalNetwork
from spaces.darts.ops import OP_NAMES

KEPT_OPS = [op for op in OP_NAMES if op != "none"]  # a genotype keeps no "none" edge


def random_genotype(seed: int) -> Genotype:
    draw = random.Random(seed)

    def cell():
        return [(draw.choice(KEPT_OPS), source) for node in range(4)
                for source in sorted(draw.sample(range(node + 2), 2))]  # fmt: skip

    return Genotype(cell(), [2, 3, 4, 5], cell(), [2, 3, 4, 5])


def genotype_with_every_op() -> Genotype:
    """Every op on edges from the cell inputs (stride 2 in the reduction cell: the
    factorized reduce, strided pools and convolutions) and between nodes."""
    normal = [("max_pool_3x3", 0), ("avg_pool_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 2),
              ("sep_conv_5x5", 1), ("dil_conv_3x3", 3), ("dil_conv_5x5", 0), ("skip_connect", 4)]
    reduce = [("max_pool_3x3", 0), ("skip_connect", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 1),
              ("dil_conv_3x3", 0), ("avg_pool_3x3", 1), ("sep_conv_5x5", 1), ("max_pool_3x3", 4)]
    return Genotype(normal, [2, 3, 4, 5], reduce, [2, 3, 4, 5])


def float64_pair(genotype, channels, layers, auxiliary):
    torch.manual_seed(0)
    default = DartsEvalNetwork(genotype, channels, layers, 10, auxiliary=auxiliary).double()
    fast = DartsEvalNetwork(genotype, channels, layers, 10, auxiliary=auxiliary,
                            channels_last=True).double()  # fmt: skip
    fast.load_state_dict(default.state_dict())
    return default, fast


def train_pass(net, x, y, drop_prob):
    """Logits, the input's gradient, every parameter's gradient and the BatchNorm state
    after one training forward and backward (drop-path draws from the seed set here)."""
    net.train()
    net.drop_prob = drop_prob
    x = x.clone().requires_grad_()
    torch.manual_seed(7)
    logits, aux = net(x)
    loss = F.cross_entropy(logits, y) + (0.4 * F.cross_entropy(aux, y) if aux is not None else 0)
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    buffers = [b for b in net.buffers() if b.dtype.is_floating_point]
    return logits, x.grad, grads, buffers


@pytest.mark.parametrize(
    "genotype,channels,layers,size,auxiliary",
    [
        (DARTS_V2, 4, 5, 8, False),
        (genotype_with_every_op(), 2, 5, 8, False),  # 2 channels: the recorded crash's size
        (random_genotype(1), 6, 3, 12, False),
        (random_genotype(2), 4, 6, 32, True),  # the auxiliary head
    ],
)
def test_channels_last_network_equals_the_default_format(genotype, channels, layers, size,
                                                         auxiliary):  # fmt: skip
    default, fast = float64_pair(genotype, channels, layers, auxiliary)
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, size, size, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 10, (5,), generator=generator)
    assert fast.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    for drop_prob in (0.0, 0.3):
        a, b = train_pass(default, x, y, drop_prob), train_pass(fast, x, y, drop_prob)
        torch.testing.assert_close(b[0], a[0], rtol=0, atol=1e-12)  # logits
        torch.testing.assert_close(b[1], a[1], rtol=0, atol=1e-12)  # input gradient
        for grad_b, grad_a in zip(b[2], a[2], strict=True):
            torch.testing.assert_close(grad_b, grad_a, rtol=0, atol=1e-10)
        for buffer_b, buffer_a in zip(b[3], a[3], strict=True):
            torch.testing.assert_close(buffer_b, buffer_a, rtol=0, atol=1e-12)
        default.zero_grad(), fast.zero_grad()
    default.eval(), fast.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(x)[0], default(x)[0], rtol=0, atol=1e-12)


def test_the_default_is_channels_last_under_its_own_key_and_the_same_fidelity():
    space = space_named("darts")
    genotype = space.canonical_key(repr(DARTS_V2))
    fast, default_format = retrain_settings("smoke"), retrain_settings("smoke", {
        "channels_last": False})  # fmt: skip
    assert fast.channels_last and not default_format.channels_last
    key_fast = retrain_key(genotype, fast, 0, "fp", "cifar10", space.retrain_key_fields())
    key_default = retrain_key(genotype, default_format, 0, "fp", "cifar10",
                              space.retrain_key_fields())  # fmt: skip
    # The default format keeps the key retrains had before the setting existed
    # (tests/test_retrain.py pins it); channels-last numerics have their own.
    assert key_default == "a7a077b1bf5d0054" and key_fast == "9472be40db665f81"
    assert fidelity(fast) == fidelity(default_format) == "retrain-smoke"
    custom = retrain_settings("smoke", {"epochs": 3, "channels_last": False})
    assert fidelity(custom) == fidelity(retrain_settings("smoke", {"epochs": 3}))
    assert space.build_network(space.decode_unchecked(genotype), fast, 10).memory_format == (
        torch.channels_last
    )


def test_one_seed_retrained_in_both_formats_counts_once(tmp_path):
    arrays = make_arrays(train=96, test=40, size=8)
    genotype = repr(DARTS_V2)
    values = {"train_images": 64, "test_images": 32, "epochs": 1}
    fast = retrain_genotype(genotype, retrain_settings("smoke", values), 0, arrays, tmp_path)
    default_format = retrain_genotype(
        genotype, retrain_settings("smoke", {**values, "channels_last": False}), 0, arrays,
        tmp_path,
    )  # fmt: skip
    other_seed = retrain_genotype(genotype, retrain_settings("smoke", values), 1, arrays,
                                  tmp_path)  # fmt: skip
    assert len({fast.key, default_format.key, other_seed.key}) == 3
    assert default_format.epochs_trained == 1  # not the channels-last store's result
    rows = collect_tables(tmp_path, None)["records"]
    rows = rows[rows["fidelity"] == fast.result["fidelity"]]
    assert len(rows) == 1 and rows["retrain_seeds"].iloc[0] == 2
    expected = (fast.result["test_acc"] + other_seed.result["test_acc"]) / 2
    assert rows["accuracy"].iloc[0] == pytest.approx(expected)
