"""The harness from Python (notebooks, scripts): run a study, select on a checkpoint, load
the tables, build the report.

The command line is a thin layer over these functions, so both share the store, the
caching and the validation: bad input is refused with a :class:`HarnessError` (one
sentence) before any work starts, and whatever the store holds is reused.

    from harness import api
    study = api.run("magnitude,ostr", seeds="0-2", preset="smoke")
    study.records          # pandas DataFrames: records, selections, runs, mixing
    api.load("results").selections
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.api_arguments import check_arguments, checkpoint_paths, genotype_texts
from harness.config import ExperimentConfig, SpaceSettings, parse_literal
from harness.errors import HarnessError
from harness.ground_truth import load_ground_truth, optional_ground_truth
from harness.locations import resolve_data_location, resolve_results_dir, writable_folder
from harness.presets import SELECTION_DEFAULTS, build_config, pixels_warning
from harness.selecting import MethodsFailed, select_at_checkpoint
from methods.selection import (
    SelectionMethod,
    adopt_class,
    check_distinct,
    parse_method_list,
)
from methods.supernet import get_algorithm
from methods.supernet.base import parse_options
from spaces import make_space
from spaces.base import SearchSpace
from spaces.darts.genotype import Genotype

__all__ = [
    "Study",
    "Tables",
    "experiment_config",
    "load",
    "parse_seeds",
    "report",
    "retrain",
    "run",
    "select",
    "selection_methods",
    "train",
]

_RANGE = re.compile(r"^([0-9]+)-([0-9]+)$")
MAX_SEED = 2**63 - 1  # torch.manual_seed takes a signed 64-bit integer
MAX_SEEDS = 1000
SECTIONS = ("space", "data", "train", "compute")

Seeds = str | int | Iterable[int]
# "ostr,magnitude", or a list of such specs, SelectionMethod classes and configured methods.
Methods = str | Iterable[str | type[SelectionMethod] | SelectionMethod]
Settings = Mapping[str, Any] | Iterable[str] | None


def parse_seeds(seeds: Seeds) -> list[int]:
    """'0-4' -> [0..4]; '0,2,5' -> [0, 2, 5]; '3' or 3 -> [3]; a list of ints as it is."""
    check_arguments("parse_seeds", {"seeds": seeds})
    if isinstance(seeds, int):
        seeds = str(seeds)
    if not isinstance(seeds, str):
        values = list(seeds)
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in values):
            raise HarnessError(f"seeds must be whole numbers, got {values!r}")
        seeds = ",".join(str(s) for s in values)
    parsed: list[int] = []
    for part in (p.strip() for p in seeds.split(",")):
        match = _RANGE.match(part)
        if match:
            low, high = int(match.group(1)), int(match.group(2))
            if low > high:
                raise HarnessError(f"seed range {part!r} runs backwards; write it as {high}-{low}")
            parsed.extend(range(low, high + 1))
        elif part.isascii() and part.isdigit():
            parsed.append(int(part))
        else:
            raise HarnessError(
                f"cannot read seeds {seeds!r}: use a range like 0-4, a list like 0,2,5, or one seed"
            )
    if len(set(parsed)) != len(parsed):
        raise HarnessError(f"seeds {seeds!r} name a seed twice")
    if parsed and max(parsed) > MAX_SEED:
        raise HarnessError(f"seed {max(parsed)} is too large: seeds go up to {MAX_SEED}")
    if len(parsed) > MAX_SEEDS:
        raise HarnessError(
            f"--seeds {seeds!r} asks for {len(parsed)} seeds, more than {MAX_SEEDS} at once: "
            "run them in chunks (the store keeps what each finished)"
        )
    return parsed


def experiment_config(
    preset: str = "proxy",
    algorithm: str = "darts",
    *,
    space: str | None = None,
    epochs: int | None = None,
    checkpoint_every: int | None = None,
    settings: Settings = None,
    device: str = "cpu",
    data_source: str = "folder",
) -> ExperimentConfig:
    """The validated settings of one study, as ``harness run`` builds them.

    ``settings`` overrides any field: ``{"train.lr": 0.05, "algorithm.lambda_": 0.5}`` or
    the command line's ``["train.lr=0.05"]`` (values given as text are read as there).
    """
    check_arguments("experiment_config", locals())
    overrides: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    algorithm_options: dict[str, Any] = {}
    if space is not None:
        overrides["space"]["name"] = space
    if epochs is not None:
        overrides["train"]["epochs"] = epochs
    if checkpoint_every is not None:
        overrides["train"]["checkpoint_every"] = checkpoint_every
    overrides["data"]["source"] = data_source
    for name, value in _setting_items(settings):
        section, dot, field_name = name.partition(".")
        if not dot or section not in (*SECTIONS, "algorithm"):
            raise HarnessError(
                f"cannot read setting {name!r}: write SECTION.FIELD with SECTION one of "
                "space, data, train, compute, algorithm"
            )
        target = algorithm_options if section == "algorithm" else overrides[section]
        target[field_name] = value
    # Fail on a bad algorithm or option now, not after data loading and training.
    cls = get_algorithm(algorithm)
    parse_options(cls.options_class, algorithm_options, algorithm)
    return build_config(
        preset, overrides, algorithm=algorithm, algorithm_options=algorithm_options, device=device
    )


def _setting_items(settings: Settings) -> list[tuple[str, Any]]:
    if settings is None:
        return []
    if isinstance(settings, str):  # one setting, not a list of its characters
        settings = [settings]
    if isinstance(settings, Mapping):
        return [
            (str(k), parse_literal(v) if isinstance(v, str) else v) for k, v in settings.items()
        ]
    items = []
    for item in settings:
        name, sep, raw = str(item).partition("=")
        if not sep:
            raise HarnessError(
                f"cannot read --set {item!r}: write SECTION.FIELD=VALUE with SECTION one of "
                "space, data, train, compute, algorithm"
            )
        items.append((name, parse_literal(raw)))
    return items


@dataclass
class Tables:
    """A store's tables as DataFrames (see :mod:`harness.records` for their columns)."""

    results: Path
    records: pd.DataFrame
    selections: pd.DataFrame
    runs: pd.DataFrame
    mixing: pd.DataFrame


