"""Pieces a test needs from outside the repository: the offline data beside the checkout and
the official benchmark APIs. Locally a missing piece skips the test (the summary names it);
where they must exist (CI sets ``HARNESS_REQUIRE_ALL=1``) it fails the test instead."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

STRICT = os.environ.get("HARNESS_REQUIRE_ALL") == "1"


def missing(reason: str) -> None:
    if STRICT:
        pytest.fail(f"{reason}; required here (HARNESS_REQUIRE_ALL=1)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def module(name: str, install: str = "pip install -e '.[test]'") -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"{name} is not installed ({install}, the README's set-up line)")
        raise  # unreachable: missing() raises
