"""One experiment, resolved once at the boundary.

``harness run`` (and ``train``, and the Python API) turns a preset, its overrides, an
algorithm name and its options into an :class:`Experiment` exactly once: the search space
is built, the algorithm looked up and its options parsed and checked against the space and
the training settings, the split file read, the device and compiler probed. Once the data
is loaded, :meth:`Experiment.on_data` adds the split indices and every seed's run key.
Training, selection and the records take this object and never re-derive what it holds
(``tests/test_experiment.py`` counts it).

It also matches recorded settings against the published protocols (:func:`protocol_of`,
:func:`searched_as`): a run's protocol is decided by its values, not its preset's name.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.config import ExperimentConfig
from harness.data import NUM_CLASSES, ImageArrays, search_split
from harness.errors import HarnessError
from harness.keys import run_key_of
from harness.presets import (
    PUBLISHED_PROTOCOL_PRESETS,
    canonical_space,
    preset_sections,
    supported_compute,
)
from harness.split_file import SplitFile, read_split_file
from methods.supernet import algorithm_source, get_algorithm
from methods.supernet.base import SupernetAlgorithm, parse_options
from spaces import make_space
from spaces.base import SearchSpace, Supernet


@dataclass(frozen=True)
class Experiment:
    """Everything one study derives from its settings, derived once.

    ``split`` and ``run_keys`` are empty until :meth:`on_data` binds the experiment to the
    loaded images (the split depends on their count, the keys on their fingerprint).
    """

    config: ExperimentConfig
    space: SearchSpace
    algorithm: type[SupernetAlgorithm]
    options: Any  # the algorithm's parsed options (an instance of its options_class)
    algorithm_source: str | None  # a plugin algorithm's class and version; None: built-in
    split_file: SplitFile | None = None
    data_fingerprint: str | None = None
    split: tuple[torch.Tensor, torch.Tensor] | None = None
    run_keys: Mapping[int, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.config.data.dataset]

    def on_data(self, arrays: ImageArrays, seeds: Iterable[int]) -> Experiment:
        """This experiment bound to ``arrays``: the search split (one sentence when the images
        cannot give it) and the run key of every seed."""
        if self.data_fingerprint == arrays.fingerprint and set(seeds) <= set(self.run_keys):
            return self
        if self.data_fingerprint not in (None, arrays.fingerprint):
            raise HarnessError("an experiment bound to one data set was given another")
        split = self.split or self._split(len(arrays.train_labels))
        digest = self.split_file.digest if self.split_file else None
        keys = {
            seed: run_key_of(self.config, seed, arrays.fingerprint, digest, self.algorithm_source)
            for seed in seeds
        }
        return dataclasses.replace(
            self, data_fingerprint=arrays.fingerprint, split=split,
            run_keys={**self.run_keys, **keys},
        )  # fmt: skip

    def run_key(self, seed: int) -> str:
        if seed not in self.run_keys:
            raise HarnessError(f"seed {seed} is not one of this experiment's seeds")
        return self.run_keys[seed]

    def build_supernet(self) -> Supernet:
        """A fresh supernet of the space, computing as the compute settings say."""
        config = self.config
        return self.space.build_supernet(config.space, self.num_classes, config.compute)

    def build_algorithm(self, supernet: Supernet) -> SupernetAlgorithm:
        """The algorithm around ``supernet``, with the options parsed at resolution."""
        return self.algorithm(supernet, self.config.train, self.options)

    def _split(self, num_train: int) -> tuple[torch.Tensor, torch.Tensor]:
        data = self.config.data
        if self.split_file is None:
            return search_split(num_train, data.split_seed, data.images_per_split)
        return self.split_file.halves(num_train, data.images_per_split)


def resolve_experiment(
    preset: str,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    algorithm: str = "darts",
    algorithm_options: Mapping[str, Any] | None = None,
    device: str = "cpu",
) -> Experiment:
    """The preset's settings with ``overrides`` (section -> field -> value) applied, checked
    once and resolved: one sentence on the first thing wrong, before any work starts."""
    overrides = overrides or {}
    sections = preset_sections(preset, overrides)
    sections["space"].validate()
    space = make_space(sections["space"])
    sections["space"] = canonical_space(sections["space"], space)
    sections["compute"] = supported_compute(
        sections["compute"], space, overrides.get("compute", {})
    )
    algorithm_class = get_algorithm(algorithm)
    # Every option, defaults included, so that a changed default never lets a store made
    # under the old one be reused (the options are part of the run key).
    options = parse_options(algorithm_class.options_class, dict(algorithm_options or {}),
                            algorithm)  # fmt: skip
    config = ExperimentConfig(
        preset=preset, algorithm=algorithm, algorithm_options=dataclasses.asdict(options),
        device=device, **sections,
    ).validate()  # fmt: skip
    check_device(device)
    if config.compute.compile and device == "cpu":
        check_cpu_compiler()
    return _experiment(config, space, algorithm_class, options)


def experiment_of(config: ExperimentConfig) -> Experiment:
    """An experiment of settings already made (a stored run's, a test's), taken as they are:
    its space built, its algorithm's options parsed and checked, its split file read."""
    space = make_space(config.space)
    algorithm_class = get_algorithm(config.algorithm)
    options = parse_options(algorithm_class.options_class, dict(config.algorithm_options),
                            config.algorithm)  # fmt: skip
    return _experiment(config, space, algorithm_class, options)