@dataclass
class Study(Tables):
    """What :func:`run` did, and the store's tables after it."""

    summaries: dict[str, Any] = field(default_factory=dict)  # algorithm -> RunSummary
    notes: list[str] = field(default_factory=list)  # warnings the command line prints


def selection_methods(
    methods: Methods, preset: str = "proxy", search_space: SearchSpace | None = None
) -> list[SelectionMethod]:
    """Methods from specs (as ``--methods``), classes (configured with the preset's defaults
    for their name) or instances, checked like ``--methods``; ``all`` is every method
    ``search_space`` allows."""
    check_arguments("selection_methods", locals())
    from harness.plugins import protocol_problem

    baselines = SELECTION_DEFAULTS.get(preset, {})
    if isinstance(methods, str):
        return parse_method_list(methods, baselines, search_space)
    out: list[SelectionMethod] = []
    for item in methods:
        if isinstance(item, str):
            out += parse_method_list(item, baselines, search_space)
        elif isinstance(item, SelectionMethod):
            out.append(item)
        elif isinstance(item, type):
            where = f"{item.__module__}:{item.__qualname__}"
            if problem := protocol_problem(item, SelectionMethod, "method"):
                raise HarnessError(f"{where} {problem}")
            out.append(adopt_class(item, where)(baseline=baselines.get(item.name)))
        else:
            raise HarnessError(
                f"{item!r} is not a method: give a spec like 'ostr[taylor]', a SelectionMethod "
                "subclass or an instance of one"
            )
    if not out:
        raise HarnessError("no selection method given")
    return check_distinct(out, repr([m.display_name for m in out]))


