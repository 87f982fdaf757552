"""Building supernets from settings and reading them back from checkpoints."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.config import ComputeSettings, ExperimentConfig, SpaceSettings
from harness.errors import HarnessError
from harness.store import load_checkpoint_file
from spaces import make_space
from spaces.base import Supernet


def build_supernet(
    space: SpaceSettings, num_classes: int, compute: ComputeSettings | None = None
) -> Supernet:
    """The supernet of the search space ``space`` names (see :mod:`spaces`)."""
    return make_space(space).build_supernet(space, num_classes, compute or ComputeSettings())


@dataclass
class LoadedCheckpoint:
    path: Path
    supernet: Supernet
    config: ExperimentConfig
    seed: int
    epoch: int
    run_key: str
    data_fingerprint: str
    state: dict[str, Any]


def load_supernet(path: Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """A supernet rebuilt from a checkpoint file (read-only use: the file is not touched).

    It computes as the run's compute settings say, except that it is never compiled:
    selection evaluates another graph for every candidate (one-hot rows skip ops), and
    compiling each would cost far more than it saves. ``config`` still says how the
    checkpoint was trained.
    """
    state = load_checkpoint_file(Path(path))
    try:
        config = ExperimentConfig.from_dict(state["settings"]["config"])
        eager = dataclasses.replace(config.compute, compile=False)
        supernet = build_supernet(config.space, state["settings"]["num_classes"], eager)
        supernet.load_state_dict(state["model"])
    except (KeyError, TypeError, RuntimeError) as error:
        raise HarnessError(
            f"checkpoint {path} does not match this version of the harness ({error})"
        ) from None
    return LoadedCheckpoint(
        path=Path(path),
        supernet=supernet.to(device),
        config=config,
        seed=state["settings"]["seed"],
        epoch=state["epoch"],
        run_key=state["settings"]["run_key"],
        data_fingerprint=state["settings"]["data_fingerprint"],
        state=state,
    )
