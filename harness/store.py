"""The result store: a directory tree where every file is written atomically.

Layout under the store root::

    runs/<run_key>/settings.json          what produced the run (readable)
    runs/<run_key>/checkpoints/epoch_NNNN.pt
    runs/<run_key>/manifest.json          completed checkpoints with size and sha256
    runs/<run_key>/metrics.csv            one row per trained epoch

A file appears under its final name only once it is complete (temp file in the same
directory, fsync, ``os.replace``), so a process killed at any moment leaves either
the old state or the new one. A completed checkpoint is never rewritten.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from harness.errors import HarnessError

log = logging.getLogger(__name__)

_CHECKPOINT_NAME = re.compile(r"^epoch_(\d{4,})\.pt$")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes owner-only files; results on a shared file system must be readable
        # by the collaborators' (and cluster workers') accounts like any other file.
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(
        path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()
    )


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class RunStore:
    """Files of one supernet run (one config and seed)."""

    def __init__(self, root: Path, key: str) -> None:
        self.key = key
        self.dir = Path(root) / "runs" / key
        self.checkpoint_dir = self.dir / "checkpoints"
        self.settings_path = self.dir / "settings.json"
        self.manifest_path = self.dir / "manifest.json"
        self.metrics_path = self.dir / "metrics.csv"

    def write_settings(self, settings: dict[str, Any]) -> None:
        """Record the run's settings; an existing record must agree (keys are hashes)."""
        existing = read_json(self.settings_path)
        if existing is not None:
            if json.loads(json.dumps(settings, default=str)) != existing:
                raise HarnessError(
                    f"{self.settings_path} disagrees with the settings hashed to its key; "
                    "the store is damaged: move that run directory away and re-run"
                )
            return
        atomic_write_json(self.settings_path, settings)

    def read_settings(self) -> dict[str, Any]:
        settings = read_json(self.settings_path)
        if settings is None:
            raise HarnessError(f"no readable {self.settings_path}: run harness run to rebuild it")
        return settings

    def manifest(self) -> dict[str, dict[str, Any]]:
        return read_manifest(self.manifest_path)

    def repair_metadata(self) -> list[str]:
        """Rebuild a missing or unreadable settings.json / metrics.csv from the newest
        checkpoint, which embeds both; returns the names of the files rebuilt."""
        settings_ok = isinstance(read_json(self.settings_path), dict)
        metrics_ok = _readable_csv(self.metrics_path)
        completed = self.completed_epochs()
        if (settings_ok and metrics_ok) or not completed:
            return []
        state = self.load_checkpoint(completed[-1])
        rebuilt = []
        if not settings_ok:
            atomic_write_json(self.settings_path, state["settings"])
            rebuilt.append(self.settings_path.name)
        if not metrics_ok:
            atomic_write_bytes(
                self.metrics_path, pd.DataFrame(state["metrics"]).to_csv(index=False).encode()
            )
            rebuilt.append(self.metrics_path.name)
        log.warning("run %s: rebuilt %s from its epoch-%d checkpoint", self.key,
                    " and ".join(rebuilt), completed[-1])  # fmt: skip
        return rebuilt

    def checkpoint_path(self, epoch: int) -> Path:
        return self.checkpoint_dir / f"epoch_{epoch:04d}.pt"

    def completed_epochs(self) -> list[int]:
        """Epochs with a complete checkpoint listed in the manifest, ascending."""
        listed = self.manifest()
        epochs = []
        for name in listed:
            match = _CHECKPOINT_NAME.match(name)
            if match and (self.checkpoint_dir / name).exists():
                epochs.append(int(match.group(1)))
        return sorted(epochs)

    def save_checkpoint(self, epoch: int, state: dict[str, Any]) -> Path:
        path = self.checkpoint_path(epoch)
        if path.exists() and path.name in self.manifest():
            raise HarnessError(f"refusing to rewrite the completed checkpoint {path}")
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        atomic_write_bytes(path, data)
        # The manifest entry makes the checkpoint count; a kill between the two writes
        # leaves an unlisted file that the next run overwrites.
        manifest = self.manifest()
        manifest[path.name] = {"epoch": epoch, "bytes": len(data), "sha256": sha256_bytes(data)}
        atomic_write_json(self.manifest_path, manifest)
        return path

    def load_checkpoint(self, epoch: int) -> dict[str, Any]:
        return load_checkpoint_file(self.checkpoint_path(epoch), self.manifest())

    def remove_stale_temp_files(self) -> None:
        for directory in (self.dir, self.checkpoint_dir):
            if directory.exists():
                for tmp in directory.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)


def read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """A run's manifest ({} when there is none yet); one sentence when it is damaged."""
    if not path.exists():
        return {}
    manifest = read_json(path)
    if not isinstance(manifest, dict) or not all(
        isinstance(v, dict) and {"bytes", "sha256"} <= set(v) for v in manifest.values()
    ):
        raise HarnessError(
            f"{path} is damaged, so its checkpoints cannot be verified: delete that file "
            "and re-run (the run's checkpoints are then retrained)"
        )
    return manifest


def read_json(path: Path) -> Any:
    """The JSON in ``path``; None when it is missing or unreadable (damaged, partial)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _readable_csv(path: Path) -> bool:
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return False
    return "epoch" in frame.columns and len(frame) > 0


def load_checkpoint_file(path: Path, manifest: dict[str, dict[str, Any]] | None = None) -> dict:
    """Load a checkpoint, checking it against the run's manifest when there is one."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    if manifest is None:
        manifest = read_manifest(path.parent.parent / "manifest.json")
    entry = manifest.get(path.name)
    if entry is not None and (entry["bytes"] != len(data) or entry["sha256"] != sha256_bytes(data)):
        raise HarnessError(
            f"checkpoint {path} is corrupt or partial (it does not match its manifest); "
            "delete it and re-run to retrain from the previous checkpoint"
        )
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for damaged files
        raise HarnessError(
            f"checkpoint {path} is corrupt or partial ({type(error).__name__}); "
            "delete it and re-run to retrain from the previous checkpoint"
        ) from None
    if not isinstance(state, dict) or "model" not in state or "settings" not in state:
        raise HarnessError(f"{path} is not a harness supernet checkpoint")
    return state