def check_methods_fit(methods: list[SelectionMethod], space: SearchSpace) -> None:
    """Upper bounds read a tabular benchmark: refused, before any work, in spaces without
    one (the DARTS space's cells are judged by ``harness retrain``)."""
    if space.benchmark is None:
        bounds = [m.display_name for m in methods if m.upper_bound]
        if bounds:
            raise HarnessError(
                f"{', '.join(bounds)} needs a tabular ground truth, and space {space.name} has "
                "none: leave it out of --methods and judge cells with harness retrain"
            )


def run(
    methods: Methods = "all",
    seeds: Seeds = "0",
    *,
    preset: str = "proxy",
    algorithm: str | Iterable[str] = "darts",
    space: str | None = None,
    epochs: int | None = None,
    checkpoint_every: int | None = None,
    settings: Settings = None,
    device: str = "cpu",
    data: str | Path | None = None,
    data_source: str = "folder",
    download: bool = False,
    cache: str | Path | None = None,
    results: str | Path | None = None,
    ground_truth: str | Path | None = None,
    jobs: int = 1,
    threads: int | None = None,
    cluster: str | None = None,
    progress: bool = False,
    notes: Callable[[str], None] | None = None,
) -> Study:
    """Train (cached), select at every checkpoint (cached), write the tables: ``harness run``.

    ``algorithm`` may name several (a list, or comma-separated as on the command line).
    ``notes`` receives warnings before any work starts (default: :func:`warnings.warn`).
    """
    check_arguments("run", locals())  # its parameters, before any other name is bound
    from harness.pipeline import Execution, run_experiment

    # Everything a user can get wrong is checked before any work starts.
    seed_list = parse_seeds(seeds)
    names = algorithm.split(",") if isinstance(algorithm, str) else list(algorithm)
    configs = [
        experiment_config(
            preset, name.strip(), space=space, epochs=epochs, checkpoint_every=checkpoint_every,
            settings=settings, device=device, data_source=data_source,
        )
        for name in names
    ]  # fmt: skip
    # After the space is known: "all" means every method this space allows.
    chosen = selection_methods(methods, preset, make_space(configs[0].space))
    check_methods_fit(chosen, make_space(configs[0].space))
    execution = Execution(jobs=jobs, cluster=cluster, threads=threads).validate()
    results_dir = writable_folder(resolve_results_dir(_text(results)), "--results", create=False)
    if make_space(configs[0].space).benchmark is None:  # its cells are retrained instead
        truth = optional_ground_truth(_text(ground_truth))
    else:
        truth = load_ground_truth(_text(ground_truth))
    dataset = configs[0].data.dataset
    location = resolve_data_location(_text(data), data_source, _text(cache), download, dataset)
    found = [warning] if (warning := pixels_warning(configs[0])) else []
    for text in found:
        (notes or _warn)(text)
    summaries, problems = {}, []
    for config in configs:
        try:
            summaries[config.algorithm] = run_experiment(
                config, seed_list, chosen, location, truth, results_dir, execution,
                progress,
            )  # fmt: skip
        except MethodsFailed as failed:  # the next algorithm still runs; one error at the end
            summaries[config.algorithm] = failed.summary
            problems += failed.problems
    if problems:
        raise MethodsFailed(problems, "the other methods' selections and the tables are "
                            "written; re-run once it is fixed (what is stored is reused)")
    tables = load(results_dir)
    return Study(**vars(tables), summaries=summaries, notes=found)


