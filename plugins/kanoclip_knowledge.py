"""The knowledge base shipped with adbench for KAnoCLIP (``data/kanoclip_knowledge_v1.json``), as the
built-in knowledge provider.

The paper asks GPT-3.5 for n = 5 anomaly descriptions per class; no model can be called here, so
the descriptions were written for this project, one entry per ``Dataset.object_name`` of every
registered dataset, plus generic sentences for objects it does not know (a ``folder`` dataset).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from adbench import hookimpl
from adbench.knowledge import KnowledgeProvider

KNOWLEDGE_FILE = "kanoclip_knowledge_v1.json"


@cache
def shipped_knowledge() -> dict[str, Any]:
    """The parsed knowledge-base file: ``version``, ``classes`` (object -> sentences), ``generic``."""
    return json.loads(resources.files("adbench.plugins").joinpath("data", KNOWLEDGE_FILE).read_text())


def shipped_descriptions(object_name: str) -> list[str]:
    """The shipped sentences for ``object_name``, else the generic ones filled in with it."""
    kb = shipped_knowledge()
    known = kb["classes"].get(object_name.lower())
    if known:
        return list(known)
    return [s.replace("{object}", object_name) for s in kb["generic"]]


SHIPPED = KnowledgeProvider(
    name="shipped",
    describe=shipped_descriptions,
    version=shipped_knowledge()["version"],
    description=f"knowledge base shipped with adbench ({KNOWLEDGE_FILE})",
    cached=False,
    builtin=True,
)


@hookimpl
def adbench_knowledge_providers() -> list[KnowledgeProvider]:
    """The shipped knowledge base (the fallback when no live LLM / VQA provider is plugged in)."""
    return [SHIPPED]
