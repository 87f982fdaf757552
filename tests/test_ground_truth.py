"""GroundTruth on the real shared table (when present) and on small tables in tmp_path."""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
from required import missing

from harness.errors import HarnessError
from harness.ground_truth import (
    ENV_VAR,
    GroundTruth,
    load_ground_truth,
    resolve_ground_truth_path,
)
from spaces import space_of_benchmark
from spaces.nb201 import NB201Space
from spaces.nb201.codec import NUM_CELLS, ArchStringError, decode, encode

REPO = Path(__file__).resolve().parents[1]
ALL_SKIP = (
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|"
    "+|skip_connect~0|skip_connect~1|skip_connect~2|"
)
CONV = encode((3, 3, 3, 1, 3, 2))
AVG = encode((4, 0, 2, 1, 1, 4))
HEADER = "index,arch_str,cifar10_test_200ep,cifar100_test_200ep,cifar10_valid_12ep"


def _real_table_path() -> Path | None:
    shared = REPO.parent / "shared" / "data" / "nasbench201" / "nb201_accuracy.csv"
    candidates = [os.environ.get(ENV_VAR), shared]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="module")
def real() -> GroundTruth:
    path = _real_table_path()
    if path is None:
        missing(f"no real ground-truth table (set {ENV_VAR})")
    return GroundTruth.from_csv(path)


