"""import_nb201 / import_benchmark on small benchmarks built with the official APIs' own classes."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import torch
from required import module  # noqa: I001

nas_201_api = module("nas_201_api")
from nas_201_api import ArchResults, NASBench201API  # noqa: E402

from harness.bench_import import import_benchmark, import_nb201  # noqa: E402
from harness.errors import HarnessError  # noqa: E402
from harness.ground_truth import GroundTruth  # noqa: E402
from spaces.nb201.codec import encode  # noqa: E402

ALL_SKIP = (
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|"
    "+|skip_connect~0|skip_connect~1|skip_connect~2|"
)
# Official order is not the base-5 enumeration, so the all-skip cell sits in the middle.
ARCHS = [encode((3, 3, 1, 2, 0, 4)), ALL_SKIP, encode((4, 0, 3, 1, 1, 2))]
# Evaluation sets each official run reports (see ArchResults.get_metrics' docstring).
EVAL_SETS = {
    "cifar10-valid": ("x-valid", "ori-test"),
    "cifar10": ("ori-test",),
    "cifar100": ("x-valid", "x-test", "ori-test"),
    "ImageNet16-120": ("x-valid", "x-test", "ori-test"),
}
DATASET_OFFSET = {"cifar10-valid": 0.0, "cifar10": 1.0, "cifar100": -20.0, "ImageNet16-120": -30.0}
SET_OFFSET = {"x-valid": -0.5, "x-test": 0.3, "ori-test": 0.7}
SEEDS_200 = {d: (777, 888) for d in EVAL_SETS}
# Like v1.1: 12-epoch runs once per dataset, except twice on cifar10-valid.
SEEDS_12 = {
    "cifar10-valid": (777, 888),
    "cifar10": (777,),
    "cifar100": (777,),
    "ImageNet16-120": (777,),
}
# table column prefix -> (official dataset, evaluation split) it comes from
SOURCES = {
    "cifar10_valid": ("cifar10-valid", "x-valid"),
    "cifar10_test": ("cifar10", "ori-test"),
    "cifar100_valid": ("cifar100", "x-valid"),
    "cifar100_test": ("cifar100", "x-test"),
    "imagenet16_valid": ("ImageNet16-120", "x-valid"),
    "imagenet16_test": ("ImageNet16-120", "x-test"),
}


def final_accuracy(arch: int, dataset: str, eval_set: str, hp: str, seed: int) -> float:
    """The known last-epoch accuracy of one trial; seeds differ so means are non-trivial."""
    base = {0: 90.0, 1: 54.0, 2: 80.0}[arch] + (0.0 if hp == "200" else -10.0)
    return base + DATASET_OFFSET[dataset] + SET_OFFSET[eval_set] + (seed - 777) / 111 * 0.6


def arch_results(
    index: int, hp: str, seeds: dict[str, tuple[int, ...]], api: ModuleType = nas_201_api
) -> ArchResults:
    """One architecture's results, built with the classes of ``api`` (nas_201_api or nats_bench)."""
    epochs = int(hp)
    results = api.ArchResults(index, ARCHS[index])
    for dataset, dataset_seeds in seeds.items():
        for seed in dataset_seeds:
            trial = api.ResultsCount(
                dataset,
                None,
                {e: 50.0 for e in range(epochs)},
                {e: 1.0 for e in range(epochs)},
                0.4,
                50.0,
                {"arch_str": ARCHS[index], "channel": 16, "num_cells": 5, "class_num": 10},
                seed,
                epochs,
                [0.01],
            )
            accs, losses, times = {}, {}, {}
            for eval_set in EVAL_SETS[dataset]:
                for e in range(epochs):
                    key = f"{eval_set}@{e}"
                    # Earlier epochs hold a decoy, so only the last epoch gives the right answer.
                    last = e == epochs - 1
                    accs[key] = final_accuracy(index, dataset, eval_set, hp, seed) if last else 5.0
                    losses[key], times[key] = 1.0, 0.1
            trial.update_eval(accs, losses, times)
            results.update(dataset, seed, trial)
    return results


