"""snip through the harness's conformance check: the protocol checks every built-in method
passes (a valid cell, the supernet untouched, costs counted, records that round-trip,
determinism), in every search space, as a plugin author runs them on their own method."""

from __future__ import annotations

import pytest
from required import module

from methods.conformance import check_selection_method, conformance_cases

# Installed by the README's set-up line; a missing plugin skips here, fails in CI.
Snip = module("harness_snip", "pip install -e examples/harness-snip").Snip


@pytest.mark.parametrize("case", conformance_cases(Snip), ids=str)
def test_snip_conforms_in_every_space(case):
    case()


def test_a_variant_conforms_too():
    report = check_selection_method("snip[train,num_batches=1]", spaces=["nb201-s3", "darts-s2"])
    assert report.passed == ["nb201-s3", "darts-s2"] and not report.skipped
