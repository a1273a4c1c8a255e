"""Where adbench keeps its files: cache, weights, data roots (all overridable by environment)."""

from __future__ import annotations

import os
from pathlib import Path

#: The results store ``adbench run``/``results``/``report`` and the Python API use unless told otherwise.
DEFAULT_RESULTS_DIR = "adbench-results"


def adbench_home() -> Path:
    """``$ADBENCH_HOME`` or ``~/.cache/adbench``: generated datasets, feature caches, fitted parameters."""
    return Path(os.environ.get("ADBENCH_HOME") or Path.home() / ".cache" / "adbench").expanduser()


def cache_dir(*parts: str) -> Path:
    """A sub-directory of the adbench home, created on demand; each part goes through
    :func:`~adbench.safe_names.safe_name` (provider and method names come from plugins)."""
    from .safe_names import safe_path

    path = safe_path(adbench_home(), *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def weights_dir() -> Path:
    """``$ADBENCH_WEIGHTS`` or ``<home>/weights``: where local backbone weight files are looked for."""
    return Path(os.environ.get("ADBENCH_WEIGHTS") or adbench_home() / "weights").expanduser()


def data_root(dataset: str) -> Path | None:
    """``$ADBENCH_DATA/<dataset>`` when ``$ADBENCH_DATA`` is set, else None."""
    base = os.environ.get("ADBENCH_DATA")
    return Path(base).expanduser() / dataset if base else None
