"""Shared test set-up: an isolated ADBENCH_HOME per test session, so tests never touch the user's cache."""

from __future__ import annotations

import os
import tempfile

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # One cache for the whole session (the synthetic set is generated once), separate from ~/.cache.
    # ADBENCH_TEST_HOME reuses a cache across sessions when iterating locally.
    home = os.environ.get("ADBENCH_TEST_HOME") or tempfile.mkdtemp(prefix="adbench-home-")
    os.environ["ADBENCH_HOME"] = home
    os.environ["ADBENCH_WEIGHTS"] = os.path.join(home, "weights")