def write_benchmark(path: Path, seeds_12: dict[str, tuple[int, ...]] | None = None) -> Path:
    """Save the dict layout NASBench201API.__init__ reads: 'less' is hp 12, 'full' hp 200."""
    seeds_12 = SEEDS_12 if seeds_12 is None else seeds_12
    arch2infos = {
        i: {
            "less": arch_results(i, "12", seeds_12).state_dict(),
            "full": arch_results(i, "200", SEEDS_200).state_dict(),
        }
        for i in range(len(ARCHS))
    }
    torch.save(
        {
            "meta_archs": ARCHS,
            "arch2infos": arch2infos,
            "evaluated_indexes": set(range(len(ARCHS))),
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_benchmark(tmp_path_factory.mktemp("bench") / "NAS-Bench-201-mini.pth")


def test_builder_matches_official_api(benchmark: Path) -> None:
    api = NASBench201API(str(benchmark), verbose=False)
    assert len(api) == 3 and api.query_index_by_arch(ALL_SKIP) == 1
    info = api.get_more_info(1, "cifar10", hp="200", is_random=False)
    assert info["test-accuracy"] == pytest.approx((54.0 + 1.0 + 0.7 + 54.6 + 1.0 + 0.7) / 2)


def test_import_writes_seed_means(benchmark: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "nb201.csv"
    frame = import_nb201(benchmark, out)
    assert list(frame.columns) == [
        "index",
        "arch_str",
        "cifar10_valid_200ep",
        "cifar10_test_200ep",
        "cifar100_valid_200ep",
        "cifar100_test_200ep",
        "imagenet16_valid_200ep",
        "imagenet16_test_200ep",
        "cifar10_valid_12ep",
        "cifar10_test_12ep",
        "cifar100_valid_12ep",
        "cifar100_test_12ep",
        "imagenet16_valid_12ep",
        "imagenet16_test_12ep",
    ]
    csv = pd.read_csv(out)
    assert csv["index"].tolist() == [0, 1, 2] and csv["arch_str"].tolist() == ARCHS
    # Hand-computed for the all-skip cell: (seed 777 + seed 888) / 2.
    skip = csv.set_index("index").loc[1]
    assert skip["cifar10_test_200ep"] == pytest.approx((55.7 + 56.3) / 2)  # cifar10 ori-test
    assert skip["cifar10_valid_200ep"] == pytest.approx((53.5 + 54.1) / 2)  # cifar10-valid x-valid
    assert skip["cifar100_valid_200ep"] == pytest.approx((33.5 + 34.1) / 2)  # x-valid
    assert skip["cifar100_test_200ep"] == pytest.approx((34.3 + 34.9) / 2)  # x-test, not ori-test
    assert skip["imagenet16_test_200ep"] == pytest.approx((24.3 + 24.9) / 2)
    assert skip["cifar10_test_12ep"] == pytest.approx(45.7)  # one 12-epoch seed only
    assert skip["cifar10_valid_12ep"] == pytest.approx((43.5 + 44.1) / 2)
    for prefix, (dataset, eval_set) in SOURCES.items():
        for hp, seeds in (("200", SEEDS_200), ("12", SEEDS_12)):
            for arch in range(3):
                trials = [final_accuracy(arch, dataset, eval_set, hp, s) for s in seeds[dataset]]
                assert csv[f"{prefix}_{hp}ep"][arch] == pytest.approx(sum(trials) / len(trials))
    assert [p.name for p in out.parent.iterdir()] == ["nb201.csv"]  # no temp file left

    truth = GroundTruth.from_csv(out)
    assert truth.index_of(ALL_SKIP) == 1 and truth.arch_of(2) == ARCHS[2]
    assert truth.datasets == ["cifar10", "cifar100", "imagenet16"]
    assert truth.accuracy(ALL_SKIP) == pytest.approx(56.0)
    assert truth.accuracy(1, "cifar10", "valid", 12) == pytest.approx(43.8)
    assert truth.best() == (0, ARCHS[0], pytest.approx(92.0))


def test_import_skips_missing_12_epoch_results(tmp_path: Path) -> None:
    no_less = write_benchmark(tmp_path / "v10-like.pth", seeds_12={})
    frame = import_nb201(no_less, tmp_path / "a.csv")
    assert not any(c.endswith("_12ep") for c in frame.columns)
    # v1.0 trained its 12-epoch schedule on cifar10-valid only.
    partial = write_benchmark(tmp_path / "v10.pth", seeds_12={"cifar10-valid": (777, 888)})
    frame = import_nb201(partial, tmp_path / "b.csv")
    assert [c for c in frame.columns if c.endswith("_12ep")] == ["cifar10_valid_12ep"]


def test_import_logs_progress(benchmark: Path, tmp_path: Path, caplog, monkeypatch) -> None:
    monkeypatch.setattr("harness.bench_import.PROGRESS_EVERY", 2)
    with caplog.at_level(logging.INFO, logger="harness.bench_import"):
        import_nb201(benchmark, tmp_path / "gt.csv")
    assert "imported 2/3 architectures" in caplog.text


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="does not exist"):
        import_nb201(tmp_path / "nope.pth", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_corrupt_file(tmp_path: Path) -> None:
    bad = tmp_path / "random.pth"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(HarnessError, match="random.pth is not a NAS-Bench-201 benchmark"):
        import_nb201(bad, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_torch_file_without_benchmark_keys(tmp_path: Path) -> None:
    other = tmp_path / "weights.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other)
    with pytest.raises(HarnessError, match="weights.pth is not a NAS-Bench-201 benchmark"):
        import_nb201(other, tmp_path / "out.csv")


def test_numpy_scalars_load_safely(tmp_path: Path) -> None:
    path = write_benchmark(tmp_path / "np.pth")
    data = torch.load(path, weights_only=True)
    trial = data["arch2infos"][0]["full"]["all_results"][("cifar10", 777)]
    trial["flop"] = np.float64(50.0)
    torch.save(data, path)
    frame = import_nb201(path, tmp_path / "out.csv")
    assert len(frame) == 3


def test_untrusted_objects_need_trust_file(tmp_path: Path) -> None:
    path = write_benchmark(tmp_path / "pickled.pth")
    data = torch.load(path, weights_only=True)
    trial = data["arch2infos"][0]["full"]["all_results"][("cifar10", 777)]
    trial["arch_config"]["args"] = argparse.Namespace(lr=0.1)
    torch.save(data, path)
    with pytest.raises(HarnessError, match="argparse.Namespace.*trust_file=True"):
        import_nb201(path, tmp_path / "out.csv")
    frame = import_nb201(path, tmp_path / "out.csv", trust_file=True)
    assert len(frame) == 3


def test_api_not_installed(benchmark: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "nas_201_api", None)
    with pytest.raises(HarnessError, match="pip install nas-bench-201"):
        import_nb201(benchmark, tmp_path / "out.csv")


# --- NATS-Bench topology (the same runs, stored as bz2 pickles) -------------------------

# NATS-Bench trained every 12-epoch schedule with three seeds.
SEEDS_12_NATS = {d: (111, 777, 888) for d in EVAL_SETS}


def nats_arch_states(index: int) -> dict[str, dict]:
    """One architecture's entry as NATStopology stores it: hp ('12'/'200') -> state dict."""
    nats_bench = module("nats_bench")
    return {
        "12": arch_results(index, "12", SEEDS_12_NATS, nats_bench).state_dict(),
        "200": arch_results(index, "200", SEEDS_200, nats_bench).state_dict(),
    }


def write_nats_file(path: Path) -> Path:
    """The single-file layout NATStopology(fast_mode=False) reads (a dict, bz2-pickled)."""
    nats_bench = module("nats_bench")
    data = {
        "meta_archs": ARCHS,
        "arch2infos": {i: nats_arch_states(i) for i in range(len(ARCHS))},
        "evaluated_indexes": set(range(len(ARCHS))),
    }
    nats_bench.pickle_save(data, str(path), ext="")
    return path


def write_nats_dir(path: Path) -> Path:
    """The fast-mode archive: meta.pickle.pbz2 plus one file per architecture."""
    nats_bench = module("nats_bench")
    path.mkdir()
    nats_bench.pickle_save({"meta_archs": ARCHS}, str(path / "meta.pickle.pbz2"), ext="")
    for i in range(len(ARCHS)):
        # The API looks for zero-padded names first, then plain ones; use both.
        name = f"{i:06d}" if i % 2 == 0 else f"{i}"
        nats_bench.pickle_save(nats_arch_states(i), str(path / f"{name}.pickle.pbz2"), ext="")
    return path


@pytest.fixture(scope="module")
def nats_benchmarks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("nats")
    return {
        "file": write_nats_file(root / "NATS-tss-mini-full.pickle.pbz2"),
        "dir": write_nats_dir(root / "NATS-tss-mini-simple"),
    }


@pytest.mark.parametrize("layout", ["file", "dir"])
def test_import_nats_topology(nats_benchmarks: dict[str, Path], layout: str, tmp_path) -> None:
    out = tmp_path / "nats.csv"
    frame = import_benchmark(nats_benchmarks[layout], out)
    csv = pd.read_csv(out)
    assert list(csv.columns) == list(frame.columns)
    assert csv["index"].tolist() == [0, 1, 2] and csv["arch_str"].tolist() == ARCHS
    for prefix, (dataset, eval_set) in SOURCES.items():
        for hp, seeds in (("200", SEEDS_200), ("12", SEEDS_12_NATS)):
            for arch in range(3):
                trials = [final_accuracy(arch, dataset, eval_set, hp, s) for s in seeds[dataset]]
                assert csv[f"{prefix}_{hp}ep"][arch] == pytest.approx(sum(trials) / len(trials))
    # Hand-computed: all-skip cifar10 ori-test, 200 epochs: (55.7 + 56.3) / 2; 12 epochs
    # over seeds 111/777/888: (42.1 + 45.7 + 46.3) / 3.
    assert csv["cifar10_test_200ep"][1] == pytest.approx(56.0)
    assert csv["cifar10_test_12ep"][1] == pytest.approx(134.1 / 3)

    truth = GroundTruth.from_csv(out)
    assert truth.index_of(ALL_SKIP) == 1 and truth.arch_of(2) == ARCHS[2]
    assert truth.accuracy(ALL_SKIP) == pytest.approx(56.0)
    assert truth.best() == (0, ARCHS[0], pytest.approx(92.0))


def test_cli_imports_nats_directory(nats_benchmarks: dict[str, Path], tmp_path, capsys) -> None:
    from harness.cli import main

    out = tmp_path / "gt.csv"
    assert main(["bench", "import", str(nats_benchmarks["dir"]), "--out", str(out)]) == 0
    assert "wrote 3 cells" in capsys.readouterr().out
    assert GroundTruth.from_csv(out).accuracy(ALL_SKIP) == pytest.approx(56.0)


def test_import_benchmark_still_reads_pth(benchmark: Path, tmp_path: Path) -> None:
    frame = import_benchmark(benchmark, tmp_path / "nb201.csv")
    assert frame["cifar10_test_200ep"][1] == pytest.approx(56.0)


@pytest.mark.parametrize("name", ["x.txt", "missing-dir", "NATS.pickle"])
def test_unsupported_path(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_text("not a benchmark")
    with pytest.raises(HarnessError, match=r"not a benchmark.*\.pth file.*\.pickle\.pbz2.*dir"):
        import_benchmark(path, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_nats_errors(nats_benchmarks: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="does not exist"):
        import_benchmark(tmp_path / "absent.pickle.pbz2", tmp_path / "out.csv")
    with pytest.raises(HarnessError, match="no meta.pickle.pbz2"):
        import_benchmark(tmp_path, tmp_path / "out.csv")
    bad = tmp_path / "bad.pickle.pbz2"
    bad.write_bytes(b"not bz2 at all")
    with pytest.raises(HarnessError, match="bad.pickle.pbz2 is not a NATS-Bench topology"):
        import_benchmark(bad, tmp_path / "out.csv")
    # Fast mode reads each architecture lazily, so a missing one surfaces mid-import.
    partial = write_nats_dir(tmp_path / "partial")
    (partial / "1.pickle.pbz2").unlink()
    with pytest.raises(HarnessError, match="architecture 1 are incomplete"):
        import_benchmark(partial, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_nats_api_not_installed(nats_benchmarks: dict[str, Path], tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "nats_bench", None)
    with pytest.raises(HarnessError, match="install the official API: pip install nats_bench"):
        import_benchmark(nats_benchmarks["file"], tmp_path / "out.csv")