def train(
    seeds: Seeds = "0",
    *,
    preset: str = "proxy",
    algorithm: str = "darts",
    space: str | None = None,
    epochs: int | None = None,
    checkpoint_every: int | None = None,
    settings: Settings = None,
    device: str = "cpu",
    data: str | Path | None = None,
    data_source: str = "folder",
    download: bool = False,
    cache: str | Path | None = None,
    results: str | Path | None = None,
    threads: int | None = None,
    progress: bool = False,
    notes: Callable[[str], None] | None = None,
) -> list[Any]:
    """Supernets only (``harness train``): one TrainOutcome per seed, checkpoints in the store."""
    check_arguments("train", locals())
    import torch

    from harness.search_data import split_indices
    from harness.training import train_supernet

    seed_list = parse_seeds(seeds)
    config = experiment_config(
        preset, algorithm, space=space, epochs=epochs, checkpoint_every=checkpoint_every,
        settings=settings, device=device, data_source=data_source,
    )  # fmt: skip
    if warning := pixels_warning(config):
        (notes or _warn)(warning)
    dataset = config.data.dataset
    location = resolve_data_location(_text(data), data_source, _text(cache), download, dataset)
    store = writable_folder(resolve_results_dir(_text(results)), "--results", create=False)
    if threads is not None and threads < 1:
        raise HarnessError(f"--threads must be at least 1, got {threads}")
    arrays = location.load()
    split_indices(config.data, len(arrays.train_labels))
    writable_folder(store, "--results")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        return [train_supernet(config, seed, store, arrays, progress) for seed in seed_list]
    finally:
        torch.set_num_threads(previous)


def select(
    checkpoints: str | Path | Iterable[str | Path],
    methods: Methods,
    *,
    data: str | Path | None = None,
    data_source: str = "folder",
    download: bool = False,
    cache: str | Path | None = None,
    ground_truth: str | Path | None = None,
    device: str = "cpu",
) -> pd.DataFrame:
    """Methods on stored checkpoints (``harness select``); results are stored beside each
    checkpoint and reused. One row per checkpoint and method: arch, CIFAR-10 test accuracy
    (200 epochs), scores, cost, and whether it was computed now."""
    check_arguments("select", locals())
    from harness.config import check_device
    from harness.store import load_checkpoint_file

    check_device(device)
    paths = [_stored_checkpoint(c) for c in checkpoint_paths(checkpoints)]
    if not paths:
        raise HarnessError("no checkpoint given")
    # Method names are relative to the preset that trained the run, as in `harness run`
    # (one sentence here if the file is not a supernet checkpoint; later ones when selected).
    recorded = load_checkpoint_file(paths[0])["settings"]["config"]
    searched = make_space(SpaceSettings(**recorded["space"]))
    parsed = selection_methods(methods, recorded["preset"], searched)
    check_methods_fit(parsed, searched)
    truth = load_ground_truth(_text(ground_truth))
    dataset = recorded["data"].get("dataset", "cifar10")
    location = resolve_data_location(_text(data), data_source, _text(cache), download, dataset)
    arrays = location.load()
    rows, problems = [], []
    for path in paths:
        found = select_at_checkpoint(path, parsed, arrays, truth, device, problems=problems)
        for stored in found:
            s = stored.selection
            rows.append({
                "seed": stored.seed, "epoch": stored.epoch, "method": s.method, "arch": s.arch,
                "cifar10_test": truth.accuracy(s.arch) if s.arch in truth else float("nan"),
                "scores": s.scores, "edge_order": s.edge_order,
                "wall_seconds": s.cost.wall_seconds, "forward_passes": s.cost.forward_passes,
                "computed": stored.computed, "path": str(stored.path),
            })  # fmt: skip
    if problems:  # every checkpoint was selected first
        raise MethodsFailed(problems, "the other methods' selections are stored; re-run once "
                            "it is fixed (what is stored is reused)")
    return pd.DataFrame(rows)


