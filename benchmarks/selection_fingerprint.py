"""What every selection method picks on one checkpoint, written so two code versions compare.

For a refactor that must not change selections (issue 13: spaces as a protocol), run this
before and after on the same checkpoint and compare the two JSON files: arch, edge order
and every score (as exact float64 values, and a sha256 over their bytes).

    python benchmarks/selection_fingerprint.py CHECKPOINT --out before.json
    python benchmarks/selection_fingerprint.py CHECKPOINT --out after.json --compare before.json

The checkpoint is copied into a temporary store, so nothing stored beside it is read or
written; methods use the defaults of the preset that trained it (as `harness select`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from harness.ground_truth import load_ground_truth
from harness.locations import resolve_data_location
from harness.presets import SELECTION_DEFAULTS
from harness.selecting import select_at_checkpoint
from harness.store import load_checkpoint_file
from methods.selection import parse_method_list

METHODS = (
    "magnitude,magnitude[no-none],darts-pt,darts-pt[fix-alpha],ostr,ostr[taylor],"
    "ostr[greedy],ostr[no-none],opp-loss,random,oracle"
)


def fingerprint(checkpoint: Path, methods: str, data: str | None, threads: int) -> dict:
    torch.set_num_threads(threads)
    state = load_checkpoint_file(checkpoint)
    preset = state["settings"]["config"]["preset"]
    parsed = parse_method_list(methods, SELECTION_DEFAULTS.get(preset, {}))
    truth = load_ground_truth(None)
    arrays = resolve_data_location(data).load()
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "runs" / checkpoint.parents[1].name / "checkpoints"
        copy.mkdir(parents=True)
        shutil.copy2(checkpoint, copy / checkpoint.name)
        began = time.perf_counter()
        stored = select_at_checkpoint(copy / checkpoint.name, parsed, arrays, truth)
        seconds = time.perf_counter() - began
    out = {}
    for item in stored:
        s = item.selection
        scores = np.asarray(s.scores, dtype=np.float64)
        out[s.method] = {
            "arch": s.arch,
            "edge_order": s.edge_order,
            "scores": s.scores,
            "scores_sha256": hashlib.sha256(scores.tobytes()).hexdigest(),
        }
    return {
        "checkpoint": str(checkpoint),
        "threads": threads,
        "torch": torch.__version__,
        "seconds": round(seconds, 1),
        "methods": out,
    }


def compare(before: dict, after: dict) -> list[str]:
    differences = []
    for method, old in before["methods"].items():
        new = after["methods"].get(method)
        if new is None:
            differences.append(f"{method}: missing after")
            continue
        for field in ("arch", "edge_order", "scores_sha256"):
            if old[field] != new[field]:
                differences.append(f"{method}: {field} differs ({old[field]} vs {new[field]})")
    return differences


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--data", help="CIFAR-10 image folder (default: the offline data)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--compare", type=Path, help="an earlier output to compare with")
    args = parser.parse_args()
    result = fingerprint(args.checkpoint.resolve(), args.methods, args.data, args.threads)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"checkpoint {args.checkpoint}, {args.threads} thread(s), torch {torch.__version__}, "
          f"{result['seconds']} s")  # fmt: skip
    for method, entry in result["methods"].items():
        print(f"  {method:22s} {entry['arch']}  scores {entry['scores_sha256'][:16]}")
    if args.compare:
        differences = compare(json.loads(args.compare.read_text()), result)
        print("identical to", args.compare if not differences else "")
        for line in differences:
            print("  DIFFERS:", line)
        return 1 if differences else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
