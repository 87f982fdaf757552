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

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from harness.api_arguments import (
    Seeds,
    Settings,
    check_arguments,
    checkpoint_paths,
    genotype_texts,
    parse_seeds,
    setting_items,
)
from harness.api_requests import (
    DataFields,
    ExperimentFields,
    RetrainRequest,
    RunRequest,
    TrainRequest,
    make_request,
)
from harness.config import ExperimentConfig, SpaceSettings
from harness.errors import HarnessError
from harness.experiment import Experiment, check_device, resolve_experiment
from harness.ground_truth import load_ground_truth, optional_ground_truth
from harness.locations import resolve_data_location, resolve_results_dir, writable_folder
from harness.pipeline import Execution, run_experiment, torch_threads
from harness.plugins import protocol_problem
from harness.presets import SELECTION_DEFAULTS, pixels_warning
from harness.records import write_tables
from harness.report import build_report
from harness.report.load import load_results
from harness.retrain_jobs import genotypes_in_store, plan_jobs, run_jobs
from harness.retrain_settings import retrain_settings
from harness.selecting import MethodsFailed, select_at_checkpoint
from harness.store import load_checkpoint_file
from harness.training import train_supernet
from methods.selection import (
    SelectionMethod,
    adopt_class,
    check_distinct,
    parse_method_list,
)
from spaces import make_space
from spaces.base import SearchSpace
from spaces.darts.genotype import Genotype

__all__ = [
    "RetrainRequest",
    "RunRequest",
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
    "TrainRequest",
]

SECTIONS = ("space", "data", "train", "compute")
# "ostr,magnitude", or a list of such specs, SelectionMethod classes and configured methods.
Methods = str | Iterable[str | type[SelectionMethod] | SelectionMethod]


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
    fields = ExperimentFields(preset, space, epochs, checkpoint_every, settings, device)
    return resolve(fields, algorithm, data_source).config


def resolve(fields: ExperimentFields, algorithm: str, data_source: str) -> Experiment:
    """The experiment a request names, resolved once (:mod:`harness.experiment`)."""
    overrides: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    algorithm_options: dict[str, Any] = {}
    if fields.space is not None:
        overrides["space"]["name"] = fields.space
    if fields.epochs is not None:
        overrides["train"]["epochs"] = fields.epochs
    if fields.checkpoint_every is not None:
        overrides["train"]["checkpoint_every"] = fields.checkpoint_every
    overrides["data"]["source"] = data_source
    for name, value in setting_items(fields.settings):
        section, dot, field_name = name.partition(".")
        if not dot or section not in (*SECTIONS, "algorithm"):
            raise HarnessError(
                f"cannot read setting {name!r}: write SECTION.FIELD with SECTION one of "
                "space, data, train, compute, algorithm"
            )
        target = algorithm_options if section == "algorithm" else overrides[section]
        target[field_name] = value
    return resolve_experiment(fields.preset, overrides, algorithm, algorithm_options,
                              fields.device)  # fmt: skip


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


def run(methods: Methods | RunRequest = "all", seeds: Seeds = "0", **fields: Any) -> Study:
    """Train (cached), select at every checkpoint (cached), write the tables: ``harness run``.

    Takes a :class:`~harness.api_requests.RunRequest`, or its fields as keywords
    (``preset``, ``algorithm`` — several as a list or comma-separated —, ``space``,
    ``epochs``, ``settings``, ``device``, ``data``, ``results``, ``jobs``, ...).
    ``notes`` receives warnings before any work starts (default: :func:`warnings.warn`).
    """
    request = (
        methods
        if isinstance(methods, RunRequest) and not fields
        else make_request(RunRequest, "run", {"methods": methods, "seeds": seeds, **fields})
    )
    # Everything a user can get wrong is checked before any work starts.
    seed_list = parse_seeds(request.seeds)
    algorithm = request.algorithm
    names = algorithm.split(",") if isinstance(algorithm, str) else list(algorithm)
    experiments = [resolve(request, name.strip(), request.data_source) for name in names]
    space = experiments[0].space
    # After the space is known: "all" means every method this space allows.
    chosen = selection_methods(request.methods, request.preset, space)
    check_methods_fit(chosen, space)
    execution = Execution(request.jobs, request.cluster, request.threads).validate()
    results_dir = writable_folder(resolve_results_dir(_text(request.results)), "--results",
                                 create=False)  # fmt: skip
    if space.benchmark is None:  # its cells are retrained instead
        truth = optional_ground_truth(_text(request.ground_truth))
    else:
        truth = load_ground_truth(_text(request.ground_truth))
    location = _location(request, experiments[0].config.data.dataset)
    found = [warning] if (warning := pixels_warning(experiments[0].config)) else []
    for text in found:
        (request.notes or _warn)(text)
    summaries, problems = {}, []
    for experiment in experiments:
        name = experiment.config.algorithm
        try:
            summaries[name] = run_experiment(
                experiment, seed_list, chosen, location, truth, results_dir, execution,
                request.progress,
            )  # fmt: skip
        except MethodsFailed as failed:  # the next algorithm still runs; one error at the end
            summaries[name] = failed.summary
            problems += failed.problems
    if problems:
        raise MethodsFailed(
            problems,
            "the other methods' selections and the tables are "
            "written; re-run once it is fixed (what is stored is reused)",
        )
    tables = load(results_dir)
    return Study(**vars(tables), summaries=summaries, notes=found)