def _experiment(config: ExperimentConfig, space: SearchSpace, algorithm_class, options):
    """The checks and reads both ways of making an experiment end with: the options against
    the space and training settings, and the split file."""
    algorithm_class.check_settings(options, config.train, space)
    split_file = read_split_file(config.data.split_file) if config.data.split_file else None
    return Experiment(config, space, algorithm_class, options,
                      algorithm_source(config.algorithm), split_file)  # fmt: skip


def build_config(
    preset: str,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    algorithm: str = "darts",
    algorithm_options: Mapping[str, Any] | None = None,
    device: str = "cpu",
) -> ExperimentConfig:
    """The validated settings alone (see :func:`resolve_experiment`)."""
    return resolve_experiment(preset, overrides, algorithm, algorithm_options, device).config


def check_device(device: str) -> None:
    """``cpu``, ``cuda`` or ``cuda:N`` naming a device this machine has; else one sentence."""
    match = re.fullmatch(r"cpu|cuda(?::(\d+))?", device)
    if match is None:
        raise HarnessError(f"unknown device {device!r}; use cpu, cuda or cuda:N")
    if device == "cpu":
        return
    if not torch.cuda.is_available():
        raise HarnessError(f"--device {device}: this machine has no usable CUDA device; "
                           "use --device cpu")  # fmt: skip
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise HarnessError(f"--device {device}: there are only {torch.cuda.device_count()} CUDA "
                           "device(s), numbered from 0")  # fmt: skip


def check_cpu_compiler() -> None:
    """``torch.compile`` on the CPU writes C++: without a compiler it fails at the first
    step with a long traceback, so say it before any work starts."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # a torch without this helper: let torch.compile speak for itself
        return
    try:
        get_cpp_compiler()
    except Exception as error:  # torch raises its own InvalidCxxCompiler
        raise HarnessError(
            "compute.compile=true on the CPU needs a C++ compiler (torch.compile generates "
            f"C++ there) and none was found ({str(error).splitlines()[0]}); install g++ or "
            "point CXX at one, or leave compute.compile false"
        ) from None


# Settings that say where the pixels come from or how the supernet computes: recorded in
# the report, but they do not make a run another protocol.
_NOT_PROTOCOL = {"data": ("source", "split_file", "split_seed"), "train": ("checkpoint_every",)}


def protocol_of(config: dict[str, Any]) -> str | None:
    """The published-protocol preset whose values a recorded config has, else None.

    Presets are labels, so a run is matched by its values: ``--preset xautodl --epochs 10``
    is not the xautodl protocol, and its row gets no published number.
    """
    try:
        recorded = ExperimentConfig.from_dict(config).to_dict()
        for preset in PUBLISHED_PROTOCOL_PRESETS:
            reference = build_config(preset, algorithm=recorded["algorithm"]).to_dict()
            if all(
                _protocol_part(recorded, section) == _protocol_part(reference, section)
                for section in ("space", "data", "train", "algorithm_options")
            ):
                return preset
    except (HarnessError, KeyError, TypeError):
        return None
    return None


def searched_as(config: dict[str, Any], preset: str) -> bool:
    """Whether a recorded config is ``preset``'s search protocol in its own space and on its
    own data set (the DARTS-space protocol covers S1-S4 and CIFAR-10/100/SVHN alike).

    Matched by values like :func:`protocol_of`: ``--preset darts-paper --epochs 1`` is not
    DARTS's search protocol.
    """
    try:
        recorded = ExperimentConfig.from_dict(config).to_dict()
        own = {"space": {"name": recorded["space"]["name"]},
               "data": {"dataset": recorded["data"]["dataset"]}}  # fmt: skip
        reference = build_config(preset, own, algorithm=recorded["algorithm"]).to_dict()
    except (HarnessError, KeyError, TypeError):
        return False
    return all(
        _protocol_part(recorded, section) == _protocol_part(reference, section)
        for section in ("space", "data", "train", "algorithm_options")
    )


def _protocol_part(config: dict[str, Any], section: str) -> Any:
    values = config[section]
    if isinstance(values, dict):
        return {k: v for k, v in values.items() if k not in _NOT_PROTOCOL.get(section, ())}
    return values
