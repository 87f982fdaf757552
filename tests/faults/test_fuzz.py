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
)
from harness.errors import HarnessError
from harness.experiment import build_config
from harness.literals import parse_literal
from methods.selection import available_methods, parse_method_list
from spaces.darts.genotype import DARTS_V2, Genotype, as_genotype, parse_genotype
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


# -- DARTS genotypes: random text and near-misses of what DARTS prints -----------------------

GENOTYPE_FIELDS = list(Genotype._fields)
small_int = st.integers(-3, 8)
atom = st.one_of(small_int, st.booleans(), st.sampled_from(["'sep_conv_3x3'", "'none'", "None",
                 "1.5", "''", "x", "10**30", "-0", "...", "b'a'"]))  # fmt: skip
# (op, input) and its near-misses: wrong sizes, ints for names, bools for inputs, nesting.
pair_like = st.one_of(
    st.tuples(st.sampled_from(["sep_conv_3x3", "skip_connect", "max_pool_3x3", "none"]),
              st.integers(0, 5)).map(repr),
    st.lists(atom.map(str), max_size=4).map(lambda xs: "(" + ", ".join(xs) + ",)"),
    st.lists(atom.map(str), max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
    atom.map(str),
)  # fmt: skip
cell_like = st.one_of(
    st.lists(pair_like, max_size=9).map(lambda ps: "[" + ", ".join(ps) + "]"),
    st.lists(pair_like, max_size=9).map(lambda ps: "((" + ", ".join(ps) + "),)"),
    atom.map(str),
    st.just(repr(DARTS_V2.normal)),
)
range_like = st.lists(st.one_of(small_int.map(str), atom.map(str), st.just("range(2, 6)")),
                      max_size=4).map(lambda xs: "range(" + ", ".join(xs) + ")")  # fmt: skip
concat_like = st.one_of(
    range_like,
    st.lists(st.one_of(small_int, st.booleans()), max_size=6).map(repr),
    st.lists(range_like, max_size=2).map(lambda rs: "[" + ", ".join(rs) + "]"),
    atom.map(str),
    st.just("range(2, 6)"),
)
field_like = st.tuples(
    st.one_of(st.sampled_from(GENOTYPE_FIELDS), st.none(), st.sampled_from(["foo", "**x"])),
    st.one_of(cell_like, concat_like),
).map(lambda p: p[1] if p[0] is None else p[1] if p[0] == "**x" else f"{p[0]}={p[1]}")
genotype_like = st.one_of(
    text,
    st.lists(field_like, max_size=6).map(lambda fs: "Genotype(" + ", ".join(fs) + ")"),
    # DARTS_V2 as DARTS prints it with one field swapped for a near-miss
    st.tuples(st.sampled_from(GENOTYPE_FIELDS), st.one_of(cell_like, concat_like)).map(
        lambda p: "Genotype(" + ", ".join(
            f"{f}={p[1] if f == p[0] else repr(getattr(DARTS_V2, f))}" for f in GENOTYPE_FIELDS
        ) + ")"
    ),
    st.sampled_from(["Genotype(" + "[" * 200, "Genotype(" + "[" * 50 + "]" * 50 + ")",
                     "Genotype(1" + "0" * 5000 + ")", "range(2, 6)", "Genotype"]),
)  # fmt: skip


@FUZZ
@given(genotype_like)
@example(repr(DARTS_V2).replace("[2, 3, 4, 5]", "range(2, 6)"))
@example(repr(DARTS_V2).replace("('sep_conv_3x3', 1)", "('sep_conv_3x3', True)"))
@example(repr(DARTS_V2).replace("[2, 3, 4, 5]", "range(2, 6, 0)", 1))
def test_genotype_strings(text):
    genotype = _accepted_or_refused(parse_genotype, text)
    if genotype is not None:  # a DARTS cell, which reads back from its own print
        assert parse_genotype(repr(genotype)) == genotype
        assert all(type(i) is int for _, i in genotype.normal + genotype.reduce)


python_atom = st.one_of(st.integers(-2, 6), st.booleans(), st.none(), st.text(max_size=3),
                        st.floats(allow_nan=True), st.sampled_from(["sep_conv_3x3", "none"]))
python_cell = st.one_of(
    python_atom,
    st.lists(st.one_of(python_atom, st.tuples(python_atom, python_atom),
                       st.lists(python_atom, max_size=3)), max_size=9),
    st.just(DARTS_V2.normal),
)
python_concat = st.one_of(python_atom, st.lists(python_atom, max_size=5),
                          st.builds(range, st.integers(-2, 8), st.integers(-2, 8)))


@FUZZ
@given(st.builds(Genotype, python_cell, python_concat, python_cell, python_concat))
def test_genotype_tuples(genotype):
    # The Python API takes the namedtuple itself (harness.api.retrain([DARTS_V2])).
    _accepted_or_refused(as_genotype, genotype)


# -- method specs: names, brackets, commas, '=', repeated options and aliases ----------------

METHODS = available_methods()
OPTION_NAMES = sorted({f.name for cls in METHODS.values()
                       for f in dataclasses.fields(cls.options_class)})  # fmt: skip
ALIASES = sorted({alias for cls in METHODS.values() for alias in cls.aliases})
option_part = st.one_of(
    st.sampled_from(ALIASES),
    st.tuples(st.sampled_from(OPTION_NAMES), value_like).map("=".join),
    st.tuples(text, st.sampled_from(["", "="]), text).map("".join),
    st.sampled_from(["", " ", "=", "==", "[", "]", ",", "baseline=1", "=3"]),
)
method_name = st.one_of(st.sampled_from([*METHODS, "all", "ostr-ablation", "x:Y", "os.path:join"]),
                        text)  # fmt: skip
spec_like = st.tuples(
    method_name,
    st.lists(option_part, max_size=4),
    st.sampled_from(["[{}]", "[{}", "{}]", "{}", "[[{}]]"]),
).map(lambda p: p[0] + p[2].format(",".join(p[1])) if p[1] or "{}" != p[2] else p[0])


@FUZZ
@given(st.lists(spec_like, min_size=1, max_size=3).map(",".join))
@example("ostr[num_batches=2,num_batches=3]")
@example("ostr[independent,greedy]")
@example("ostr[greedy,edge_order=random]")
def test_method_option_specs(spec):
    methods = _accepted_or_refused(parse_method_list, spec, {})
    for method in methods or []:  # what was accepted reads back as itself
        assert parse_method_list(method.display_name, {})[0].display_name == method.display_name


known_part = st.one_of(
    st.sampled_from(ALIASES),
    st.tuples(st.sampled_from(OPTION_NAMES), st.integers(0, 3).map(str)).map("=".join),
)


@FUZZ
@given(st.sampled_from(sorted(METHODS)), st.lists(known_part, min_size=2, max_size=4))
def test_an_option_set_twice_is_refused(name, parts):
    aliases = METHODS[name].aliases
    keys = [k for part in parts for k in aliases.get(part, [part.partition("=")[0]])]
    methods = _accepted_or_refused(parse_method_list, f"{name}[{','.join(parts)}]", {})
    if methods is not None:  # never when one was set twice (the later setting won, silently)
        assert len(set(keys)) == len(keys), (parts, methods[0].display_name)
