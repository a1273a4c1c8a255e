"""adbench: a benchmarking harness for zero-shot anomaly detection (distribution name ``adbench-zsad``)."""

import pluggy

__version__ = "0.1.0"

#: Results compatibility number, part of every job and fit key instead of the version: bump it only
#: when a change would change stored numbers (a metric or protocol fix), so a release that changes
#: nothing numeric keeps every record valid. The adbench version is still written into each record.
RESULTS_COMPAT = 1

#: Marker for plugin hook implementations, as ``pytest.hookimpl`` / ``datasette.hookimpl``.
hookimpl = pluggy.HookimplMarker("adbench")

__all__ = ["__version__", "hookimpl"]
