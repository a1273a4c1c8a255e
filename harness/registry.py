"""Plugin discovery: load the ``adbench`` entry-point group and resolve names to what plugins provide.

The registry only discovers and looks up; it never builds models or reads data. Setting
``ADBENCH_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points (tests then register modules by hand),
as ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` does for pytest.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
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
    "knowledge_provider": "adbench_knowledge_providers",
    "tracker": "adbench_trackers",
}
#: Hooks the runner calls to tell plugins about a run (trackers); not indexed by name.
LIFECYCLE = ("adbench_run_started", "adbench_job_finished", "adbench_run_finished")


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, except that a module attribute holding a module is never inspected for hooks.

    Plugins bind torch lazily (``lazy_loader.load``); pluggy's ``isinstance`` checks on every module
    attribute would read the proxy's ``__class__`` and import torch while merely listing plugins.
    ``isinstance(x, ModuleType)`` is decided from ``type(x)`` alone, so it does not load the proxy.
    """

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        if isinstance(inspect.getattr_static(plugin, name, None), ModuleType):
            return None
        return super().parse_hookimpl_opts(plugin, name)


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
        self.pm = _PluginManager("adbench")
        self.pm.add_hookspecs(hookspecs)
        if autoload is None:
            autoload = not os.environ.get("ADBENCH_DISABLE_PLUGIN_AUTOLOAD")
        #: Plugins that failed to load or to answer a hook: name -> one-line reason (reported, not fatal).
        self.broken: dict[str, str] = {}
        #: Lifecycle-hook failures (a tracker that could not log): one line -> how often; a run reports them.
        self.observer_failures: dict[str, int] = {}
        self._dists: dict[int, str] = {}
        self._index: dict[str, dict[str, Entry]] | None = None
        if autoload:
            self._load_entry_points()
        for module in filter(None, os.environ.get("ADBENCH_PLUGINS", "").split(",")):
            # extra plugin modules by import path, as PYTEST_PLUGINS; inherited by worker processes
            try:
                plugin = importlib.import_module(module.strip())
            except ImportError as exc:
                raise AdbenchError(f"ADBENCH_PLUGINS: cannot import '{module.strip()}': {exc}") from None
            self.register(plugin)
        for plugin in plugins:
            self.register(plugin)

    def _load_entry_points(self) -> None:
        """Load each ``adbench`` entry point on its own, so one broken package cannot break every command.

        Hand-written instead of ``pm.load_setuptools_entrypoints``, which stops at the first failing import.
        """
        from importlib.metadata import distributions

        seen: set[str] = set()
        for dist in distributions():
            label = f"{dist.metadata['name']} {dist.version}"
            for ep in dist.entry_points:
                if ep.group != ENTRY_POINT_GROUP or ep.name in seen:
                    continue
                seen.add(ep.name)
                if self.pm.get_plugin(ep.name) is not None or self.pm.is_blocked(ep.name):
                    continue
                try:
                    plugin = ep.load()
                    self.pm.register(plugin, name=ep.name)
                except (Exception, SystemExit) as exc:
                    self.broken[ep.name] = f"{label}: {type(exc).__name__}: {_first_line(exc)}"
                    continue
                self._dists[id(plugin)] = label

    def register(self, plugin: ModuleType | object, name: str | None = None) -> None:
        """Register a plugin module or object by hand (tests, notebooks)."""
        if self.pm.is_registered(plugin):
            return
        self.pm.register(plugin, name=name)
        self._index = None

    def _providers(self) -> dict[int, str]:
        """Map each registered plugin object to the distribution (or module) that provides it."""
        providers = dict(self._dists)
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
                try:
                    provided = list(impl.function() or [])
                except (Exception, SystemExit) as exc:
                    self.broken[impl.plugin_name] = (
                        f"{provider}: {hook_name} raised {type(exc).__name__}: {_first_line(exc)}"
                    )
                    continue
                for obj in provided:
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

    def broken_lines(self) -> list[str]:
        """One line per plugin that could not be loaded (``adbench list`` and ``run`` print them)."""
        _ = self.index  # a hook that raises is found while indexing
        return [f"plugin '{name}' skipped ({why})" for name, why in sorted(self.broken.items())]

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

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook on every plugin, each on its own: one that raises is reported as a
        warning (naming the plugin) and the others still run; a tracker never stops a run."""
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            try:
                impl.function(**{name: kwargs[name] for name in impl.argnames})
            except Exception as exc:  # noqa: BLE001 - an observer must not break the run
                line = f"plugin {impl.plugin_name} failed in {hook_name}: {_first_line(exc)}"
                self.observer_failures[line] = self.observer_failures.get(line, 0) + 1
                logging.getLogger("adbench.registry").warning(
                    "plugin %s failed in %s: %s: %s",
                    impl.plugin_name,
                    hook_name,
                    type(exc).__name__,
                    exc,
                    exc_info=exc,
                )

    def method(self, name: str) -> Any:
        return self.get("method", name)

    def dataset(self, name: str) -> Any:
        return self.get("dataset", name)

    def backbone(self, name: str) -> Any:
        return self.get("backbone", name)

    def knowledge_providers(self) -> list[Any]:
        """Every registered knowledge provider, in registration order (plugged-in ones first)."""
        return [e.obj for e in self.index["knowledge_provider"].values()]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


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