def write_table(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.fixture
def small(tmp_path: Path) -> GroundTruth:
    return GroundTruth.from_csv(
        write_table(
            tmp_path / "gt.csv",
            [
                f"1835,{ALL_SKIP},54.30,15.6,",  # a missing 12-epoch value
                f"7,{CONV},94.37,73.5,88.2",
                f"12000,{AVG},80.0,50.0,70.0",
            ],
        )
    )


# --- the real table ---------------------------------------------------------------------------


def test_real_table_round_trips_and_is_a_bijection(real: GroundTruth) -> None:
    archs = real.archs
    assert len(real) == NUM_CELLS
    assert all(encode(decode(a)) == a for a in archs)
    assert len({decode(a) for a in archs}) == NUM_CELLS
    assert sorted(int(i) for i in real.indices) == list(range(NUM_CELLS))
    assert all(real.arch_of(real.index_of(a)) == a for a in archs)


def test_real_table_anchors(real: GroundTruth) -> None:
    assert real.arch_of(1835) == ALL_SKIP
    assert real.accuracy(1835) == pytest.approx(54.30, abs=0.01)
    index, arch, value = real.best("cifar10", "test", 200)
    assert value == pytest.approx(94.37, abs=0.01)
    assert real.arch_of(index) == arch
    assert real.datasets == ["cifar10", "cifar100", "imagenet16"]


def test_real_table_lookups_agree_and_are_fast(real: GroundTruth) -> None:
    archs = real.archs
    start = time.perf_counter()
    by_string = [real.accuracy(a) for a in archs]
    assert time.perf_counter() - start < 1.0
    by_index = [real.accuracy(real.index_of(a)) for a in archs[:500]]
    by_choices = [real.accuracy(decode(a)) for a in archs[:500]]
    assert by_index == by_string[:500] == by_choices
    many = real.lookup_many(archs, "cifar10_test_200ep")
    np.testing.assert_array_equal(many, np.array(by_string))
    assert real.accuracies(1835)["cifar10_test_200ep"] == real.accuracy(ALL_SKIP)


# --- small tables -----------------------------------------------------------------------------


def test_small_table_lookups(small: GroundTruth, caplog) -> None:
    assert small.columns == ["cifar10_test_200ep", "cifar100_test_200ep", "cifar10_valid_12ep"]
    assert small.datasets == ["cifar10", "cifar100"]
    assert small.index_of(ALL_SKIP) == 1835 and small.index_of(decode(CONV)) == 7
    assert small.arch_of(12000) == AVG
    assert small.accuracy(7) == small.accuracy(CONV) == small.accuracy(decode(CONV)) == 94.37
    assert small.accuracy(list(decode(AVG)), "cifar100") == 50.0
    assert small.accuracy(np.int64(12000), "cifar10", "valid", 12) == 70.0
    assert math.isnan(small.accuracy(ALL_SKIP, "cifar10", "valid", 12))
    assert small.accuracies(7) == {
        "cifar10_test_200ep": 94.37,
        "cifar100_test_200ep": 73.5,
        "cifar10_valid_12ep": 88.2,
    }
    assert small.best() == (7, CONV, 94.37)
    assert small.best("cifar10", "valid", 12) == (7, CONV, 88.2)
    many = small.lookup_many([AVG, ALL_SKIP, AVG], "cifar100_test_200ep")
    assert many.tolist() == [50.0, 15.6, 50.0]
    assert ALL_SKIP in small and encode((0,) * 6) not in small


def test_cells_are_read_by_the_space_the_table_covers(small: GroundTruth, tmp_path) -> None:
    # no codec of its own: the full NAS-Bench-201 space, found in the registry, reads cells
    assert small.space is space_of_benchmark("nas-bench-201") and small.space.name == "nb201"

    class Reading(NB201Space):
        read: list[str] = []

        def decode_unchecked(self, genotype: str) -> tuple[int, ...]:
            self.read.append(genotype)
            return super().decode_unchecked(genotype)

    path = write_table(tmp_path / "gt.csv", [f"1835,{ALL_SKIP},54.3,15.6,1"])
    truth = GroundTruth.from_csv(path, space=Reading())
    assert truth.space.read and set(truth.space.read) == {ALL_SKIP}
    assert truth.index_of(ALL_SKIP) == 1835


def test_subset_table_warns(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="harness.ground_truth"):
        GroundTruth.from_csv(write_table(tmp_path / "gt.csv", [f"1835,{ALL_SKIP},54.3,15.6,1"]))
    assert "covers 1 of the 15625" in caplog.text


def test_unknown_cells_and_columns(small: GroundTruth) -> None:
    with pytest.raises(HarnessError, match="benchmark index 5 is not in"):
        small.accuracy(5)
    with pytest.raises(HarnessError, match="is not in the ground-truth table"):
        small.accuracy(encode((0,) * 6))
    with pytest.raises(HarnessError, match="is not in the ground-truth table"):
        small.index_of((0,) * 6)
    with pytest.raises(HarnessError, match="not NAS-Bench-201 op choices"):
        small.accuracy((9, 9))
    with pytest.raises(ArchStringError):
        small.accuracy("|bogus~0|")
    with pytest.raises(HarnessError, match="no column imagenet16_test_200ep.*cifar10_test_200ep"):
        small.accuracy(7, "imagenet16")
    with pytest.raises(HarnessError, match="no column cifar10_test_12ep"):
        small.best("cifar10", "test", 12)
    with pytest.raises(HarnessError, match="no column nope"):
        small.lookup_many([CONV], "nope")
    with pytest.raises(HarnessError, match="is not in the ground-truth table"):
        small.lookup_many([CONV, encode((2,) * 6)], "cifar10_test_200ep")


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        (HEADER, [f"1,{ALL_SKIP},1,2,3", "2,|nor_conv_5x5~0|+|x~0|,1,2,3"], "row 2: .*not a NAS-"),
        ("index,cifar10_test_200ep", ["1,50"], "lacks the column.*arch_str"),
        ("arch_str,cifar10_test_200ep", [f"{ALL_SKIP},50"], "lacks the column.*index"),
        ("index,arch_str,params", [f"1,{ALL_SKIP},0.1"], "no accuracy column"),
        (HEADER, [f"1,{ALL_SKIP},1,2,3", f"1,{CONV},1,2,3"], "index 1 twice"),
        (HEADER, [f"1,{ALL_SKIP},1,2,3", f"2,{ALL_SKIP},1,2,3"], "twice.*indices 1 and 2"),
        (HEADER, [f"x,{ALL_SKIP},1,2,3"], "not a non-negative integer"),
        (HEADER, [f"1,{ALL_SKIP},abc,2,3"], "'abc' in cifar10_test_200ep"),
        (HEADER, [f"1,{ALL_SKIP},154,2,3"], "outside 0..100"),
        (HEADER, [], "no rows"),
    ],
)
def test_malformed_tables(tmp_path: Path, header: str, rows: list[str], message: str) -> None:
    path = write_table(tmp_path / "bad.csv", rows, header)
    with pytest.raises(HarnessError, match=message) as info:
        GroundTruth.from_csv(path)
    assert "bad.csv" in str(info.value)


