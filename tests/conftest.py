"""Shared fixtures: an isolated ADBENCH_HOME per test session, so tests never touch the user's cache."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # One cache for the whole session (the synthetic set is generated once), separate from ~/.cache.
    if not os.environ.get("ADBENCH_TEST_KEEP_HOME"):
        base = config._tmp_path_factory.mktemp("adbench-home", numbered=True)  # type: ignore[attr-defined]
        os.environ["ADBENCH_HOME"] = str(base)
    os.environ.setdefault("ADBENCH_WEIGHTS", os.path.join(os.environ["ADBENCH_HOME"], "weights"))
