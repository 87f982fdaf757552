"""Property-based fuzz of what users type: every input is accepted or refused with a
HarnessError (one sentence at the CLI), never another exception."""

from __future__ import annotations

import dataclasses

from hypothesis import example, given, settings
from hypothesis import strategies as st

from harness.cli.options import parse_seeds
from harness.config import (
    ComputeSettings,
    DataSettings,
    SpaceSettings,
    TrainSettings,
    parse_literal,
)
from harness.errors import HarnessError
from harness.presets import build_config
from methods.selection import parse_method_list
from spaces.nb201 import OP_NAMES, decode, encode

FUZZ = settings(max_examples=300, deadline=None)
SECTIONS = {"space": SpaceSettings, "data": DataSettings, "train": TrainSettings,
            "compute": ComputeSettings}  # fmt: skip
FIELDS = [(s, f.name) for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)
          if f.name != "split_file"]  # fmt: skip  (a path: covered by the split-file tests)

text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
seed_like = st.text(alphabet="0123456789-, ١٢x", max_size=25)
value_like = st.one_of(
    text,
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e309", "true", "none", "2.5", "1e-400"]),
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


def _accepted_or_refused(call, *args):
    try:
        return call(*args)
    except HarnessError:
        return None


@FUZZ
@given(st.one_of(seed_like, text))
def test_seed_specs(spec):
    seeds = _accepted_or_refused(parse_seeds, spec)
    if seeds is not None:
        assert all(isinstance(s, int) and 0 <= s < 2**63 for s in seeds)
        assert len(set(seeds)) == len(seeds) <= 1000


method_like = st.lists(
    st.one_of(
        st.sampled_from(["magnitude", "darts-pt", "ostr", "opp-loss", "random", "oracle", "all"]),
        text,
    ).flatmap(lambda name: st.one_of(
        st.just(name),
        st.tuples(st.just(name), text).map(lambda p: f"{p[0]}[{p[1]}]"),
        st.tuples(st.just(name), st.sampled_from(["num_batches", "fix_alpha", "bn_mode",
                                                  "candidate_batch", "seed"]), value_like)
        .map(lambda p: f"{p[0]}[{p[1]}={p[2]}]"),
    )),
    min_size=0, max_size=3,
).map(",".join)  # fmt: skip


@FUZZ
@given(method_like)
@example("darts-pt[candidate_batch=INF]")  # int(inf) raised OverflowError, not one sentence
def test_method_specs(spec):
    _accepted_or_refused(parse_method_list, spec, {})


@FUZZ
@given(st.sampled_from(FIELDS), value_like)
def test_set_values(field, raw):
    section, name = field
    config = _accepted_or_refused(build_config, "smoke", {section: {name: parse_literal(raw)}})
    if config is not None:
        config.validate()


arch_like = st.one_of(
    text,
    st.lists(st.sampled_from(list(range(len(OP_NAMES)))), min_size=6, max_size=6).map(encode),
    st.lists(st.one_of(st.sampled_from([*OP_NAMES, "conv", ""]), text), min_size=1, max_size=7)
    .map(lambda ops: "|" + "|+|".join(f"{op}~{k}" for k, op in enumerate(ops)) + "|"),
)  # fmt: skip


@FUZZ
@given(arch_like)
def test_arch_strings(arch):
    choices = _accepted_or_refused(decode, arch)
    if choices is not None:
        assert encode(choices) == arch