def retrain(
    genotypes: Iterable[str | Genotype] | str | Genotype | None = None,
    *,
    protocol: str = "proxy",
    seeds: Seeds = 0,
    settings: Settings = None,
    space: str | None = None,
    methods: Iterable[str] | str | None = None,
    epoch: str | int = "final",
    dataset: str = "cifar10",
    results: str | Path | None = None,
    data: str | Path | None = None,
    data_source: str = "folder",
    cache: str | Path | None = None,
    download: bool = False,
    ground_truth: str | Path | None = None,
    jobs: int = 1,
    threads: int | None = None,
    cluster: str | None = None,
    device: str = "cpu",
    progress: bool = False,
    notes: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Retrain genotypes from scratch (cached, resumable): ``harness retrain``.

    ``genotypes``: DARTS genotype strings or ``Genotype`` tuples; None: every genotype the
    store's selections chose in a space without tabular ground truth (narrowed by
    ``space``, ``methods`` and ``epoch``). ``settings`` overrides the protocol:
    ``{"retrain.epochs": 3}`` or ``["retrain.epochs=3"]``. Returns one row per (genotype,
    seed); the records table gains the accuracies (fidelity ``retrain-<protocol>``).
    """
    check_arguments("retrain", locals())
    from harness.config import check_device
    from harness.pipeline import Execution
    from harness.records import write_tables
    from harness.retrain_jobs import genotypes_in_store, plan_jobs, run_jobs
    from harness.retraining import retrain_settings

    seed_list = parse_seeds(seeds)
    overrides = {}
    for name, value in _setting_items(settings):
        section, dot, field_name = name.partition(".")
        if section != "retrain" or not dot:
            raise HarnessError(f"cannot read retrain setting {name!r}: write retrain.FIELD=VALUE")
        overrides[field_name] = value
    chosen = retrain_settings(protocol, overrides)
    check_device(device)
    execution = Execution(jobs=jobs, cluster=cluster, threads=threads).validate()
    results_dir = writable_folder(resolve_results_dir(_text(results)), "--results", create=False)
    genotypes = genotype_texts(genotypes)  # one sentence for a malformed Genotype tuple
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    if genotypes:
        pairs = [(genotype, dataset) for genotype in genotypes]
    else:
        pairs = genotypes_in_store(results_dir, space, list(methods) if methods else None, epoch)
    planned = plan_jobs(pairs, seed_list)
    if protocol in ("paper", "robustdarts") and device == "cpu":
        (notes or _warn)(f"warning: the {protocol} protocol trains for 600 epochs on every "
                         "image: weeks on a CPU; use --device cuda")  # fmt: skip
    locations = {
        name: resolve_data_location(_text(data), data_source, _text(cache), download, name)
        for name in dict.fromkeys(job.dataset for job in planned)
    }
    rows = run_jobs(planned, chosen, locations, results_dir, execution, device, progress)
    # --genotype retrains reach the records table even in a store without supernet runs
    if (results_dir / "runs").is_dir() or (results_dir / "retrains").is_dir():
        write_tables(results_dir, optional_ground_truth(_text(ground_truth)))
    return pd.DataFrame(rows)


def _stored_checkpoint(checkpoint: str | Path) -> Path:
    path = Path(checkpoint).resolve()
    if not path.is_file():
        raise HarnessError(f"checkpoint {checkpoint} does not exist")
    if path.parent.name != "checkpoints" or len(path.parents) < 4:
        raise HarnessError(
            f"{checkpoint} is not inside a results store: pass a checkpoint "
            "<results>/runs/<key>/checkpoints/epoch_NNNN.pt"
        )
    return path


def load(results: str | Path | None = None) -> Tables:
    """The tables ``harness run`` wrote to ``results`` (default ``$HARNESS_RESULTS`` or
    ``./results``), validated as the report reads them."""
    check_arguments("load", locals())
    from harness.report.load import load_results

    results_dir = resolve_results_dir(_text(results))
    tables = load_results(results_dir)
    return Tables(results_dir, tables.records, tables.selections, tables.runs, tables.mixing)


def report(
    results: str | Path | None = None,
    out: str | Path = "reports",
    *,
    preset: str | None = None,
    algorithm: str | None = None,
    space: str | None = None,
    config: str | None = None,
):
    """Figures, tables and ``index.html`` (``harness report``); returns the ReportSummary."""
    check_arguments("report", locals())
    from harness.report import build_report

    return build_report(
        resolve_results_dir(_text(results)),
        writable_folder(Path(out).resolve(), "--out", create=False),
        preset=preset,
        algorithm=algorithm,
        config_key=config,
        space=space,
    )


def _warn(text: str) -> None:
    warnings.warn(text, stacklevel=3)


def _text(value: str | Path | None) -> str | None:
    return None if value is None else str(value)
