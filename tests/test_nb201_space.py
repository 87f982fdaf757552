"""The NAS-Bench-201 space: codec, network structure and supernet/discrete parity."""

import random

import pytest
import torch
from batch_norm_state import randomise_batch_norm

from spaces.nb201 import (
    NUM_CELLS,
    OP_NAMES,
    ArchStringError,
    BatchNormSettings,
    NB201Network,
    NB201Supernet,
    decode,
    discrete_from_supernet,
    encode,
)
from spaces.nb201.codec import all_cells, from_ordinal, to_ordinal
from spaces.nb201.space import NB201Space

ALL_SKIP = (
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|"
    "+|skip_connect~0|skip_connect~1|skip_connect~2|"
)


def test_codec_round_trips_every_cell():
    cells = all_cells()
    assert len(cells) == NUM_CELLS == 15625
    strings = {encode(c) for c in cells}
    assert len(strings) == NUM_CELLS
    for ordinal, choices in enumerate(cells):
        assert decode(encode(choices)) == choices
        assert to_ordinal(choices) == ordinal
        assert from_ordinal(ordinal) == choices


def test_all_skip_string():
    assert decode(ALL_SKIP) == (1,) * 6
    assert encode((1,) * 6) == ALL_SKIP


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "|skip_connect~0|",
        "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|",
        "|conv_5x5~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|none~2|",
        "|skip_connect~1|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|none~2|",
        "skip_connect~0+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|none~2|",
    ],
)
def test_malformed_arch_strings_raise_a_clear_error(bad):
    with pytest.raises(ArchStringError, match="not a NAS-Bench-201 arch string"):
        decode(bad)


def test_convolution_has_bias_only_without_affine_bn():
    affine = NB201Network((3,) * 6, channels=4, cells_per_stage=1)
    conv = affine.cells[0].edges[0].op[1]
    assert conv.bias is None and affine.cells[0].edges[0].op[2].affine
    free = NB201Network(
        (3,) * 6, channels=4, cells_per_stage=1, cell_bn=BatchNormSettings(affine=False)
    )
    assert free.cells[0].edges[0].op[1].bias is not None


def test_macro_layout_matches_the_benchmark():
    net = NB201Network((3,) * 6, channels=16, cells_per_stage=5)
    # 3 stages of 5 cells plus 2 reduction blocks
    assert len(net.cells) == 17
    assert net.classifier.in_features == 64
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    supernet = NB201Supernet(space=NB201Space(), channels=16, cells_per_stage=5)
    assert supernet.num_search_cells == 15
    assert supernet.alphas.shape == (6, 5)
    weight_ids = {id(p) for p in supernet.weight_parameters()}
    assert id(supernet.alphas) not in weight_ids
    assert len(weight_ids) + 1 == len(list(supernet.parameters()))


def _random_cells(count, seed):
    rng = random.Random(seed)
    cells = [(1,) * 6, (0,) * 6, (3, 3, 3, 3, 3, 3)]
    cells += [tuple(rng.randrange(len(OP_NAMES)) for _ in range(6)) for _ in range(count)]
    return cells


@pytest.mark.parametrize(
    "cell_bn",
    [
        BatchNormSettings(affine=True, track_running_stats=True),
        BatchNormSettings(affine=False, track_running_stats=True),
        BatchNormSettings(affine=False, track_running_stats=False),
    ],
)
@pytest.mark.parametrize("train_mode", [False, True])
@pytest.mark.parametrize("cell_impl", ["reference", "fused"])
def test_one_hot_supernet_equals_discrete_network(cell_bn, train_mode, cell_impl):
    torch.manual_seed(0)
    supernet = NB201Supernet(
        space=NB201Space(),
        channels=8, cells_per_stage=2, num_classes=10, cell_bn=cell_bn, cell_impl=cell_impl
    )
    randomise_batch_norm(supernet)
    x = torch.randn(6, 3, 16, 16)
    for choices in _random_cells(5, seed=1):
        one_hot = torch.nn.functional.one_hot(torch.tensor(choices), len(OP_NAMES)).float()
        discrete = discrete_from_supernet(supernet, choices)
        supernet.train(train_mode)
        discrete.train(train_mode)
        with torch.no_grad():
            expected = discrete(x)
            got = supernet(x, weights=one_hot)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_one_hot_row_computes_only_its_op(monkeypatch):
    # Module hooks see the reference cell's per-op calls; the fused cell has its own test.
    supernet = NB201Supernet(
        space=NB201Space(), channels=4, cells_per_stage=1, cell_impl="reference")
    calls = {name: 0 for name in OP_NAMES}
    for cell in supernet.cells:
        if not hasattr(cell, "edges"):
            continue
        for edge in cell.edges:
            for name, op in zip(OP_NAMES, edge.ops, strict=True):
                op.register_forward_hook(
                    lambda *_args, name=name: calls.__setitem__(name, calls[name] + 1)
                )
    weights = torch.softmax(torch.randn(6, 5), -1)
    weights[0] = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0])
    supernet(torch.randn(2, 3, 8, 8), weights=weights)
    cells = supernet.num_search_cells
    # edge 0 runs only its 3x3 conv; the other five edges run every op except `none`
    assert calls["nor_conv_3x3"] == 6 * cells
    assert calls["nor_conv_1x1"] == 5 * cells
    assert calls["none"] == 0


