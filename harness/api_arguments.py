"""Type checks at :mod:`harness.api`'s boundary.

The command line's parser hands the API text and numbers of the right kind; a caller in
Python can pass anything, and a wrong kind used to surface as a TypeError deep inside
(``run(seeds=None)``, ``run(cluster=42)``). Every public function checks its arguments
here first, so a wrong kind is one :class:`HarnessError` sentence naming the argument and
what it takes, before any work starts. What the values mean (a known preset, a device this
machine has) is checked further in, as for the command line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from harness.config import SOURCES
from harness.errors import HarnessError
from harness.literals import parse_literal
from spaces.base import SearchSpace
from spaces.darts.genotype import Genotype, as_genotype


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _path(value: Any) -> bool:
    return isinstance(value, str | os.PathLike)


def _optional(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or test(value)


def _collection(value: Any) -> bool:
    """A list-like of items (text is one item, not a list of characters; a mapping's keys
    and bytes' numbers are not what anyone means)."""
    return isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping)


def _texts(value: Any) -> bool:
    # A list, not a generator: reading the items to check them would use it up.
    listed = isinstance(value, Sequence | AbstractSet) and not isinstance(value, str | bytes)
    return _text(value) or listed and all(_text(v) for v in value)


def _seeds(value: Any) -> bool:
    return _text(value) or _whole(value) or _collection(value)


def _settings(value: Any) -> bool:
    if isinstance(value, Mapping):
        return all(_text(k) for k in value)
    return value is None or _texts(value)


def _one_genotype(value: Any) -> bool:
    # Any namedtuple with a Genotype's fields: ours, or the one in DARTS's genotypes.py.
    return _text(value) or getattr(value, "_fields", None) == Genotype._fields


def _genotypes(value: Any) -> bool:
    return value is None or _one_genotype(value) or _collection(value)


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda value: _text(value) and value in choices


def _epoch(value: Any) -> bool:
    return _one_of("final", "all")(value) or _whole(value) and value >= 0


SEEDS = "a range like '0-4', a list like '0,2,5', one whole number or a list of whole numbers"
SETTINGS = "a mapping like {'train.lr': 0.05}, a list like ['train.lr=0.05'], or None"
FOLDER = "a path (str or pathlib.Path) or None"
# name -> (test, what it takes); ("function", name) where one function takes another kind.
RULES: dict[str | tuple[str, str], tuple[Callable[[Any], bool], str]] = {
    "methods": (lambda v: _text(v) or _collection(v),
                "a spec like 'magnitude,ostr[taylor]' or a list of specs, SelectionMethod "
                "classes and instances"),
    ("retrain", "methods"): (_optional(_texts),
                             "method names like 'magnitude,ostr' (or a list of them) or None"),
    "seeds": (_seeds, SEEDS),
    "preset": (_text, "a preset name such as 'proxy' or 'smoke'"),
    ("report", "preset"): (_optional(_text), "a preset name or None"),
    "algorithm": (_text, "an algorithm name such as 'darts'"),
    ("run", "algorithm"): (_texts, "an algorithm name, several comma-separated, or a list"),
    ("report", "algorithm"): (_optional(_text), "an algorithm name or None"),
    "space": (_optional(_text), "a space name such as 'nb201' or None"),
    "epochs": (_optional(_whole), "a whole number or None"),
    "checkpoint_every": (_optional(_whole), "a whole number or None"),
    "settings": (_settings, SETTINGS),
    "device": (_text, "'cpu', 'cuda' or 'cuda:N'"),
    "data": (_optional(_path), FOLDER),
    "data_source": (_one_of(*SOURCES), " or ".join(map(repr, SOURCES))),
    "download": (lambda v: isinstance(v, bool), "True or False"),
    "progress": (lambda v: isinstance(v, bool), "True or False"),
    "cache": (_optional(_path), FOLDER),
    "results": (_optional(_path), FOLDER),
    "ground_truth": (_optional(_path), "a CSV path (str or pathlib.Path) or None"),
    "out": (_path, "a folder path (str or pathlib.Path)"),
    "jobs": (_whole, "a whole number of worker processes"),
    "threads": (_optional(_whole), "a whole number of threads per job or None"),
    "cluster": (_optional(_text), "a scheduler address like 'tcp://host:8786', 'local' or None"),
    "notes": (_optional(callable), "a function taking one str, or None"),
    "checkpoints": (lambda v: _path(v) or _collection(v),
                    "a checkpoint path (str or pathlib.Path) or a list of them"),
    "genotypes": (_genotypes, "a genotype as DARTS prints it, a Genotype, a list of these, or "
                              "None (the store's)"),
    "protocol": (_text, "a protocol name such as 'proxy' or 'smoke'"),
    "epoch": (_epoch, "'final', 'all' or an epoch number"),
    "dataset": (_text, "'cifar10', 'cifar100' or 'svhn'"),
    "config": (_optional(_text), "a config key or None"),
    "search_space": (_optional(lambda v: isinstance(v, SearchSpace)), "a SearchSpace or None"),
}  # fmt: skip


def check_arguments(function: str, arguments: Mapping[str, Any]) -> None:
    """One sentence for the first argument of ``api.<function>`` of a kind it does not
    take; ``arguments`` is the function's ``locals()`` on entry (its parameters)."""
    for name, value in arguments.items():
        test, takes = RULES.get((function, name)) or RULES[name]
        if not test(value):
            raise HarnessError(f"api.{function}: {name} takes {takes}, not {show(value)}")


def genotype_texts(genotypes: Any) -> list[str] | None:
    """``retrain``'s genotypes as text, each one checked: a Genotype (this harness's or the
    DARTS code's namedtuple) is printed as DARTS prints it."""
    if genotypes is None:
        return None
    items = [genotypes] if _one_genotype(genotypes) else list(genotypes)
    return [g if _text(g) else repr(as_genotype(g)) for g in items]


def checkpoint_paths(checkpoints: Any) -> list[Any]:
    """``select``'s checkpoints as a list of paths, or one sentence on an item that is none."""
    items = [checkpoints] if _path(checkpoints) else list(checkpoints)
    for item in items:
        if not _path(item):
            raise HarnessError(f"api.select: a checkpoint is a path (str or pathlib.Path), not "
                               f"{show(item)}")  # fmt: skip
    return items


def show(value: Any) -> str:
    """A short repr for a sentence (a huge int's repr raises: its type then)."""
    try:
        shown = repr(value)
    except ValueError:
        return f"a {type(value).__name__}"
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return shown if _text(value) or value is None else f"{shown} ({type(value).__name__})"


_RANGE = re.compile(r"^([0-9]+)-([0-9]+)$")
MAX_SEED = 2**63 - 1  # torch.manual_seed takes a signed 64-bit integer
MAX_SEEDS = 1000
Seeds = str | int | Iterable[int]
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


def setting_items(settings: Settings) -> list[tuple[str, Any]]:
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
