"""Hook specifications: the only ways a plugin contributes to adbench (pytest/datasette style).

A plugin is any module with functions decorated ``@adbench.hookimpl`` whose names match these
specs. Built-in plugins register through the ``adbench`` entry-point group exactly as third-party
ones do. Each hook returns a list; the registry concatenates the lists of all plugins.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("adbench")


@hookspec
def adbench_methods() -> list[type]:
    """Return method classes (subclasses of :class:`adbench.methods.Method`) this plugin provides."""


@hookspec
def adbench_datasets() -> list[type]:
    """Return dataset classes (subclasses of :class:`adbench.data.Dataset`) this plugin provides."""


@hookspec
def adbench_backbones() -> list[object]:
    """Return :class:`adbench.backbones.BackboneSpec` entries (name, builder, defaults)."""


@hookspec
def adbench_report_formats() -> list[object]:
    """Return :class:`adbench.reports.ReportFormat` entries: a name and a render function."""


@hookspec
def adbench_knowledge_providers() -> list[object]:
    """Return :class:`adbench.knowledge.KnowledgeProvider` entries: a name and ``describe(object_name)``
    giving anomaly descriptions (KAnoCLIP's knowledge base; plug a live LLM / VQA client here)."""


# --- run lifecycle (trackers, notifiers) ------------------------------------------------------------
# Called by the runner on the process that drives the run. Implementations must not change the run:
# they observe it (log to a tracker, send a notification). An exception in one is reported as a warning
# and the run goes on.


@hookspec
def adbench_run_started(spec: object, jobs: list[dict], store_root: str) -> None:
    """A run begins: ``spec`` is the RunSpec, ``jobs`` the planned jobs as plain dicts (the fields of
    ``adbench.jobs.JobSpec.to_dict``: key, method, config, dataset, category, protocol, shots, seed, ...),
    ``store_root`` the results directory."""


@hookspec
def adbench_job_finished(record: dict) -> None:
    """One job's record was written to the store (status ok or failed)."""


@hookspec
def adbench_run_finished(spec: object, summary: object, store_root: str) -> None:
    """The run ended (``summary``: done, skipped and failed counts); the store holds every record."""


@hookspec
def adbench_trackers() -> list[object]:
    """Return tracker entries (:class:`adbench.trackers.Tracker`: ``name``, ``description``) this plugin provides;
    ``adbench run --tracker NAME`` turns one on. The tracker implements the lifecycle hooks above and
    acts only when its name is in ``spec.trackers``."""
