"""Shared test set-up: an isolated ADBENCH_HOME per test session, so tests never touch the user's cache."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_CREATED: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    # One intra-op thread per test process, set before torch is first imported (OpenMP reads it at
    # load): `pytest -n 2` already fills both cores, and the fault-injection tests fork runs, which
    # deadlocks in a child when the parent has started an OpenMP thread pool.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    # One cache for the whole session (the synthetic set is generated once), separate from ~/.cache.
    # ADBENCH_TEST_HOME reuses a cache across sessions when iterating locally.
    home = os.environ.get("ADBENCH_TEST_HOME")
    if not home:
        home = tempfile.mkdtemp(prefix="adbench-home-")
        _CREATED.append(home)
    os.environ["ADBENCH_HOME"] = home
    os.environ["ADBENCH_WEIGHTS"] = os.path.join(home, "weights")
    os.environ.setdefault("ADBENCH_OFFLINE", "1")  # tests never wait on a network probe


def pytest_unconfigure(config: pytest.Config) -> None:
    for home in _CREATED:
        shutil.rmtree(home, ignore_errors=True)
