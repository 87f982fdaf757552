"""Bad input at the command line: one sentence naming the thing and what to do, exit 2,
no traceback, and nothing written."""

from __future__ import annotations

import pytest
import torch

from harness.cli import main


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


def test_an_unreachable_scheduler_is_one_sentence(run_args, capsys):
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