def test_unreadable_and_missing_tables(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(HarnessError, match="empty.csv is not a readable CSV"):
        GroundTruth.from_csv(empty)
    with pytest.raises(HarnessError, match="absent.csv does not exist.*harness bench import"):
        GroundTruth.from_csv(tmp_path / "absent.csv")


# --- path resolution --------------------------------------------------------------------------


@pytest.fixture
def tables(tmp_path: Path, monkeypatch) -> dict[str, Path]:
    monkeypatch.delenv(ENV_VAR, raising=False)
    work = tmp_path / "checkout"
    work.mkdir()
    monkeypatch.chdir(work)  # so the shared default is looked up under tmp_path
    names = ("cli", "env", "config")
    return {n: write_table(tmp_path / f"{n}.csv", [f"1835,{ALL_SKIP},54.3,15.6,1"]) for n in names}


def test_resolution_precedence(tables: dict[str, Path], monkeypatch) -> None:
    cli, env, config = (str(tables[n]) for n in ("cli", "env", "config"))
    monkeypatch.setenv(ENV_VAR, env)
    assert resolve_ground_truth_path(cli, config) == Path(cli)
    assert resolve_ground_truth_path(None, config) == Path(env)
    monkeypatch.setenv(ENV_VAR, "")
    assert resolve_ground_truth_path(None, config) == Path(config)
    monkeypatch.delenv(ENV_VAR)
    assert resolve_ground_truth_path(None, config) == Path(config)


def test_resolution_default_and_nothing(tables: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="no ground-truth table given: pass --ground-truth"):
        resolve_ground_truth_path(None)
    shared = tmp_path / "shared" / "data" / "nasbench201"
    shared.mkdir(parents=True)
    write_table(shared / "nb201_accuracy.csv", [f"1835,{ALL_SKIP},54.3,15.6,1"])
    assert resolve_ground_truth_path(None) == (shared / "nb201_accuracy.csv").resolve()
    assert load_ground_truth(None).arch_of(1835) == ALL_SKIP


def test_resolution_missing_files(tables: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    missing = str(tmp_path / "missing.csv")
    with pytest.raises(HarnessError, match="missing.csv \\(given by --ground-truth\\) does not"):
        resolve_ground_truth_path(missing, str(tables["config"]))
    monkeypatch.setenv(ENV_VAR, missing)
    with pytest.raises(HarnessError, match=f"given by {ENV_VAR}.*harness bench import"):
        resolve_ground_truth_path(None, str(tables["config"]))
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(HarnessError, match="given by the config file"):
        resolve_ground_truth_path(None, missing)


def test_gt_importance_on_the_real_table(real: GroundTruth) -> None:
    """What every rank correlation reads: row e, column k is the accuracy of the selected
    cell with edge e set to op k, each an independent benchmark lookup."""
    from harness.records import _neighbour_accuracies
    from spaces.nb201 import NUM_EDGES, OP_NAMES
    from spaces.nb201.space import NB201Space

    skip, conv3 = OP_NAMES.index("skip_connect"), OP_NAMES.index("nor_conv_3x3")
    matrix = np.asarray(_neighbour_accuracies(ALL_SKIP, NB201Space(), real))
    assert matrix.shape == (NUM_EDGES, len(OP_NAMES))
    # The cell's own op on every edge is the cell itself: 54.30 everywhere in that column.
    assert np.allclose(matrix[:, skip], real.accuracy(ALL_SKIP))
    for edge in range(NUM_EDGES):
        variant = [skip] * NUM_EDGES
        variant[edge] = conv3
        assert matrix[edge, conv3] == real.accuracy(encode(variant))
    # The full table holds every neighbour of every cell.
    assert not np.isnan(matrix).any()
    _, best_arch, best = real.best("cifar10", "test", 200)
    best_matrix = np.asarray(_neighbour_accuracies(best_arch, NB201Space(), real))
    own = [best_matrix[e, k] for e, k in enumerate(decode(best_arch))]
    assert own == [best] * NUM_EDGES
    assert (best_matrix <= best).all()  # no neighbour of the benchmark's best beats it
