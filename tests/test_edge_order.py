"""The edge order is the benchmark's: a permuted EDGES would mislabel every looked-up cell.

Networks, edge names and the codec all derive from ``EDGES``; these tests pin it to the
official arch-string order and check, through real cells, that the op the string puts
on ``3<-0`` is the one that connects the cell's input to its output.
"""

from __future__ import annotations

import pytest
import torch

from spaces.nb201 import EDGE_NAMES, EDGES, OP_NAMES, BatchNormSettings, decode, encode
from spaces.nb201.cells import DiscreteCell, SearchCell
from spaces.nb201.fused import FusedSearchCell

NONE, SKIP = OP_NAMES.index("none"), OP_NAMES.index("skip_connect")
# Only the input -> output edge (3<-0) is a skip connection; every other edge is none.
SKIP_ON_3_FROM_0 = "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"


def test_edges_follow_the_official_arch_string_order():
    assert EDGES == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    assert EDGE_NAMES == ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")
    official = (
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    )
    names = [OP_NAMES[k] for k in decode(official)]
    assert names == ["nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3", "skip_connect", "none",
                     "nor_conv_3x3"]  # fmt: skip
    assert encode(decode(official)) == official


def test_skip_only_on_3_from_0_passes_the_input_through_a_discrete_cell():
    choices = decode(SKIP_ON_3_FROM_0)
    assert choices == (NONE, NONE, NONE, SKIP, NONE, NONE)
    cell = DiscreteCell(4, choices, BatchNormSettings(False, True))
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(cell(x), x)
    # Moving the skip to 3<-1 (fed by an empty node 1) cuts the input off.
    cut = DiscreteCell(4, (NONE, NONE, NONE, NONE, SKIP, NONE), BatchNormSettings(False, True))
    assert torch.count_nonzero(cut(x)) == 0


@pytest.mark.parametrize("cell_class", [SearchCell, FusedSearchCell])
def test_one_hot_skip_on_3_from_0_passes_the_input_through_a_search_cell(cell_class):
    weights = torch.zeros(len(EDGES), len(OP_NAMES))
    for edge, op in enumerate(decode(SKIP_ON_3_FROM_0)):
        weights[edge, op] = 1.0
    cell = cell_class(4, BatchNormSettings(False, True))
    x = torch.randn(2, 4, 5, 5)
    assert torch.allclose(cell(x, weights), x)