def test_per_cell_weights_match_shared_weights():
    torch.manual_seed(0)
    supernet = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=2).eval()
    shared = supernet.mixing_weights().detach()
    per_cell = shared.expand(supernet.num_search_cells, -1, -1)
    x = torch.randn(3, 3, 8, 8)
    torch.testing.assert_close(supernet(x, per_cell), supernet(x, shared))
    with pytest.raises(ValueError, match="per-cell weights"):
        supernet(x, shared.expand(2, -1, -1))


def test_active_ops_mask_zeroes_inactive_ops():
    supernet = NB201Supernet(space=NB201Space(), channels=4, cells_per_stage=1)
    supernet.active_ops[:, 3] = False
    weights = supernet.mixing_weights()
    assert torch.all(weights[:, 3] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(6))


def test_build_network_is_the_benchmark_network_a_retrain_protocol_asks_for():
    from harness.errors import HarnessError
    from harness.retrain_settings import retrain_settings

    space = NB201Space()
    choices = decode(ALL_SKIP)
    network = space.build_network(choices, retrain_settings("proxy"), 10)  # 8 cells at C=16
    assert isinstance(network, NB201Network)
    assert (network.channels, network.cells_per_stage) == (16, 2)
    assert network(torch.zeros(2, 3, 16, 16)).shape == (2, 10)
    with pytest.raises(HarnessError, match="3 N \\+ 2 cells"):
        space.build_network(choices, retrain_settings("proxy", {"layers": 7}), 10)
    with pytest.raises(HarnessError, match="no auxiliary head"):
        space.build_network(choices, retrain_settings("paper"), 10)
    # every NAS-Bench-201 space retrains a cell as one network: one retrain key
    narrowed = NB201Space([[0, 1]] * 6, name="nb201-s2")
    assert narrowed.retrain_key_fields() == space.retrain_key_fields() == {"space": "nb201"}


MIXED = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"


@pytest.mark.parametrize("arch", [ALL_SKIP, MIXED])
def test_channels_last_network_equals_the_default_format(arch):
    # harness retrain's default memory format: the same sums, in float64 to 1e-12
    torch.manual_seed(0)
    default = NB201Network(decode(arch), channels=4, cells_per_stage=1).double()
    fast = NB201Network(decode(arch), channels=4, cells_per_stage=1, channels_last=True).double()
    fast.load_state_dict(default.state_dict())
    assert fast.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 4, 9])
    outputs = []
    for net in (default, fast):
        inputs = x.clone().requires_grad_()
        logits = net(inputs)
        torch.nn.functional.cross_entropy(logits, y).backward()
        outputs.append((logits, inputs.grad, [p.grad for p in net.parameters()],
                        [b for b in net.buffers() if b.dtype.is_floating_point]))  # fmt: skip
    (logits_a, input_a, grads_a, buffers_a), (logits_b, input_b, grads_b, buffers_b) = outputs
    torch.testing.assert_close(logits_b, logits_a, rtol=0, atol=1e-12)
    torch.testing.assert_close(input_b, input_a, rtol=0, atol=1e-12)
    for b, a in zip(grads_b + buffers_b, grads_a + buffers_a, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-10)
