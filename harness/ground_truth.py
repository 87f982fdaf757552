"""The NAS-Bench-201 ground-truth accuracy table and fast lookups into it.

The table is a CSV (made by ``harness bench import``) with the official benchmark
``index``, the official ``arch_str`` and accuracy columns in percent named
``{dataset}_{metric}_{epochs}ep``. The benchmark index is not a formula of the cell,
so the index <-> cell mapping is read from the table, never computed. Cells are read and
written by the codec of the space the table covers (:func:`spaces.space_of_benchmark`, the
full NAS-Bench-201 space unless a table is given another): nothing here parses arch
strings itself.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from spaces import space_of_benchmark
from spaces.base import Choices, SearchSpace

logger = logging.getLogger(__name__)

ENV_VAR = "HARNESS_GROUND_TRUTH"
BENCHMARK = "nas-bench-201"  # the tabular benchmark these tables hold
# Relative to the working directory, matching the shared-data layout next to a checkout.
DEFAULT_RELATIVE_PATH = Path("..") / "shared" / "data" / "nasbench201" / "nb201_accuracy.csv"
DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "imagenet16")
METRICS: tuple[str, ...] = ("test", "valid")
COLUMN_PATTERN = re.compile(r"^(cifar10|cifar100|imagenet16)_(test|valid)_(\d+)ep$")
_DATASET_ALIASES = {"imagenet16-120": "imagenet16", "imagenet": "imagenet16"}
_HOW_TO_MAKE = "make one with `harness bench import` from the official NAS-Bench-201 .pth file"
_REMAKE = "regenerate it with `harness bench import` from the official NAS-Bench-201 .pth file"

Cell = str | int | Sequence[int]


def column_name(dataset: str = "cifar10", metric: str = "test", epochs: int = 200) -> str:
    """The table column holding ``metric`` accuracy on ``dataset`` after ``epochs`` epochs."""
    dataset = _DATASET_ALIASES.get(dataset.lower(), dataset.lower())
    return f"{dataset}_{metric.lower()}_{int(epochs)}ep"


def resolve_ground_truth_path(cli_value: str | None, config_value: str | None = None) -> Path:
    """Pick the table: CLI value, else ``$HARNESS_GROUND_TRUTH``, else config, else default."""
    sources = (
        ("--ground-truth", cli_value),
        (ENV_VAR, os.environ.get(ENV_VAR)),
        ("the config file", config_value),
    )
    for source, value in sources:
        if value:  # an empty env var means "unset", as shells commonly produce it
            path = Path(value).expanduser()
            if not path.is_file():
                raise HarnessError(
                    f"ground-truth table {path} (given by {source}) does not exist; "
                    f"fix the path or {_HOW_TO_MAKE}"
                )
            return path
    default = Path.cwd() / DEFAULT_RELATIVE_PATH
    if default.is_file():
        return default.resolve()
    raise HarnessError(
        "no ground-truth table given: pass --ground-truth PATH or set "
        f"{ENV_VAR} (a CSV made by `harness bench import`)"
    )


class GroundTruth:
    """Accuracies of NAS-Bench-201 cells, addressable by arch string, index or choices."""

    def __init__(
        self,
        path: Path | None,
        indices: Sequence[int],
        archs: Sequence[str],
        values: np.ndarray,
        columns: Sequence[str],
        space: SearchSpace | None = None,
    ) -> None:
        """Low-level constructor for already-validated data; prefer :meth:`from_csv`.
        ``space``: whose codec reads the cells (None: the benchmark's full space)."""
        self.path = path
        self.space = _table_space(space)
        decode = self.space.decode_unchecked
        self.columns: list[str] = list(columns)
        self._indices = np.asarray(indices, dtype=np.int64)
        self._archs: list[str] = list(archs)
        self._values = np.asarray(values, dtype=np.float64)
        self._row_by_index = {int(i): row for row, i in enumerate(self._indices)}
        self._row_by_arch = {a: row for row, a in enumerate(self._archs)}
        choices = [decode(a) for a in self._archs]
        self._row_by_choices = {c: row for row, c in enumerate(choices)}
        # Op choices per row (rows x edges), to pick out the cells of a subset space at once.
        self._choices = np.array(choices, dtype=np.int64).reshape(-1, self.space.num_edges)
        self._column_pos = {c: k for k, c in enumerate(self.columns)}
        present = {COLUMN_PATTERN.match(c).group(1) for c in self.columns}  # type: ignore[union-attr]
        self.datasets: list[str] = [d for d in DATASETS if d in present]

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str], space: SearchSpace | None = None
                 ) -> GroundTruth:  # fmt: skip
        path = Path(path)
        if not path.is_file():
            raise HarnessError(f"ground-truth table {path} does not exist; {_HOW_TO_MAKE}")
        try:
            frame = pd.read_csv(path, dtype={"arch_str": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise HarnessError(
                f"ground-truth table {path} is not a readable CSV ({e}); {_REMAKE}"
            ) from e
        return cls.from_frame(frame, path, space)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, path: Path | None = None,
                   space: SearchSpace | None = None) -> GroundTruth:  # fmt: skip
        """Validate a table already in memory (``path`` only names it in messages)."""
        space = _table_space(space)
        decode = space.decode_unchecked
        where = f"ground-truth table {path}" if path is not None else "ground-truth table"
        missing = [c for c in ("index", "arch_str") if c not in frame.columns]
        if missing:
            raise HarnessError(f"{where} lacks the column(s) {', '.join(missing)}; {_REMAKE}")
        columns = [c for c in frame.columns if COLUMN_PATTERN.match(str(c))]
        if not columns:
            raise HarnessError(
                f"{where} has no accuracy column named like cifar10_test_200ep; {_REMAKE}"
            )
        ignored = [str(c) for c in frame.columns if c not in ("index", "arch_str", *columns)]
        if ignored:
            logger.debug("%s: ignoring non-accuracy columns %s", where, ", ".join(ignored))
        if frame.empty:
            raise HarnessError(f"{where} has no rows; {_REMAKE}")

        indices = _integer_column(frame["index"], where)
        archs = _arch_column(frame["arch_str"], where, space)
        values = np.column_stack([_accuracy_column(frame[c], c, where) for c in columns])

        duplicated = pd.Series(indices).duplicated().to_numpy()
        if duplicated.any():
            raise HarnessError(
                f"{where} lists benchmark index {indices[int(np.argmax(duplicated))]} twice; "
                f"{_REMAKE}"
            )
        seen: dict[Choices, int] = {}
        for row, arch in enumerate(archs):
            choices = decode(arch)
            if choices in seen:
                raise HarnessError(
                    f"{where} lists cell {arch} twice (indices {indices[seen[choices]]} and "
                    f"{indices[row]}); {_REMAKE}"
                )
            seen[choices] = row
        if len(archs) < space.num_cells:
            logger.warning(
                "%s covers %d of the %d NAS-Bench-201 cells; lookups of the others will fail",
                where,
                len(archs),
                space.num_cells,
            )
        return cls(path, indices, archs, values, columns, space)

    def __len__(self) -> int:
        return len(self._archs)

    def __contains__(self, cell: object) -> bool:
        try:
            self._row(cell)  # type: ignore[arg-type]
        except HarnessError:
            return False
        return True

    def __repr__(self) -> str:
        return f"GroundTruth({self.path}, {len(self)} cells, columns={self.columns})"

    @property
    def indices(self) -> np.ndarray:
        return self._indices.copy()

    @property
    def archs(self) -> list[str]:
        return list(self._archs)

    def index_of(self, arch: str | Sequence[int]) -> int:
        return int(self._indices[self._row(arch)])

    def arch_of(self, index: int) -> str:
        return self._archs[self._row(int(index))]

    def column(self, dataset: str = "cifar10", metric: str = "test", epochs: int = 200) -> str:
        """The name of an existing column, or a HarnessError listing the ones that exist."""
        name = column_name(dataset, metric, epochs)
        if name not in self._column_pos:
            raise HarnessError(
                f"the ground-truth table {self._name()} has no column {name}; "
                f"choose one of {', '.join(self.columns)}"
            )
        return name

    def accuracy(
        self, cell: Cell, dataset: str = "cifar10", metric: str = "test", epochs: int = 200
    ) -> float:
        """Accuracy in percent (nan when the table has no value for this cell)."""
        position = self._column_pos[self.column(dataset, metric, epochs)]
        return float(self._values[self._row(cell), position])

    def accuracies(self, cell: Cell) -> dict[str, float]:
        row = self._values[self._row(cell)]
        return {c: float(row[k]) for k, c in enumerate(self.columns)}

    def best(
        self, dataset: str = "cifar10", metric: str = "test", epochs: int = 200, within=None
    ) -> tuple[int, str, float]:
        """(index, arch string, accuracy) of the most accurate cell in one column; ``within``
        (a :class:`spaces.base.SearchSpace` of NAS-Bench-201 cells) limits it to its cells."""
        values = self._values[:, self._column_pos[self.column(dataset, metric, epochs)]]
        if within is not None:
            values = np.where(within.contains_many(self._choices), values, np.nan)
        if np.isnan(values).all():
            inside = f" for the cells of space {within.name}" if within is not None else ""
            raise HarnessError(
                f"column {column_name(dataset, metric, epochs)} of {self._name()} holds no "
                f"values{inside}; pick another column or re-import the table"
            )
        row = int(np.nanargmax(values))
        return int(self._indices[row]), self._archs[row], float(values[row])

    def lookup_many(self, archs: Sequence[str], column: str) -> np.ndarray:
        """Accuracies in ``column`` (a full column name) for many arch strings at once."""
        if column not in self._column_pos:
            raise HarnessError(
                f"the ground-truth table {self._name()} has no column {column}; "
                f"choose one of {', '.join(self.columns)}"
            )
        get = self._row_by_arch.get
        rows = [get(a) if isinstance(a, str) else None for a in archs]
        # Only the misses take the slow path, which raises the precise error.
        rows = [self._row(a) if r is None else r for a, r in zip(archs, rows, strict=True)]
        return self._values[np.asarray(rows, dtype=np.int64), self._column_pos[column]]

    def _name(self) -> str:
        return str(self.path) if self.path is not None else "(in memory)"

    def _row(self, cell: Cell) -> int:
        if isinstance(cell, str):
            row = self._row_by_arch.get(cell)
            if row is None:
                # raises on malformed strings
                row = self._row_by_choices.get(self.space.decode_unchecked(cell))
            if row is None:
                raise HarnessError(
                    f"cell {cell} is not in the ground-truth table {self._name()}; "
                    "use the full 15,625-cell table"
                )
            return row
        if isinstance(cell, bool):
            raise HarnessError(f"{cell!r} is not a cell; pass an arch string, index or choices")
        if isinstance(cell, int | np.integer):
            row = self._row_by_index.get(int(cell))
            if row is None:
                raise HarnessError(
                    f"benchmark index {int(cell)} is not in the ground-truth table "
                    f"{self._name()}; use an index in 0..{self.space.num_cells - 1} present "
                    "in the table"
                )
            return row
        try:
            choices = tuple(int(c) for c in cell)
        except (TypeError, ValueError) as e:
            raise HarnessError(
                f"{cell!r} is not a cell; pass an arch string, a benchmark index or op choices"
            ) from e
        row = self._row_by_choices.get(choices)
        if row is None:
            edges, ops = self.space.num_edges, self.space.num_ops
            if len(choices) == edges and all(0 <= c < ops for c in choices):
                raise HarnessError(
                    f"cell {choices} is not in the ground-truth table {self._name()}; "
                    "use the full 15,625-cell table"
                )
            raise HarnessError(
                f"{choices} are not NAS-Bench-201 op choices; pass {edges} op indices "
                f"in 0..{ops - 1}"
            )
        return row


def load_ground_truth(cli_value: str | None, config_value: str | None = None) -> GroundTruth:
    """Resolve the table's path (see :func:`resolve_ground_truth_path`) and load it; the
    column every report reads (CIFAR-10 test, 200 epochs) must hold numbers, so that a
    study never trains and selects only to fail at the tables."""
    path = resolve_ground_truth_path(cli_value, config_value)
    truth = GroundTruth.from_csv(path)
    main_column = truth.column("cifar10", "test", 200)
    empty = [c for k, c in enumerate(truth.columns) if np.isnan(truth._values[:, k]).all()]
    if main_column in empty:
        raise HarnessError(f"ground-truth table {path}: its {main_column} column has no numbers; "
                           f"{_REMAKE}")  # fmt: skip
    if empty:
        logger.warning("ground-truth table %s: column(s) %s hold no numbers", path,
                       ", ".join(empty))  # fmt: skip
    return truth


def optional_ground_truth(cli_value: str | None) -> GroundTruth | None:
    """The table when one is given or found at the default path, else None: a study in a
    space without a tabular benchmark (the DARTS space) needs none. A table that is given
    but missing or broken is still one sentence."""
    if not cli_value and not os.environ.get(ENV_VAR):
        if not (Path.cwd() / DEFAULT_RELATIVE_PATH).is_file():
            return None
    return load_ground_truth(cli_value)


def _integer_column(series: pd.Series, where: str) -> np.ndarray:
    numbers = pd.to_numeric(series, errors="coerce")
    bad = numbers.isna() | (numbers % 1 != 0) | (numbers < 0)
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise HarnessError(
            f"{where} row {row + 1} has index {series.iloc[row]!r}, not a non-negative "
            f"integer; {_REMAKE}"
        )
    return numbers.to_numpy().astype(np.int64)


def _table_space(space: SearchSpace | None) -> SearchSpace:
    return space_of_benchmark(BENCHMARK) if space is None else space


def _arch_column(series: pd.Series, where: str, space: SearchSpace) -> list[str]:
    archs = series.tolist()
    for row, arch in enumerate(archs):
        try:
            space.decode_unchecked(arch)
        except HarnessError as e:
            raise HarnessError(f"{where} row {row + 1}: {e}") from e
    return archs


def _accuracy_column(series: pd.Series, name: str, where: str) -> np.ndarray:
    numbers = pd.to_numeric(series, errors="coerce")
    not_numeric = numbers.isna() & series.notna()
    if not_numeric.any():
        row = int(np.argmax(not_numeric.to_numpy()))
        raise HarnessError(
            f"{where} row {row + 1} has {series.iloc[row]!r} in {name}, not a number; {_REMAKE}"
        )
    values = numbers.to_numpy(dtype=np.float64)
    if ((values < 0) | (values > 100)).any():
        raise HarnessError(
            f"{where} has {name} values outside 0..100; accuracies must be in percent"
        )
    finite = values[~np.isnan(values)]
    if finite.size and finite.max() <= 1.0:
        logger.warning("%s: %s never exceeds 1; is it a fraction instead of percent?", where, name)
    return values
