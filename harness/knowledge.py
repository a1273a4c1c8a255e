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
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import stable_hash
from .errors import AdbenchError
from .paths import cache_dir
from .store import atomic_write_json

log = logging.getLogger("adbench.knowledge")

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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def checked_answers(provider: KnowledgeProvider, object_name: str, answers: object) -> list[str]:
    """The provider's answer as a list of non-empty sentences; a one-line error for anything else
    (a bare string would be split into characters, bytes into numbers, None into "None")."""
    where = f"knowledge provider '{provider.name}' on '{object_name}'"
    if isinstance(answers, str | bytes) or not isinstance(answers, Sequence):
        raise AdbenchError(f"{where}: returned {type(answers).__name__}, expected a list of sentences")
    bad = [a for a in answers if not isinstance(a, str)]
    if bad:
        raise AdbenchError(f"{where}: returned a {type(bad[0]).__name__} item, expected sentences (str)")
    out = [a.strip() for a in answers if a.strip()]
    if not out:
        raise AdbenchError(f"{where}: gave no description")
    return out


def _cached(provider: KnowledgeProvider, object_name: str, path: Path) -> list[str] | None:
    """The cached answer at ``path``; None (and the file removed, so it is rebuilt) when corrupt."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return checked_answers(provider, object_name, data["descriptions"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AdbenchError) as exc:
        log.warning("knowledge cache %s is corrupt (%s); asking the provider again", path, _first_line(exc))
        path.unlink(missing_ok=True)
        return None


def describe(provider: KnowledgeProvider, object_name: str) -> list[str]:
    """The provider's descriptions of ``object_name``, read from / written to its disk cache when ``cached``.

    A provider that raises or answers anything but sentences is a one-line AdbenchError (the runner
    fails that method's jobs with it); a corrupt cache file is rebuilt.
    """
    path = None
    if provider.cached:
        key = stable_hash({"object": object_name, "version": provider.version})
        path = cache_dir("knowledge", provider.name) / f"{key}.json"
        found = _cached(provider, object_name, path)
        if found is not None:
            return found
    try:
        raw = provider.describe(object_name)
    except Exception as exc:  # a plugin's client (LLM, network): any failure is that provider's
        raise AdbenchError(
            f"knowledge provider '{provider.name}' failed on '{object_name}': {_first_line(exc)}"
        ) from exc
    answers = checked_answers(provider, object_name, raw)
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
