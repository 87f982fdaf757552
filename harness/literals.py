"""Values typed as text (``--set train.lr=0.05``, ``ostr[bn_mode=eval]``) read as Python
values: the one reading shared by the command line, the API's settings and method specs."""

from __future__ import annotations

from typing import Any


def parse_literal(raw: str) -> Any:
    """A command-line value as bool, None, int, float or (otherwise) str."""
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw
