"""Convert an official NAS-Bench-201 or NATS-Bench topology benchmark into the ground-truth CSV.

Everything is read through the official APIs (``nas_201_api`` v2.x for NAS-Bench-201
``.pth`` files, ``nats_bench`` for the NATS-Bench topology search space, whose 200-epoch
results are the same training runs): per architecture,
``get_more_info(index, dataset, hp=..., is_random=False)`` averages the final-epoch
metrics over all seeds. The splits follow the NAS-Bench-201 paper: CIFAR-10 valid
comes from the ``cifar10-valid`` run (train set only, ``x-valid``) and test from the
``cifar10`` run (train+valid, ``ori-test``); CIFAR-100 and ImageNet16-120 use
``x-valid`` / ``x-test`` of the same run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.ground_truth import GroundTruth, column_name
from harness.store import atomic_write_bytes

logger = logging.getLogger(__name__)

# (table dataset, metric, official dataset name, key in get_more_info's answer)
SPLITS: tuple[tuple[str, str, str, str], ...] = (
    ("cifar10", "valid", "cifar10-valid", "valid-accuracy"),
    ("cifar10", "test", "cifar10", "test-accuracy"),
    ("cifar100", "valid", "cifar100", "valid-accuracy"),
    ("cifar100", "test", "cifar100", "test-accuracy"),
    ("imagenet16", "valid", "ImageNet16-120", "valid-accuracy"),
    ("imagenet16", "test", "ImageNet16-120", "test-accuracy"),
)
# The official API names training schedules by their epoch count, as strings.
HPS: tuple[str, ...] = ("200", "12")
PROGRESS_EVERY = 1000
_INSTALL_HINT = "install the official API: pip install nas-bench-201"
_NATS_INSTALL_HINT = "install the official API: pip install nats_bench"
NATS_SUFFIX = ".pickle.pbz2"
_ACCEPTED = (
    "a NAS-Bench-201 .pth file (e.g. NAS-Bench-201-v1_1-096897.pth), a NATS-Bench topology "
    f"{NATS_SUFFIX} file (e.g. NATS-tss-v1_0-3ffb9-full{NATS_SUFFIX}) or an extracted "
    "NATS-Bench topology fast-mode directory (e.g. NATS-tss-v1_0-3ffb9-simple/)"
)


def import_benchmark(
    path: str | os.PathLike[str],
    out_csv: str | os.PathLike[str],
    *,
    trust_file: bool = False,
) -> pd.DataFrame:
    """Write the compact accuracy table of the benchmark at ``path`` to ``out_csv``.

    A ``.pth`` file is read as NAS-Bench-201; a ``.pickle.pbz2`` file or a directory as
    NATS-Bench topology (a directory in the API's fast mode, which loads one architecture
    at a time). ``trust_file`` only affects ``.pth`` files (see :func:`import_nb201`): the
    NATS-Bench API always unpickles its files in full, so only pass files from the official
    source.
    """
    path = Path(path)
    if path.is_dir():
        return _import_from_api(_open_nats(path, fast_mode=True), path, Path(out_csv))
    if path.name.endswith(NATS_SUFFIX):
        return _import_from_api(_open_nats(path, fast_mode=False), path, Path(out_csv))
    if path.suffix == ".pth":
        return import_nb201(path, out_csv, trust_file=trust_file)
    missing = "" if path.exists() else " (and it does not exist)"
    raise HarnessError(f"{path} is not a benchmark this importer reads{missing}; pass {_ACCEPTED}")


def import_nb201(
    pth_path: str | os.PathLike[str],
    out_csv: str | os.PathLike[str],
    *,
    trust_file: bool = False,
) -> pd.DataFrame:
    """Write the compact accuracy table for every architecture in ``pth_path`` to ``out_csv``.

    ``trust_file=True`` lets torch unpickle arbitrary objects; only use it for a file
    downloaded from the official source that safe loading refuses.
    """
    pth_path = Path(pth_path)
    return _import_from_api(_open_api(pth_path, trust_file), pth_path, Path(out_csv))


def _import_from_api(api: Any, source: Path, out_csv: Path) -> pd.DataFrame:
    """Build, check and write the table from an opened NAS-Bench-201 or NATS-Bench API."""
    num_archs = len(api)
    if num_archs == 0:
        raise HarnessError(f"{source} lists no architectures; download the benchmark again")
    logger.info("importing %d architectures from %s", num_archs, source)

    columns = [column_name(d, m, int(hp)) for hp in HPS for d, m, _, _ in SPLITS]
    values = np.full((num_archs, len(columns)), np.nan)
    archs: list[str] = []
    for index in range(num_archs):
        archs.append(str(api.arch(index)))
        values[index] = _arch_row(api, index, source)
        if (index + 1) % PROGRESS_EVERY == 0:
            logger.info("imported %d/%d architectures", index + 1, num_archs)

    frame = pd.DataFrame(values, columns=columns)
    has_200 = [c for c in columns if c.endswith("_200ep")]
    if frame[has_200].isna().all().all():
        raise HarnessError(
            f"{source} holds no 200-epoch results; use the full NAS-Bench-201 benchmark file "
            "or the NATS-Bench topology benchmark"
        )
    # Files without 12-epoch runs (or with only some splits, as in v1.0) lose those columns.
    empty = [c for c in columns if c.endswith("_12ep") and frame[c].isna().all()]
    frame = frame.drop(columns=empty)
    frame.insert(0, "arch_str", archs)
    frame.insert(0, "index", np.arange(num_archs, dtype=np.int64))

    GroundTruth.from_frame(frame, out_csv)  # refuse to write a table we could not read back
    _write_atomically(frame, out_csv)
    logger.info(
        "wrote %d rows and %d accuracy columns to %s", len(frame), frame.shape[1] - 2, out_csv
    )
    return frame


# What the APIs raise on a truncated or damaged entry (NATS fast mode loads lazily, so a
# missing or corrupt per-architecture file only shows up here).
_ENTRY_ERRORS = (
    KeyError,
    ValueError,
    AssertionError,
    IndexError,
    TypeError,
    AttributeError,
    EOFError,
    OSError,
    pickle.UnpicklingError,
)


def _arch_row(api: Any, index: int, source: Path) -> list[float]:
    row: list[float] = []
    for hp in HPS:
        results = _arch_results(api, index, hp, source)
        # get_more_info fails on datasets an architecture was never trained on, and
        # schedules may be absent or empty, so ask which ones were run.
        present = set(results.get_dataset_names()) if results is not None else set()
        infos: dict[str, dict[str, Any]] = {}
        for _, _, dataset, key in SPLITS:
            if dataset not in present:
                row.append(math.nan)
                continue
            if dataset not in infos:
                try:
                    infos[dataset] = api.get_more_info(
                        index, dataset, iepoch=None, hp=hp, is_random=False
                    )
                except _ENTRY_ERRORS as e:
                    raise _incomplete(source, index, f"the {hp}-epoch {dataset} results", e) from e
            value = infos[dataset].get(key)  # get_more_info drops splits it cannot find
            row.append(math.nan if value is None else float(value))
    return row


def _arch_results(api: Any, index: int, hp: str, source: Path) -> Any:
    """The ``ArchResults`` of one schedule, or None when the benchmark lacks it.

    Both APIs answer ``query_meta_info_by_index`` with a ValueError when an architecture has
    no such schedule (or no results at all); NATS-Bench in fast mode loads the
    architecture's file here, so read errors are reported as an incomplete benchmark.
    """
    try:
        return api.query_meta_info_by_index(index, hp=hp)
    except ValueError:
        return None
    except _ENTRY_ERRORS as e:
        raise _incomplete(source, index, "the results", e) from e


def _incomplete(source: Path, index: int, what: str, error: Exception) -> HarnessError:
    return HarnessError(
        f"{source}: {what} of architecture {index} are incomplete "
        f"({type(error).__name__}: {error}); download the benchmark again"
    )


def _open_nats(path: Path, *, fast_mode: bool) -> Any:
    try:
        import nats_bench
    except ImportError as e:
        raise HarnessError(f"nats_bench is not importable; {_NATS_INSTALL_HINT}") from e
    if fast_mode:
        if not (path / f"meta{NATS_SUFFIX}").is_file():
            raise HarnessError(
                f"{path} has no meta{NATS_SUFFIX}; pass an extracted NATS-Bench topology "
                "fast-mode directory such as NATS-tss-v1_0-3ffb9-simple/"
            )
    elif not path.is_file():
        raise HarnessError(
            f"benchmark file {path} does not exist; download NATS-tss-v1_0-3ffb9-full"
            f"{NATS_SUFFIX} (or extract NATS-tss-v1_0-3ffb9-simple) and pass its path"
        )
    try:
        return nats_bench.create(str(path), "tss", fast_mode=fast_mode, verbose=False)
    except MemoryError:
        raise
    except Exception as e:  # bz2, pickle, EOF and the API's own ValueErrors on bad layouts
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        detail = f": {lines[0][:200]}" if lines else ""
        raise HarnessError(
            f"{path} is not a NATS-Bench topology benchmark the official API can read "
            f"({type(e).__name__}{detail}); download it again"
        ) from e


def _open_api(pth_path: Path, trust_file: bool) -> Any:
    try:
        from nas_201_api import NASBench201API
    except ImportError as e:
        raise HarnessError(f"nas_201_api is not importable; {_INSTALL_HINT}") from e
    if not pth_path.is_file():
        raise HarnessError(
            f"benchmark file {pth_path} does not exist; download NAS-Bench-201-v1_1-096897.pth "
            "and pass its path"
        )
    try:
        with _torch_loading(trust_file):
            return NASBench201API(str(pth_path), verbose=False)
    except MemoryError:
        raise
    except pickle.UnpicklingError as e:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if refused and not trust_file:
            raise HarnessError(
                f"{pth_path} contains the object type {refused.group(1)}, which safe loading "
                "refuses; if the file comes from the official source, import it again with "
                "trust_file=True"
            ) from e
        raise _unreadable(pth_path, e) from e
    except Exception as e:  # the API signals bad files with asserts, EOF, zip and pickle errors
        raise _unreadable(pth_path, e) from e


def _unreadable(pth_path: Path, error: Exception) -> HarnessError:
    text = str(error)
    # torch wraps every unpickling failure in advice about weights_only; keep the cause.
    text = re.split(r"WeightsUnpickler error:", text, maxsplit=1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first_line = lines[0] if lines else ""
    return HarnessError(
        f"{pth_path} is not a NAS-Bench-201 benchmark file the official API can read "
        f"({type(error).__name__}{': ' + first_line[:200] if first_line else ''}); "
        "download it again"
    )


@contextlib.contextmanager
def _torch_loading(trust_file: bool) -> Iterator[None]:
    """Let the API's own ``torch.load`` read the file.

    Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``, which refuses
    numpy scalars that older pickles may contain; those are harmless, so they are
    allow-listed. ``trust_file`` switches to full unpickling through torch's documented
    environment override, because the API gives no way to pass ``weights_only``.
    """
    import torch

    if trust_file:
        saved = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
        os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
        try:
            with warnings.catch_warnings():
                # torch warns that the override is active; here that is the point.
                warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
                yield
        finally:
            if saved is None:
                os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
            else:
                os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = saved
        return
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:  # torch < 2.5 does not default to weights_only anyway
        yield
        return
    with safe_globals(_numpy_globals()):
        yield


def _numpy_globals() -> list[Any]:
    scalar = np.float64(0).__reduce__()[0]
    allowed: list[Any] = [
        # numpy 1.x pickles name the module numpy.core, numpy 2.x numpy._core.
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
    ]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [
            getattr(dtypes, name)
            for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType")
            if hasattr(dtypes, name)
        ]
    return allowed


def _write_atomically(frame: pd.DataFrame, out_csv: Path) -> None:
    try:
        atomic_write_bytes(out_csv, frame.to_csv(index=False).encode())
    except OSError as e:
        raise HarnessError(f"could not write {out_csv} ({e}); choose a writable output path") from e