def train(seeds: Seeds | TrainRequest = "0", **fields: Any) -> list[Any]:
    """Supernets only (``harness train``): one TrainOutcome per seed, checkpoints in the
    store. Takes a :class:`~harness.api_requests.TrainRequest` or its fields as keywords."""
    request = (
        seeds
        if isinstance(seeds, TrainRequest) and not fields
        else make_request(TrainRequest, "train", {"seeds": seeds, **fields})
    )
    seed_list = parse_seeds(request.seeds)
    experiment = resolve(request, request.algorithm, request.data_source)
    if warning := pixels_warning(experiment.config):
        (request.notes or _warn)(warning)
    location = _location(request, experiment.config.data.dataset)
    store = writable_folder(resolve_results_dir(_text(request.results)), "--results",
                            create=False)  # fmt: skip
    if request.threads is not None and request.threads < 1:
        raise HarnessError(f"--threads must be at least 1, got {request.threads}")
    arrays = location.load()
    experiment = experiment.on_data(arrays, seed_list)  # e.g. a split the data cannot give
    writable_folder(store, "--results")
    with torch_threads(request.threads or torch.get_num_threads()):
        return [
            train_supernet(experiment, seed, store, arrays, request.progress) for seed in seed_list
        ]


def _location(request: DataFields, dataset: str):
    return resolve_data_location(_text(request.data), request.data_source,
                                 _text(request.cache), request.download, dataset)  # fmt: skip


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
        raise MethodsFailed(
            problems,
            "the other methods' selections are stored; re-run once "
            "it is fixed (what is stored is reused)",
        )
    return pd.DataFrame(rows)


def retrain(
    genotypes: Iterable[str | Genotype] | str | Genotype | RetrainRequest | None = None,
    **fields: Any,
) -> pd.DataFrame:
    """Retrain genotypes from scratch (cached, resumable): ``harness retrain``.

    Takes a :class:`~harness.api_requests.RetrainRequest` or its fields as keywords.
    ``genotypes``: genotype strings (DARTS's as DARTS prints them; any registered space's
    text, read by ``space`` or else the first space that reads it) or DARTS ``Genotype``
    tuples; None: every genotype the
    store's selections chose in a space without tabular ground truth (narrowed by
    ``space``, ``methods`` and ``epoch``). ``settings`` overrides the protocol:
    ``{"retrain.epochs": 3}`` or ``["retrain.epochs=3"]``. Returns one row per (genotype,
    seed); the records table gains the accuracies (fidelity ``retrain-<protocol>``).
    """
    request = (
        genotypes
        if isinstance(genotypes, RetrainRequest) and not fields
        else (make_request(RetrainRequest, "retrain", {"genotypes": genotypes, **fields}))
    )
    seed_list = parse_seeds(request.seeds)
    overrides = {}
    for name, value in setting_items(request.settings):
        section, dot, field_name = name.partition(".")
        if section != "retrain" or not dot:
            raise HarnessError(f"cannot read retrain setting {name!r}: write retrain.FIELD=VALUE")
        overrides[field_name] = value
    protocol, device = request.protocol, request.device
    chosen = retrain_settings(protocol, overrides)
    check_device(device)
    execution = Execution(request.jobs, request.cluster, request.threads).validate()
    results_dir = writable_folder(resolve_results_dir(_text(request.results)), "--results",
                                  create=False)  # fmt: skip
    texts = genotype_texts(request.genotypes)  # one sentence for a malformed Genotype tuple
    methods = request.methods
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    if texts:
        pairs = [(genotype, request.dataset) for genotype in texts]
    else:
        pairs = genotypes_in_store(
            results_dir, request.space, list(methods) if methods else None, request.epoch
        )
    planned = plan_jobs(pairs, seed_list, space=request.space)
    if protocol in ("paper", "robustdarts") and device == "cpu":
        (request.notes or _warn)(f"warning: the {protocol} protocol trains for 600 epochs on "
                                 "every image: weeks on a CPU; use --device cuda")  # fmt: skip
    locations = {
        name: _location(request, name) for name in dict.fromkeys(job.dataset for job in planned)
    }
    rows = run_jobs(planned, chosen, locations, results_dir, execution, device, request.progress)
    # --genotype retrains reach the records table even in a store without supernet runs
    if (results_dir / "runs").is_dir() or (results_dir / "retrains").is_dir():
        write_tables(results_dir, optional_ground_truth(_text(request.ground_truth)))
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
