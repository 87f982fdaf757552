"""The result store: a directory tree where every file is written atomically.

Layout under the store root::

    runs/<run_key>/settings.json          what produced the run (readable)
    runs/<run_key>/checkpoints/epoch_NNNN.pt
    runs/<run_key>/manifest.json          completed checkpoints with size and sha256
    runs/<run_key>/metrics.csv            one row per trained epoch

A file appears under its final name only once it is complete (temp file in the same
directory, fsync, ``os.replace``), so a process killed at any moment leaves either
the old state or the new one. A completed checkpoint is never rewritten.

A killed writer leaves its temp file behind. Temp names carry the writer's process id and
host (``.<name>.<pid>@<host>.<random>.tmp``, the host qualified by its PID namespace on
Linux), so :func:`remove_orphan_temp_files` can tell an orphan from a file another live
process is still writing: a temp file of this host whose writer has exited is removed at
once; one of another host (a shared file system), or named before names carried a writer,
only once nobody has written to it for :data:`ORPHAN_AGE_SECONDS`.

Parquet tables are written with page checksums and the schema they were written with
(column names and Arrow types, under the key ``harness.schema``); :func:`read_parquet_table`
verifies both, since a bit flip in a footer can rename a column without failing any read.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from harness.errors import HarnessError

log = logging.getLogger(__name__)

_CHECKPOINT_NAME = re.compile(r"^epoch_(\d{4,})\.pt$")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@functools.cache
def _writer_host() -> str:
    """This host, qualified by the PID namespace where there is one: two containers may
    share a host name (and a store) without seeing each other's process ids."""
    host = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname())[:40] or "host"
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return host
    return f"{host}-{re.sub(r'[^0-9]', '', namespace)}"


_WRITER = re.compile(r"\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]+)\.[^.]+\.tmp$")
# A temp file nobody has written to for this long is an orphan even when its writer cannot
# be checked (another host, or a name from before names carried the writer): writes take
# seconds, and every write moves the file's modification time.
ORPHAN_AGE_SECONDS = 3600.0


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.{os.getpid()}@{_writer_host()}."
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
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


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def is_orphan_temp_file(path: Path, now: float | None = None) -> bool:
    """Whether ``path`` (a ``.*.tmp`` file) was left by a writer that can no longer finish."""
    match = _WRITER.search(path.name)
    if match and match["host"] == _writer_host():
        return not _alive(int(match["pid"]))
    try:
        idle = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:  # its writer renamed it meanwhile
        return False
    return idle > ORPHAN_AGE_SECONDS


