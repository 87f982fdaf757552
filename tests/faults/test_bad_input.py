"""Bad input at the command line: one sentence naming the thing and what to do, exit 2,
no traceback, and nothing written (and the library's HarnessError says the same)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from harness import api, pipeline
from harness.cli import main
from harness.config import SpaceSettings
from harness.errors import HarnessError
from methods.selection import make_method, parse_method_list
from spaces import make_space
from spaces.darts.genotype import DARTS_V2, as_genotype, parse_genotype


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a folder, not a checkpoint")
    return path


def _refused(capsys, args, pattern):
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert pattern in err, err
    return err


CASES = [
    (["--device", "cuda:abc"], "unknown device 'cuda:abc'; use cpu, cuda or cuda:N"),
    (["--device", "cudaXYZ"], "unknown device 'cudaXYZ'"),
    (["--results", "{file}"], "is a file, not a folder"),
    (["--cache", "{file}"], "--cache"),
    (["--cluster", "tcp://nonsense:::1"], "is not a scheduler address"),
    (["--seeds", "18446744073709551616"], "is too large"),
    (["--seeds", "0-1000000"], "more than 1000 at once"),
    (["--seeds", "١٢"], "cannot read seeds"),
    (["--set", "data.images_per_split=100000"], "images_per_split=100000 is outside"),
    (["--algorithm", "darts,foo"], "unknown supernet algorithm 'foo'"),
]


@pytest.mark.parametrize(("extra", "pattern"), CASES)
def test_run_refuses_before_any_work(run_args, tmp_path, capsys, a_file, extra, pattern):
    extra = [a.replace("{file}", str(a_file)) for a in extra]
    _refused(capsys, run_args(*extra), pattern)
    results = tmp_path / "results"
    assert not list(results.glob("runs/*")) if results.is_dir() else True


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_one_sentence(run_args, capsys):
    _refused(capsys, run_args("--device", "cuda"), "no usable CUDA device; use --device cpu")


def test_an_unreachable_scheduler_is_one_sentence(run_args, capsys, monkeypatch):
    monkeypatch.setattr(pipeline, "SCHEDULER_CONNECT_TIMEOUT", "2s")  # the same refusal, sooner
    _refused(capsys, run_args("--cluster", "tcp://127.0.0.1:1"), "could not reach the Dask "
             "scheduler at tcp://127.0.0.1:1")  # fmt: skip


def test_select_on_a_file_that_is_no_checkpoint(capsys, a_file, tmp_path):
    _refused(capsys, ["select", "--checkpoint", str(a_file), "--methods", "magnitude"],
             "is not inside a results store")  # fmt: skip
    fake = tmp_path / "results" / "runs" / "abc" / "checkpoints" / "epoch_0001.pt"
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"garbage")
    _refused(capsys, ["select", "--checkpoint", str(fake), "--methods", "magnitude"],
             "is corrupt or partial")  # fmt: skip
    _refused(capsys, ["select", "--checkpoint", str(fake), "--methods", "magnitude",
                      "--device", "nonsense"], "unknown device 'nonsense'")  # fmt: skip


def test_report_out_is_a_file(capsys, a_file, tmp_path):
    _refused(capsys, ["report", "--results", str(tmp_path), "--out", str(a_file)],
             "--out")  # fmt: skip


def test_bench_lookup_takes_ascii_digits_only(capsys, ground_truth_csv):
    _refused(capsys, ["bench", "lookup", "١٢", "--ground-truth", str(ground_truth_csv)],
             "neither a benchmark index nor an arch string")  # fmt: skip


def test_a_ground_truth_table_without_numbers_in_its_main_column(run_args, tmp_path, capsys,
                                                                 ground_truth_csv):  # fmt: skip
    import pandas as pd

    table = pd.read_csv(ground_truth_csv).head(50)
    table["cifar10_test_200ep"] = float("nan")
    broken = tmp_path / "broken.csv"
    table.to_csv(broken, index=False)
    _refused(capsys, run_args("--ground-truth", str(broken)), "cifar10_test_200ep column has no "
             "numbers")  # fmt: skip
    assert not (tmp_path / "results" / "runs").exists()


# -- genotypes (harness retrain --genotype), method options, --methods all, plugins by path --

V2 = repr(DARTS_V2)


@pytest.mark.parametrize(
    ("genotype", "pattern"),
    [
        (V2.replace("('sep_conv_3x3', 0)", "('sep_conv_3x3', 0, 1)", 1),
         "genotype normal holds ('sep_conv_3x3', 0, 1) where an (op, input) pair belongs"),
        ("Genotype(normal=3, normal_concat=[2, 3, 4, 5], reduce=[], reduce_concat=[2, 3, 4, 5])",
         "genotype normal must be a list of (op, input) pairs, not 3"),
        (V2.replace("('sep_conv_3x3', 0)", "('sep_conv_3x3',)", 1),
         "holds ('sep_conv_3x3',) where an (op, input) pair belongs"),
        (V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=5"),
         "genotype normal_concat must list node numbers"),
        (V2.replace("('sep_conv_3x3', 1)", "('sep_conv_3x3', True)", 1),
         "holds ('sep_conv_3x3', True) where an (op, input) pair belongs"),
        (V2.replace("[2, 3, 4, 5]", "range(2, 6, 0)", 1), "'range(2, 6, 0)' has a step of 0"),
        (V2.replace("[2, 3, 4, 5]", "range(2, n)", 1), "'n' is neither a literal nor range(a, b)"),
        (V2.replace("[2, 3, 4, 5]", "range(2, 7)", 1), "genotype normal_concat must be [2, 3, 4"),
        (V2.replace("reduce=", "normal=", 1), "field normal is given twice"),
        (V2.replace("reduce=", "reduction=", 1), "a field 'reduction', where a Genotype names"),
        ("Genotype(normal=__import__('os'))", "neither a literal nor range"),
    ],
)  # fmt: skip
def test_a_malformed_genotype_is_one_sentence(capsys, tmp_path, genotype, pattern):
    err = _refused(capsys, ["retrain", "--genotype", genotype, "--results", str(tmp_path)],
                   pattern)  # fmt: skip
    assert "<ast." not in err
    assert not (tmp_path / "retrains").exists()
    with pytest.raises(HarnessError) as refused:  # the library says the same
        parse_genotype(genotype)
    assert pattern in str(refused.value) and "\n" not in str(refused.value)


def test_darts_printed_range_concat_is_the_listed_genotype():
    printed = V2.replace("[2, 3, 4, 5]", "range(2, 6)")  # as quark0/darts logs it
    assert printed.count("range(2, 6)") == 2
    assert parse_genotype(printed) == parse_genotype(V2) == DARTS_V2
    assert parse_genotype(printed).normal_concat == [2, 3, 4, 5]  # a list, as printed here
    # and the DARTS code's own namedtuple, range and all
    darts = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
    theirs = darts(DARTS_V2.normal, range(2, 6), DARTS_V2.reduce, range(2, 6))
    assert as_genotype(theirs) == DARTS_V2


@pytest.mark.parametrize(
    ("spec", "option"),
    [
        ("ostr[num_batches=2,num_batches=3]", "num_batches"),
        ("ostr[independent,greedy]", "edge_order"),
        ("ostr[greedy,edge_order=random]", "edge_order"),
        ("ostr[taylor,taylor]", "estimate"),
        ("darts-pt[fix-alpha,fix_alpha=false]", "fix_alpha"),
    ],
)
def test_an_option_set_twice_is_one_sentence(run_args, capsys, spec, option):
    _refused(capsys, run_args("--methods", spec), f"sets option {option} twice")
    with pytest.raises(HarnessError, match=f"sets option {option} twice"):
        parse_method_list(spec, {})


def test_all_means_the_methods_the_space_allows(run_args, capsys):
    darts = make_space(SpaceSettings(name="darts-s2"))
    nb201 = make_space(SpaceSettings(name="nb201"))
    assert "oracle" not in [m.name for m in parse_method_list("all", {}, darts)]
    assert "oracle" in [m.name for m in parse_method_list("all", {}, nb201)]
    assert "oracle" not in [m.name for m in api.selection_methods("all", "smoke", darts)]
    # `all` passes the method check in a DARTS space (the bad cluster is what stops it) ...
    _refused(capsys, run_args("--space", "darts-s2", "--methods", "all", "--cluster",
                              "tcp://nonsense:::1"), "is not a scheduler address")  # fmt: skip
    # ... while naming the oracle there is still refused
    _refused(capsys, run_args("--space", "darts-s2", "--methods", "oracle"),
             "oracle needs a tabular ground truth")  # fmt: skip


PLUGS = '''
import numpy as np

from methods.selection import SelectionMethod


class LastOp(SelectionMethod):
    name = "last-op-here"

    def choose(self, supernet, context, cost):
        space = supernet.space
        scores = np.where(space.candidate_mask, np.arange(space.num_ops, dtype=float), np.nan)
        return list(space.discretise(scores)), scores, list(range(space.num_edges))
'''


def _without_cwd_on_path(cwd: Path) -> dict[str, str]:
    """The environment of a process started as the console script is: the folder it runs
    in is not on sys.path (-P), nor on PYTHONPATH."""
    env = dict(os.environ)
    kept = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p) != cwd]
    env["PYTHONPATH"] = os.pathsep.join(kept)
    return env


def test_a_class_by_path_is_found_in_the_folder_you_run_in(tmp_path, monkeypatch):
    (tmp_path / "plugs_in_cwd.py").write_text(PLUGS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        assert make_method("plugs_in_cwd:LastOp").name == "last-op-here"
    finally:
        sys.modules.pop("plugs_in_cwd", None)
    with pytest.raises(HarnessError, match="cannot import module 'plugs_absent'"):
        make_method("plugs_absent:LastOp")


def test_the_console_script_and_a_worker_find_plugs_in_their_folder(tmp_path, ground_truth_csv):
    (tmp_path / "plugs.py").write_text(PLUGS)
    env = _without_cwd_on_path(tmp_path)
    script = Path(sys.executable).with_name("harness")
    # The methods are read before --cluster is checked: only a found plugs:LastOp gets there.
    run = subprocess.run(
        [str(script), "run", "--preset", "smoke", "--methods", "plugs:LastOp,magnitude",
         "--ground-truth", str(ground_truth_csv), "--cluster", "tcp://nonsense:::1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "is not a scheduler address" in run.stderr, run.stderr
    # A --jobs worker rebuilds each method from its spec (harness.pipeline._select_job), in
    # a fresh process that inherits the folder but not a sys.path holding it.
    worker = subprocess.run(
        [sys.executable, "-P", "-c", "from methods.selection import make_method; "
         "print(make_method('plugs:LastOp').display_name)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert worker.returncode == 0 and worker.stdout.strip() == "last-op-here", worker.stderr
