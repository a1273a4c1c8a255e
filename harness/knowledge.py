"""Knowledge providers: anomaly descriptions of an object, for knowledge-driven prompt learning.

A provider maps an object name ("printed circuit board") to a few sentences describing what an
anomalous image of it looks like (KAnoCLIP's LLM knowledge base). Plugins contribute providers
through the ``adbench_knowledge_providers`` hook: the built-in one reads the knowledge base shipped
with the package; a user plugs a live LLM / VQA client the same way. Answers of providers marked
``cached`` are kept on disk under ``$ADBENCH_HOME/knowledge/<provider>/`` (a live model is slow and
not deterministic), and :func:`knowledge_hash` of the answers goes into job and fit keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .config import stable_hash
from .errors import AdbenchError
from .paths import cache_dir
from .store import atomic_write_json

#: ``knowledge=auto`` uses the first plugged (non-built-in) provider, else the built-in one.
AUTO = "auto"


@dataclass(frozen=True)
class KnowledgeProvider:
    """A named source of anomaly descriptions: ``describe(object_name)`` returns sentences.

    ``builtin`` marks the shipped fallback (``auto`` prefers any other provider). ``version`` is part
    of the cache file name: bump it when the provider's model or prompt changes.
    """

    name: str
    describe: Callable[[str], Sequence[str]]
    version: str = "1"
    description: str = ""
    cached: bool = True
    builtin: bool = False


def choose_provider(providers: Sequence[KnowledgeProvider], wanted: str = AUTO) -> KnowledgeProvider:
    """The provider named ``wanted``; for ``auto`` the first plugged-in provider, else the built-in one."""
    if not providers:
        raise AdbenchError("no knowledge provider is registered (is the kanoclip plugin installed?)")
    if wanted != AUTO:
        for p in providers:
            if p.name == wanted:
                return p
        known = ", ".join(p.name for p in providers)
        raise AdbenchError(f"knowledge provider '{wanted}' is not registered; known: {known}, or auto")
    plugged = [p for p in providers if not p.builtin]
    return (plugged or list(providers))[0]


def describe(provider: KnowledgeProvider, object_name: str) -> list[str]:
    """The provider's descriptions of ``object_name``, read from / written to its disk cache when ``cached``."""
    path = None
    if provider.cached:
        key = stable_hash({"object": object_name, "version": provider.version})
        path = cache_dir("knowledge", provider.name) / f"{key}.json"
        if path.is_file():
            return list(json.loads(path.read_text())["descriptions"])
    answers = [str(s).strip() for s in provider.describe(object_name) if str(s).strip()]
    if not answers:
        raise AdbenchError(f"knowledge provider '{provider.name}' gave no description of '{object_name}'")
    if path is not None:
        atomic_write_json(
            path,
            {
                "provider": provider.name,
                "version": provider.version,
                "object": object_name,
                "descriptions": answers,
            },
        )
    return answers


def knowledge_hash(provider: KnowledgeProvider, object_names: Sequence[str]) -> str:
    """Hash of the provider's name and answers for these objects (goes into job and fit keys)."""
    names = sorted(set(object_names))
    return stable_hash({"provider": provider.name, "answers": {n: describe(provider, n) for n in names}})
