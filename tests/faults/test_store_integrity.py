"""What the store's files promise on read: a Parquet table whose footer renames a column is
refused, temp files of killed writers are cleaned up (a live writer's never), and a bad
selection file is left out with one sentence while everything else reaches the tables."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
from cli_output import one_sentence

from harness.cli import main
from harness.store import ORPHAN_AGE_SECONDS, _writer_host, remove_orphan_temp_files


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_image_folder):
    """A finished DARTS-space (S2) smoke study: one seed, one epoch, magnitude and random."""
    root = tmp_path_factory.mktemp("integrity")
    assert main(_run(root / "results", tiny_image_folder, root / "cache")) == 0
    return root / "results", tiny_image_folder, root / "cache"


def _run(results, folder, cache, methods="magnitude,random"):
    return [
        "run", "--preset", "smoke", "--space", "darts-s2", "--seeds", "0", "--epochs", "1",
        "--methods", methods, "--threads", "1", "--set", "space.channels=2",
        "--set", "data.images_per_split=64", "--data", str(folder), "--cache", str(cache),
        "--results", str(results), "--quiet",
    ]  # fmt: skip


@pytest.fixture
def store(built, tmp_path):
    """A copy of the study to damage, and `harness run`'s arguments for it."""
    source, folder, cache = built
    results = tmp_path / "results"
    shutil.copytree(source, results)
    return results, lambda methods="magnitude,random": _run(results, folder, cache, methods)


def _renaming_flip(data: bytes, column: str) -> bytes:
    """The first one-bit flip in the footer's copies of ``column`` that a plain reader takes
    for a valid table with that column renamed (what a probe found on real tables)."""
    start = data.find(column.encode())
    while start != -1:
        for position in range(start, start + len(column)):
            for bit in range(8):
                flipped = bytearray(data)
                flipped[position] ^= 1 << bit
                try:
                    columns = pd.read_parquet(io.BytesIO(bytes(flipped))).columns
                except Exception:  # noqa: BLE001 - an error is no silent rename
                    continue
                if column not in columns:
                    return bytes(flipped)
        start = data.find(column.encode(), start + 1)
    pytest.fail(f"no silent one-bit rename of {column} found")


def test_a_footer_bit_flip_that_renames_a_column_is_refused(store, tmp_path, capsys):
    results, run_args = store
    table = results / "records.parquet"
    table.write_bytes(_renaming_flip(table.read_bytes(), "benchmark_index"))
    capsys.readouterr()
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "out")]) == 2
    line = one_sentence(capsys)
    assert str(table) in line and "'benchmark_index' reads as" in line
    assert "delete it and re-run `harness run`" in line
    # What the sentence says to do works: the table is rebuilt from the store.
    table.unlink()
    assert main(run_args()) == 0
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "out")]) == 0


@pytest.mark.parametrize("name", ["selections", "runs", "mixing_weights"])
def test_every_table_is_verified_on_read(store, tmp_path, capsys, name):
    results, _ = store
    table = results / f"{name}.parquet"
    table.write_bytes(_renaming_flip(table.read_bytes(), "run_key"))
    capsys.readouterr()
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "out")]) == 2
    line = one_sentence(capsys)
    assert str(table) in line and "'run_key' reads as" in line


def _temp_name(target: str, pid: int, host: str | None = None) -> str:
    return f".{target}.{pid}@{host or _writer_host()}.abc123.tmp"


def test_orphan_temp_files_go_and_live_writers_files_stay(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    dead = int(finished.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = tmp_path / "runs" / "key" / "selections" / "epoch_0001"
        folder.mkdir(parents=True)
        old = time.time() - 2 * ORPHAN_AGE_SECONDS
        files = {
            "dead writer": (_temp_name("a.json", dead), None, False),
            "live writer": (_temp_name("b.json", live.pid), old, True),  # idle, yet alive
            "this process": (_temp_name("c.json", os.getpid()), None, True),
            "other host, fresh": (_temp_name("d.json", dead, "elsewhere-1"), None, True),
            "other host, idle": (_temp_name("e.json", dead, "elsewhere-1"), old, False),
            "no writer named, fresh": (".f.json.k2j4l1.tmp", None, True),
            "no writer named, idle": (".g.json.k2j4l1.tmp", old, False),
        }
        for name, modified, _ in files.values():
            (folder / name).write_text("partial")
            if modified is not None:
                os.utime(folder / name, (modified, modified))
        assert remove_orphan_temp_files(tmp_path) == 3
        for what, (name, _, kept) in files.items():
            assert (folder / name).exists() == kept, what
    finally:
        live.kill()
        live.wait()


def test_a_table_write_killed_by_sigkill_leaves_a_temp_file_the_next_run_removes(store):
    results, run_args = store
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        import harness.store as store
        real_replace = os.replace
        def dying_replace(src, dst):
            if str(dst).endswith("records.parquet"):
                os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(src, dst)
        store.os.replace = dying_replace
        from harness.cli import main
        sys.exit(main({run_args()!r}))
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    [orphan] = results.glob(".records.parquet.*.tmp")
    assert "@" in orphan.name  # named by its writer
    # A temp file another live process is writing right now, beside a selection.
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        selections = next(results.glob("runs/*/selections/epoch_0001"))
        writing = selections / _temp_name("magnitude.0123456789ab.json", live.pid)
        writing.write_text("half a selection")
        assert main(run_args()) == 0
        assert not orphan.exists() and writing.exists()
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        # (the reason for a cell outside the space is harness.selecting's words)
        (lambda raw: {**raw, "selection": {**raw["selection"], "arch": "not a cell"}}, ""),
        (lambda raw: {**raw, "epoch": "1"}, "epoch '1'"),
        (None, ""),  # truncated JSON
    ],
)  # fmt: skip
def test_a_bad_selection_file_is_skipped_with_one_sentence_and_the_rest_reaches_the_tables(
    store, capsys, damage, why
):
    results, run_args = store
    [bad] = results.glob("runs/*/selections/epoch_0001/random.*.json")
    text = bad.read_text()
    damaged = text[: len(text) // 2] if damage is None else json.dumps(damage(json.loads(text)))
    bad.write_text(damaged)
    capsys.readouterr()
    assert main(run_args("magnitude")) == 2  # after writing the tables
    line = one_sentence(capsys)
    assert str(bad) in line and "(method random:" in line and why in line, line
    assert "delete them and re-run `harness run` with those methods" in line
    records = pd.read_parquet(results / "records.parquet")
    assert set(records["method"]) == {"magnitude"}
    # Deleted and run again, as the sentence says: random is back and the run exits 0.
    bad.unlink()
    assert main(run_args()) == 0
    assert set(pd.read_parquet(results / "records.parquet")["method"]) == {"magnitude", "random"}
