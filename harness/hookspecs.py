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