def remove_orphan_temp_files(directory: Path, recursive: bool = True) -> int:
    """Remove the temp files that killed writers left under ``directory``; the number removed.
    A temp file a live process is writing is kept (see the module's docstring)."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    found = directory.rglob(".*.tmp") if recursive else directory.glob(".*.tmp")
    removed = 0
    for path in found:
        if path.is_file() and is_orphan_temp_file(path):
            path.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.info("removed %d temporary file(s) left by killed processes under %s", removed,
                 directory)  # fmt: skip
    return removed


SCHEMA_KEY = b"harness.schema"


def _fields(schema: pa.Schema) -> list[list[str]]:
    return [[field.name, str(field.type)] for field in schema]


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as a Parquet file with page checksums and its schema recorded in it."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = _fields(table.schema)
    record = {"columns": fields, "sha256": sha256_bytes(json.dumps(fields).encode())}
    metadata = {**(table.schema.metadata or {}), SCHEMA_KEY: json.dumps(record).encode()}
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), buffer, write_page_checksum=True)
    return buffer.getvalue()


def read_parquet_table(path: Path, fix: str) -> pd.DataFrame:
    """A table :func:`parquet_bytes` wrote, its page checksums and schema verified; one
    sentence naming the file and ``fix`` (what to do) when it is damaged. Tables without a
    recorded schema (older harness versions, other writers) get the checksums only."""
    path = Path(path)
    try:
        data = path.read_bytes()  # one read: the file may be replaced meanwhile
        schema = pq.read_schema(io.BytesIO(data))
        frame = pd.read_parquet(io.BytesIO(data), page_checksum_verification=True)
    except Exception as error:  # pyarrow raises several types for damaged files
        raise HarnessError(
            f"{path} is not a readable Parquet table ({type(error).__name__}): {fix}"
        ) from None
    problem = _schema_problem(schema, list(frame.columns))
    if problem:
        raise HarnessError(f"{path} is damaged ({problem}): {fix}")
    return frame


def _schema_problem(schema: pa.Schema, columns: list[Any]) -> str | None:
    raw = (schema.metadata or {}).get(SCHEMA_KEY)
    if raw is None:
        unreadable = [c for c in columns if not (isinstance(c, str) and c.isprintable())]
        return f"column name {unreadable[0]!r}" if unreadable else None
    try:
        record = json.loads(raw)
        recorded = record["columns"]
        intact = record["sha256"] == sha256_bytes(json.dumps(recorded).encode())
    except (ValueError, TypeError, KeyError):
        intact = False
    if not intact:
        return "its recorded schema is unreadable"
    actual = _fields(schema)
    if actual == recorded and columns == [name for name, _ in recorded]:
        return None
    for (name, kind), (was, was_kind) in zip(actual, recorded, strict=False):
        if name != was:
            return f"column {was!r} reads as {name!r}"
        if kind != was_kind:
            return f"column {was!r} reads as type {kind}, written as {was_kind}"
    if len(actual) != len(recorded):
        return f"{len(actual)} columns where {len(recorded)} were written"
    return f"its columns read as {columns!r}"


class CheckpointStore:
    """Checkpoints ``checkpoints/epoch_NNNN.pt`` under ``directory``, each counted only once
    ``manifest.json`` lists it with its size and sha256 (so a damaged file is never loaded
    as if it were intact). Supernet runs and retrains both keep their checkpoints here."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.checkpoint_dir = self.dir / "checkpoints"
        self.manifest_path = self.dir / "manifest.json"

    def manifest(self) -> dict[str, dict[str, Any]]:
        return read_manifest(self.manifest_path)

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

    def read_checkpoint(self, epoch: int) -> dict[str, Any]:
        """The state saved at ``epoch``, verified against the manifest (DamagedCheckpoint
        when it does not match or cannot be read)."""
        return read_verified_checkpoint(self.checkpoint_path(epoch), self.manifest())

    def keep_only(self, epochs: list[int]) -> None:
        """Forget every checkpoint but ``epochs`` (manifest first, so that a kill in between
        leaves unlisted files, which never count), then delete their files."""
        kept = {self.checkpoint_path(e).name for e in epochs}
        listed = self.manifest()
        if set(listed) - kept:
            atomic_write_json(self.manifest_path, {k: v for k, v in listed.items() if k in kept})
        for path in self.checkpoint_dir.glob("epoch_*.pt"):
            if path.name not in kept:
                path.unlink(missing_ok=True)

    def forget_all(self) -> None:
        """Drop every checkpoint, the manifest too (also when it is damaged)."""
        atomic_write_json(self.manifest_path, {})
        self.keep_only([])


class RunStore(CheckpointStore):
    """Files of one supernet run (one config and seed)."""

    def __init__(self, root: Path, key: str) -> None:
        super().__init__(Path(root) / "runs" / key)
        self.key = key
        self.settings_path = self.dir / "settings.json"
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

    def load_checkpoint(self, epoch: int) -> dict[str, Any]:
        return load_checkpoint_file(self.checkpoint_path(epoch), self.manifest())

    def remove_stale_temp_files(self) -> None:
        # Another process may be repairing settings.json here without the training lock:
        # only orphans go (remove_orphan_temp_files keeps a live writer's file).
        for directory in (self.dir, self.checkpoint_dir):
            remove_orphan_temp_files(directory, recursive=False)


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


class DamagedCheckpoint(HarnessError):
    """A checkpoint that does not match its manifest or cannot be unpickled; the message
    says what is wrong, the caller what to do."""


def read_verified_checkpoint(path: Path, manifest: dict[str, dict[str, Any]]) -> Any:
    """The object in ``path``, checked against ``manifest`` when it lists the file."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    entry = manifest.get(path.name)
    if entry is not None and (entry["bytes"] != len(data) or entry["sha256"] != sha256_bytes(data)):
        raise DamagedCheckpoint(
            f"checkpoint {path} is corrupt or partial (it does not match its manifest)"
        )
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for damaged files
        raise DamagedCheckpoint(
            f"checkpoint {path} is corrupt or partial ({type(error).__name__})"
        ) from None


def load_checkpoint_file(path: Path, manifest: dict[str, dict[str, Any]] | None = None) -> dict:
    """Load a supernet checkpoint, checking it against the run's manifest when there is one."""
    path = Path(path)
    if manifest is None and path.is_file():
        manifest = read_manifest(path.parent.parent / "manifest.json")
    try:
        state = read_verified_checkpoint(path, manifest or {})
    except DamagedCheckpoint as error:
        raise HarnessError(
            f"{error}; delete it and re-run to retrain from the previous checkpoint"
        ) from None
    if not isinstance(state, dict) or "model" not in state or "settings" not in state:
        raise HarnessError(f"{path} is not a harness supernet checkpoint")
    return state
