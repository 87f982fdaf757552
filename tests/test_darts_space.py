"""The DARTS CNN space's building blocks: ops, genotypes, the evaluation network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.errors import HarnessError
from spaces.darts.genotype import (
    CELL_EDGES,
    DARTS_V2,
    Genotype,
    choices_to_genotype,
    genotype_to_choices,
    parse_genotype,
)
from spaces.darts.networks import DartsEvalNetwork, parameter_count
from spaces.darts.ops import EXTRA_OPS, OP_NAMES, PARAMETER_FREE_OPS, build_op


@pytest.mark.parametrize("name", OP_NAMES + EXTRA_OPS)
@pytest.mark.parametrize("stride", [1, 2])
def test_every_op_keeps_channels_and_applies_its_stride(name, stride):
    op = build_op(name, 8, stride, affine=False)
    out = op(torch.randn(2, 8, 12, 12))
    assert out.shape == (2, 8, 12 // stride, 12 // stride)
    has_parameters = any(True for _ in op.parameters())
    # skip_connect at stride 2 is a factorized reduce, which has convolutions.
    assert has_parameters == (
        name not in PARAMETER_FREE_OPS or (name, stride) == ("skip_connect", 2)
    )


def test_cells_have_fourteen_edges_from_every_earlier_node():
    assert len(CELL_EDGES) == 14
    assert CELL_EDGES[:5] == ((0, 2), (1, 2), (0, 3), (1, 3), (2, 3))


def test_genotype_prints_and_parses_back():
    text = repr(DARTS_V2)
    assert text.startswith("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1),")
    assert parse_genotype(text) == DARTS_V2
    positional = "Genotype(" + ", ".join(repr(list(f)) for f in DARTS_V2) + ")"
    assert parse_genotype(positional) == DARTS_V2


def _per_node(pairs):
    return [sorted(pairs[2 * s : 2 * s + 2], key=lambda p: p[1]) for s in range(4)]


def test_genotype_and_choices_round_trip():
    choices = genotype_to_choices(DARTS_V2, OP_NAMES)
    assert len(choices) == 28 and choices.count(OP_NAMES.index("none")) == 28 - 16
    back = choices_to_genotype(choices, OP_NAMES)
    assert genotype_to_choices(back, OP_NAMES) == choices
    for kind in ("normal", "reduce"):  # the same cell; pairs within a node sorted by input
        assert _per_node(getattr(back, kind)) == _per_node(getattr(DARTS_V2, kind))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda g: g._replace(normal=g.normal[:6]), "lists 6 .* not 8"),
        (lambda g: g._replace(normal=[("sep_conv_3x3", 0)] * 8), "node 2 takes inputs 0, 0"),
        (lambda g: g._replace(reduce=[("max_pool_3x3", 3)] + g.reduce[1:]), "inputs 3, 1"),
        (lambda g: g._replace(normal=[("conv_9x9", 0)] + g.normal[1:]), "op 'conv_9x9'"),
        (lambda g: g._replace(reduce_concat=[2, 3]), "reduce_concat must be"),
    ],
)
def test_a_genotype_that_is_not_a_darts_cell_is_one_sentence(change, message):
    with pytest.raises(HarnessError, match=message):
        genotype_to_choices(change(DARTS_V2), OP_NAMES)


def test_unreadable_genotype_text_is_one_sentence():
    with pytest.raises(HarnessError, match="cannot read genotype"):
        parse_genotype("Genotype(normal=__import__('os'))")
    with pytest.raises(HarnessError, match="cannot read genotype"):
        parse_genotype("[('sep_conv_3x3', 0)]")


def test_darts_v2_evaluation_network_has_the_published_size(capsys):
    network = DartsEvalNetwork(DARTS_V2, channels=36, layers=20, num_classes=10)
    without_aux, with_aux = parameter_count(network), parameter_count(network, auxiliary=True)
    print(f"DARTS-V2, C=36, 20 cells: {without_aux:,} parameters without the auxiliary head, "
          f"{with_aux:,} with it")  # fmt: skip
    # The paper's 3.3M is the count without the auxiliary head (the reference's
    # count_parameters_in_MB skips it).
    assert without_aux == 3_349_342 and round(without_aux / 1e6, 1) == 3.3
    assert with_aux - without_aux == 476_426


def test_evaluation_network_forward_with_auxiliary_head_and_drop_path():
    torch.manual_seed(0)
    network = DartsEvalNetwork(DARTS_V2, channels=8, layers=5, num_classes=10)
    network.drop_prob = 0.2
    logits, aux = network.train()(torch.randn(4, 3, 32, 32))
    assert logits.shape == aux.shape == (4, 10)
    logits, aux = network.eval()(torch.randn(4, 3, 32, 32))
    assert logits.shape == (4, 10) and aux is None
    reductions = [i for i, cell in enumerate(network.cells) if cell.ops[0].__class__.__name__
                  in ("MaxPool2d",)]  # fmt: skip
    assert reductions == [1, 3]  # 5 // 3 and 2 * 5 // 3: DARTS-V2 reduces with max pooling
    assert isinstance(Genotype(*DARTS_V2), Genotype)


# -- the space and its search supernet -------------------------------------------------------

from harness.config import SpaceSettings  # noqa: E402
from spaces.darts.space import VARIANTS, DartsSpace  # noqa: E402

TINY = SpaceSettings(channels=4, cells_per_stage=1)  # 5 cells, reductions at 1 and 3


def _one_hot(space, choices):
    weights = torch.zeros(space.num_edges, space.num_ops)
    for e, k in enumerate(choices):
        if k != space.none:
            weights[e, k] = 1.0
    return weights


def test_space_encodes_genotypes_and_refuses_cells_that_are_not_darts_cells():
    space = DartsSpace()
    choices = space.decode(repr(DARTS_V2))
    assert space.contains(choices) and len(choices) == 28
    assert genotype_to_choices(parse_genotype(space.encode(choices)), OP_NAMES) == choices
    three = list(choices)
    three[CELL_EDGES.index((2, 3))] = OP_NAMES.index("sep_conv_3x3")  # node 3 keeps 3 inputs
    with pytest.raises(HarnessError, match="normal node 3 keeps 3 inputs"):
        space.check_cell(three)
    assert space.num_cells == (180 * 49**4) ** 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_supernet_under_one_hot_weights_equals_the_discrete_network(seed):
    space = DartsSpace()
    torch.manual_seed(seed)
    supernet = space.build_supernet(TINY, num_classes=10)
    choices = space.random_cell(np.random.default_rng(seed))
    discrete = space.discrete_from_supernet(supernet, choices)
    x = torch.randn(4, 3, 16, 16)
    for train in (True, False):  # batch statistics, then running statistics
        supernet.train(train), discrete.train(train)
        assert torch.allclose(supernet(x, _one_hot(space, choices)), discrete(x), atol=1e-6)
    chosen = sum(p.numel() for p in discrete.parameters())
    assert chosen < sum(p.numel() for p in supernet.weight_parameters())


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_restrict_the_ops_and_every_cell_keeps_two_inputs_per_node(name):
    space = DartsSpace(name)
    torch.manual_seed(0)
    supernet = space.build_supernet(TINY, num_classes=10)
    mask = torch.from_numpy(space.candidate_mask)
    weights = supernet.mixing_weights()
    assert torch.all(weights[~mask] == 0) and torch.all(weights[mask] > 0)
    expected = {"darts-s2": {"skip_connect", "sep_conv_3x3"},
                "darts-s3": {"none", "skip_connect", "sep_conv_3x3"},
                "darts-s4": {"noise", "sep_conv_3x3"}}.get(name)  # fmt: skip
    if expected is not None:
        assert all(set(space.candidate_names(e)) == expected for e in range(28))
    if name == "darts-s1":
        assert space.candidate_names(0) == ["skip_connect", "dil_conv_3x3"]
        assert space.candidate_names(14) == ["max_pool_3x3", "avg_pool_3x3"]
    for seed in range(3):
        cell = space.random_cell(np.random.default_rng(seed))
        assert space.contains(cell)
        with torch.no_grad():
            supernet.alphas.normal_()
        chosen = space.discretise(supernet.alphas.detach().numpy())
        assert space.contains(chosen)  # two distinct inputs per node, candidates only
        parse_genotype(space.encode(chosen))
    logits = supernet(torch.randn(2, 3, 16, 16))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


def test_discretise_is_the_darts_rule():
    space = DartsSpace()
    scores = np.zeros((28, 8))
    none, sep3 = OP_NAMES.index("none"), OP_NAMES.index("sep_conv_3x3")
    scores[:, none] = 9.0  # none never counts
    scores[CELL_EDGES.index((1, 4)), sep3] = 3.0
    scores[CELL_EDGES.index((3, 4)), OP_NAMES.index("max_pool_3x3")] = 2.0
    chosen = space.discretise(scores)
    node4 = {CELL_EDGES[e]: OP_NAMES[chosen[e]] for e in range(14) if CELL_EDGES[e][1] == 4}
    assert node4 == {(0, 4): "none", (1, 4): "sep_conv_3x3", (2, 4): "none",
                     (3, 4): "max_pool_3x3"}  # fmt: skip
    assert space.contains(chosen)


@pytest.mark.parametrize("method", ["magnitude", "magnitude[no-none]", "random"])
def test_methods_that_use_the_topology_rule_return_darts_genotypes(method):
    from methods.selection import SelectionContext, make_method

    space = DartsSpace("darts-s3")
    torch.manual_seed(0)
    supernet = space.build_supernet(TINY, num_classes=10)
    with torch.no_grad():
        supernet.alphas.normal_()
    selection = make_method(method).select(supernet, SelectionContext(data=None, seed=0))
    genotype = parse_genotype(selection.arch)
    assert space.contains(space.decode(selection.arch)) and genotype.normal_concat == [2, 3, 4, 5]


def test_the_space_builds_the_evaluation_network_a_retrain_protocol_asks_for(tmp_path):
    from harness.retrain_settings import retrain_settings
    from spaces import space_named

    space = space_named("darts-s2")  # candidates are not enforced: V2 is no S2 cell
    settings = retrain_settings("smoke")  # 5 cells at C=4, no auxiliary head
    network = space.build_network(space.decode_unchecked(repr(DARTS_V2)), settings, 10)
    reference = DartsEvalNetwork(DARTS_V2, 4, 5, 10, auxiliary=False)
    assert parameter_count(network) == parameter_count(reference)
    assert network.auxiliary_head is None
    with_aux = space.build_network(space.decode_unchecked(repr(DARTS_V2)),
                                   retrain_settings("robustdarts"), 10)  # fmt: skip
    assert with_aux.auxiliary_head is not None
    # the DARTS spaces add nothing to retrain keys (they share one network per genotype)
    assert space.retrain_key_fields() == space_named("darts").retrain_key_fields() == {}
    assert space.prunes_inputs and space.describe()["topology"] == "two-inputs-per-node"
    path = space.draw_cell(repr(DARTS_V2), tmp_path / "v2.png", "DARTS V2")
    assert path.stat().st_size > 10_000
