"""adbench: a benchmarking harness for zero-shot anomaly detection (distribution name ``adbench-zsad``).

The Python API (``adbench.run``, ``adbench.load_results``, ``adbench.report``) is imported on first
use, so ``import adbench`` (and ``adbench --help``) stays light: no torch, no pandas.
"""

from typing import Any

import pluggy

__version__ = "0.1.0"

#: Results compatibility number, part of every job and fit key instead of the version: bump it only
#: when a change would change stored numbers (a metric or protocol fix), so a release that changes
#: nothing numeric keeps every record valid. The adbench version is still written into each record.
RESULTS_COMPAT = 1

#: Marker for plugin hook implementations, as ``pytest.hookimpl`` / ``datasette.hookimpl``.
hookimpl = pluggy.HookimplMarker("adbench")

__all__ = ["__version__", "hookimpl", "load_results", "report", "run"]

_API = {"run", "load_results", "report"}


def __getattr__(name: str) -> Any:
    """Lazy access to the Python API (PEP 562)."""
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'adbench' has no attribute {name!r}")
