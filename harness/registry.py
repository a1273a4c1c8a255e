"""Plugin discovery: load the ``adbench`` entry-point group and resolve names to what plugins provide.

The registry only discovers and looks up; it never builds models or reads data. Setting
``ADBENCH_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points (tests then register modules by hand),
as ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` does for pytest.
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import AdbenchError

ENTRY_POINT_GROUP = "adbench"
KINDS = {
    "method": "adbench_methods",
    "dataset": "adbench_datasets",
    "backbone": "adbench_backbones",
    "report_format": "adbench_report_formats",
}


@dataclass(frozen=True)
class Entry:
    """One named thing a plugin provides, and which package provides it."""

    kind: str
    name: str
    obj: Any
    provider: str


class Registry:
    """Wraps a pluggy PluginManager and indexes what each hook returns by name."""

    def __init__(self, autoload: bool | None = None, plugins: list[ModuleType | object] = ()) -> None:
        self.pm = pluggy.PluginManager("adbench")
        self.pm.add_hookspecs(hookspecs)
        if autoload is None:
            autoload = not os.environ.get("ADBENCH_DISABLE_PLUGIN_AUTOLOAD")
        if autoload:
            self.pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        for module in filter(None, os.environ.get("ADBENCH_PLUGINS", "").split(",")):
            # extra plugin modules by import path, as PYTEST_PLUGINS; inherited by worker processes
            try:
                plugin = importlib.import_module(module.strip())
            except ImportError as exc:
                raise AdbenchError(f"ADBENCH_PLUGINS: cannot import '{module.strip()}': {exc}") from None
            self.register(plugin)
        for plugin in plugins:
            self.register(plugin)
        self._index: dict[str, dict[str, Entry]] | None = None

    def register(self, plugin: ModuleType | object, name: str | None = None) -> None:
        """Register a plugin module or object by hand (tests, notebooks)."""
        if self.pm.is_registered(plugin):
            return
        self.pm.register(plugin, name=name)
        self._index = None

    def _providers(self) -> dict[int, str]:
        """Map each registered plugin object to the distribution (or module) that provides it."""
        providers = {id(p): f"{d.project_name} {d.version}" for p, d in self.pm.list_plugin_distinfo()}
        for plugin in self.pm.get_plugins():
            providers.setdefault(id(plugin), getattr(plugin, "__name__", type(plugin).__name__))
        return providers

    def _build_index(self) -> dict[str, dict[str, Entry]]:
        self.pm.check_pending()  # an implementation with no matching spec is an error
        providers = self._providers()
        index: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        for kind, hook_name in KINDS.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                provider = providers.get(id(impl.plugin), impl.plugin_name)
                for obj in impl.function() or []:
                    name = obj.name
                    if name in index[kind]:
                        other = index[kind][name].provider
                        raise AdbenchError(
                            f"{kind} '{name}' is registered twice: by {other} and by {provider}; "
                            "uninstall one of them"
                        )
                    index[kind][name] = Entry(kind, name, obj, provider)
        return index

    @property
    def index(self) -> dict[str, dict[str, Entry]]:
        if self._index is None:
            self._index = self._build_index()
        return self._index

    def entries(self, kind: str) -> list[Entry]:
        """All entries of one kind, sorted by name."""
        return [self.index[kind][n] for n in sorted(self.index[kind])]

    def names(self, kind: str) -> list[str]:
        return sorted(self.index[kind])

    def get(self, kind: str, name: str) -> Any:
        """Resolve a name, suggesting the nearest one on a typo."""
        table = self.index[kind]
        if name in table:
            return table[name].obj
        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(sorted(table)) or 'none'}"
        raise AdbenchError(f"unknown {kind.replace('_', ' ')} '{name}'{hint}")

    def method(self, name: str) -> Any:
        return self.get("method", name)

    def dataset(self, name: str) -> Any:
        return self.get("dataset", name)

    def backbone(self, name: str) -> Any:
        return self.get("backbone", name)


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry built from installed entry points (created on first use)."""
    global _default
    if _default is None:
        _default = Registry()
    return _default


def set_registry(registry: Registry | None) -> None:
    """Replace the process-wide registry (tests use this to inject hand-registered plugins)."""
    global _default
    _default = registry
