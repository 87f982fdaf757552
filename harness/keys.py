"""Store keys: what a stored run or experiment is filed under, and the format versions that
make a change of numerics a change of key.

A key is a hash of everything that determines the stored result (``hash_settings``): a
supernet run's full settings, seed and data fingerprint (``run_key``), an experiment across
seeds (``config_key``). Settings themselves are plain data (:mod:`harness.config`); this
module sits above the algorithm registry because a plugin algorithm's source (its package
and version) is part of its runs' keys.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from harness.config import ExperimentConfig
from harness.split_file import split_file_digest
from methods.supernet import algorithm_source

# 2: the compute section (cell implementation, memory format, autocast, compile) joined the
# key, and supernets default to the fused cell in channels-last format, whose float results
# differ in the last bits from the op-by-op cell that made format-1 stores.
STORE_FORMAT_VERSION = 2
# Compiled supernets compute what their graph says, so a change to the graph is a change
# of numerics for compiled runs only: 2 = the forward as one graph (revision 1 broke it at
# every pool). In the keys of compiled runs, so their old stores are never reused;
# uncompiled runs keep their keys.
COMPILED_GRAPH_REVISION = 2
# The DARTS space's fused cell (opt-in before issue 28 made it the default) computes
# differently since: 2 = dilated convolutions on parity phases, depthwise ones in
# channels-last; 3 = their gradients handed back in channels-last, phases at stride 2
# only; 4 = pools in channels-last, depthwise convolutions on small maps as per-channel
# matrices. The same float results to tolerance, not bit for bit, so in the keys of fused
# DARTS-space runs: stores made by an earlier fused cell are not reused. Op-by-op DARTS
# runs and every NB201 run keep their keys.
DARTS_FUSED_CELL_REVISION = 4


def hash_settings(settings: dict[str, Any]) -> str:
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def run_key(config: ExperimentConfig, seed: int, data_fingerprint: str) -> str:
    """Store key of one supernet run: a hash of everything that determines its checkpoints
    (reads the split file and asks the algorithm registry; a resolved experiment has both
    at hand and calls :func:`run_key_of`)."""
    digest = split_file_digest(config.data.split_file) if config.data.split_file else None
    return run_key_of(config, seed, data_fingerprint, digest, algorithm_source(config.algorithm))


def run_key_of(
    config: ExperimentConfig,
    seed: int,
    data_fingerprint: str,
    split_digest: str | None,
    source: str | None,
) -> str:
    """The run key from resolved parts: the split file's content hash (None: no split file)
    and a plugin algorithm's source (None: built-in, so built-in keys never changed).

    The preset name is left out (it is only a label for a set of values); the data
    fingerprint is in, so the JPEG folder and the official files never share a key.
    """
    identity = config.to_dict()
    identity.pop("preset")
    if split_digest is not None:
        identity["data"]["split_file"] = "sha256:" + split_digest
    if source:
        identity["algorithm_source"] = source
    identity.update(seed=seed, data_fingerprint=data_fingerprint, format=STORE_FORMAT_VERSION)
    _mark_revisions(identity)
    return hash_settings(identity)


def config_key(config_dict: dict[str, Any], data_fingerprint: str) -> str:
    """Key of an experiment across seeds: what the report groups runs by."""
    identity = dict(config_dict)
    identity.pop("preset", None)
    identity.update(data_fingerprint=data_fingerprint, format=STORE_FORMAT_VERSION)
    _mark_revisions(identity)
    return hash_settings(identity)


def _mark_revisions(identity: dict[str, Any]) -> None:
    """The revisions of numerics that only some runs' keys carry."""
    compute = identity.get("compute", {})
    if compute.get("compile"):
        identity["compiled_graph"] = COMPILED_GRAPH_REVISION
    space = str(identity.get("space", {}).get("name", ""))
    if compute.get("cell") == "fused" and space.split("-")[0] == "darts":
        identity["darts_fused_cell"] = DARTS_FUSED_CELL_REVISION
