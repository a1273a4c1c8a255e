"""adbench: a benchmarking harness for zero-shot anomaly detection (distribution name ``adbench-zsad``)."""

import pluggy

__version__ = "0.1.0"

#: Marker for plugin hook implementations, as ``pytest.hookimpl`` / ``datasette.hookimpl``.
hookimpl = pluggy.HookimplMarker("adbench")

__all__ = ["__version__", "hookimpl"]
