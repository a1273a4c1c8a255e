"""Suite files: a whole ``adbench run`` as TOML, validated against the typed configs before any work.

A suite names the run options, the dataset roots and, per method, its ``--set`` values::

    [run]                         # any `adbench run` option by its long name (snake_case)
    datasets = ["mvtec", "visa"]
    protocol = "zero_shot"

    [roots]
    mvtec = "/data/mvtec_ad"

    [methods.dma_sap]             # a method to run; keys are its config fields
    variant = ["A", "B", "C", "D"]    # a list expands the grid (a list of lists for tuple fields)

    [methods.patchead]            # no keys: the paper's defaults

Command-line options override the file; ``adbench run --dump-config`` prints the resolved suite, so any
run can be saved and rerun. The Python API (:func:`adbench.run`) goes through the same path.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import _field_types, _is_sequence, expand
from .errors import AdbenchError
from .run_options import check_list, check_roots

#: Top-level tables of a suite file (``[sets.X]``: settings of a method the suite does not name, such
#: as one of the demo grid's; they apply when that method runs, without adding it to the run).
SECTIONS = ("run", "roots", "methods", "sets")
#: What runs when neither the suite nor the command line names a method (and it is not the demo).
DEFAULT_METHODS = ("patchead",)
#: ``[run]`` keys that are not RunSpec fields but options of the command (handled by the caller).
COMMAND_KEYS = ("results",)


def _run_fields() -> dict[str, Any]:
    from .jobs import RunSpec

    return {f.name: f for f in dataclasses.fields(RunSpec)}


#: RunSpec fields a suite sets through its own tables, not ``[run]``.
_TABLE_FIELDS = ("methods", "overrides", "roots")


def _unknown(where: str, key: str, known: list[str]) -> AdbenchError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(sorted(known))}"
    return AdbenchError(f"{where}: unknown key '{key}'{hint}")


def load_suite(path: str | Path) -> dict[str, Any]:
    """Read and shape-check a suite file; one-line errors name the file and key."""
    path = Path(path)
    try:
        suite = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # a BOM (Windows editors) is fine
    except FileNotFoundError:
        raise AdbenchError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AdbenchError(f"--config {path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise AdbenchError(f"{path}: not valid TOML ({exc})") from None
    check_shape(suite, str(path))
    # relative roots are relative to the suite file, as in the user config (not to the working folder)
    roots = suite.get("roots", {})
    for name, root in roots.items():
        root_path = Path(root).expanduser()
        roots[name] = str(root_path if root_path.is_absolute() else path.parent / root_path)
    return suite


def check_shape(suite: Mapping[str, Any], where: str) -> None:
    """Tables and ``[run]`` keys known, each of the right kind (typed values are checked later)."""
    for section, value in suite.items():
        if section not in SECTIONS:
            raise _unknown(where, section, list(SECTIONS))
        if not isinstance(value, Mapping):
            raise AdbenchError(f"{where}: [{section}] must be a table")
    known = [k for k in _run_fields() if k not in _TABLE_FIELDS] + list(COMMAND_KEYS)
    for key in suite.get("run", {}):
        if key not in known:
            raise _unknown(f"{where}: [run]", key, known)
    for name, value in suite.get("roots", {}).items():
        if not isinstance(value, str):
            raise AdbenchError(f"{where}: [roots] {name} must be a path string")
    for section in ("methods", "sets"):
        for method, fields in suite.get(section, {}).items():
            if not isinstance(fields, Mapping):
                raise AdbenchError(f"{where}: [{section}] {method} must be a table of config fields")


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` wins key by key: ``[run]`` and ``[roots]`` per key; ``[methods]`` replaces the method
    list when given, and keeps the file's settings of the methods it still names."""
    out: dict[str, Any] = {s: dict(base.get(s, {})) for s in SECTIONS}
    out["run"].update(override.get("run", {}))
    out["roots"].update(override.get("roots", {}))
    for name, fields in override.get("sets", {}).items():
        out["sets"][name] = {**out["sets"].get(name, {}), **fields}
    if "methods" in override:
        methods = {}
        for name, fields in override["methods"].items():
            methods[name] = {**out["methods"].get(name, {}), **fields}
        out["methods"] = methods
    return out


def _raw(value: Any) -> str:
    """A typed TOML value as the raw string ``--set`` would give (``config.coerce`` parses it back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_raw(v) for v in value)
    return "none" if value is None else str(value)


def method_overrides(method_cls: type, fields: Mapping[str, Any], where: str) -> dict[str, list[str]]:
    """A ``[methods.X]`` table as ``--set`` alternatives: a list expands the grid, except that a tuple
    field takes a list as its value (and a list of lists as alternatives)."""
    types_ = _field_types(method_cls.config_cls)
    out: dict[str, list[str]] = {}
    for field, value in fields.items():
        if field not in types_:
            raise _unknown(f"{where}: [methods.{method_cls.name}]", field, list(types_))
        seq = _is_sequence(types_[field])
        if isinstance(value, list) and (not seq or (value and isinstance(value[0], list))):
            out[field] = [_raw(v) for v in value]
        else:
            out[field] = [_raw(value)]
    return out


def table_sets(sets: Mapping[str, Any], registry: Any, where: str) -> dict[str, dict[str, list[str]]]:
    """A suite's ``[sets.X]`` tables as raw ``--set`` values."""
    out = {}
    for name, fields in sets.items():
        if not isinstance(fields, Mapping):
            raise AdbenchError(f"{where}: [sets] {name} must be a table of config fields")
        out[name] = method_overrides(registry.method(name), fields, where)
    return out


def merge_sets(base: Mapping[str, Mapping[str, list[str]]], override: Mapping[str, Mapping[str, list[str]]]):
    """Raw ``--set`` values per method, ``override`` winning field by field."""
    out = {name: dict(fields) for name, fields in base.items()}
    for name, fields in override.items():
        out[name] = {**out.get(name, {}), **fields}
    return out


def _coerce_run_value(key: str, value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        tp, origin = args[0], typing.get_origin(args[0])
    if origin in (tuple, list):
        check_list(key, value, where)
        items = list(value) if isinstance(value, list | tuple) else [value]
        elem = (typing.get_args(tp) or (str,))[0]
        if not all(isinstance(v, elem) and (elem is bool or not isinstance(v, bool)) for v in items):
            raise AdbenchError(f"{where}: [run] {key} = {value!r}: expected a list of {elem.__name__}")
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise AdbenchError(f"{where}: [run] {key}: expected a table")
        return dict(value)
    expected = tp if isinstance(tp, type) else None
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is not None and (
        not isinstance(value, expected) or (expected is int and isinstance(value, bool))
    ):
        raise AdbenchError(f"{where}: [run] {key} = {value!r}: expected {expected.__name__}")
    return value


def build_spec(
    suite: Mapping[str, Any],
    *,
    raw_sets: Mapping[str, Mapping[str, list[str]]] | None = None,
    where: str = "suite",
) -> Any:
    """The :class:`~adbench.jobs.RunSpec` a suite describes, every method config validated (one line
    naming ``where`` and the key on error). ``raw_sets`` are command-line ``--set`` values; they win."""
    from .jobs import RunSpec
    from .registry import get_registry

    check_shape(suite, where)
    hints = typing.get_type_hints(RunSpec)
    kwargs: dict[str, Any] = {}
    for key, value in suite.get("run", {}).items():
        if key in COMMAND_KEYS:
            continue
        kwargs[key] = _coerce_run_value(key, value, hints[key], where)
    registry = get_registry()
    check_roots(suite.get("roots", {}), registry.names("dataset"), where)
    raw_sets = merge_sets(table_sets(suite.get("sets", {}), registry, where), raw_sets or {})
    methods = list(suite.get("methods", {}))
    if not methods and not kwargs.get("demo"):
        methods = list(DEFAULT_METHODS)
    overrides: dict[str, dict[str, list[str]]] = {}
    for name in methods:
        cls = registry.method(name)
        fields = method_overrides(cls, suite.get("methods", {}).get(name, {}), where)
        fields.update(raw_sets.get(name, {}))
        overrides[name] = fields
        try:
            expand(cls.config_cls, fields, name)
        except AdbenchError as exc:
            raise AdbenchError(f"{where}: [methods.{name}] {exc}") from None
    # --set scopes of methods the suite does not name (a typo, or a method of the demo grid) are
    # checked where the planned methods are known (Planner.plan, with a did-you-mean)
    overrides.update({scope: dict(v) for scope, v in raw_sets.items() if scope not in overrides})
    spec = RunSpec(methods=methods, roots=dict(suite.get("roots", {})), overrides=overrides, **kwargs)
    return spec


def suite_of(spec: Any, results_dir: str | None = None, registry: Any = None) -> dict[str, Any]:
    """The resolved suite of a RunSpec (typed values), as ``--dump-config`` prints and records store."""
    from .jobs import RunSpec
    from .registry import get_registry

    registry = registry or get_registry()
    default = RunSpec(methods=[])
    run = {
        f.name: getattr(spec, f.name)
        for f in dataclasses.fields(spec)
        if f.name not in _TABLE_FIELDS and getattr(spec, f.name) != getattr(default, f.name)
    }
    if results_dir is not None:
        run["results"] = str(results_dir)
    methods = {name: _method_table(registry.method(name), spec) for name in spec.methods}
    # --set values of methods the run does not name (the demo grid's): kept, or a rerun differs
    sets = {
        name: _method_table(registry.method(name), spec)
        for name in spec.overrides
        if name not in spec.methods and name in registry.names("method")
    }
    return _plain({"run": run, "roots": dict(spec.roots), "methods": methods, "sets": sets})


def _method_table(cls: type, spec: Any) -> dict[str, Any]:
    """A method's ``--set`` fields as typed suite values (None written as "none": TOML has no null)."""
    from .jobs import method_configs

    configs = method_configs(cls, spec)
    table: dict[str, Any] = {}
    for field in spec.overrides.get(cls.name, {}):
        values: list[Any] = []
        for config in configs:
            v = getattr(config, field)
            v = list(v) if isinstance(v, tuple) else v
            v = "none" if v is None else v
            if v not in values:
                values.append(v)
        table[field] = values[0] if len(values) == 1 else values
    return table


def _plain(obj: Any) -> Any:
    """Tuples to lists and Nones dropped (TOML has no null)."""
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def dump_suite(suite: Mapping[str, Any]) -> str:
    """TOML text of a resolved suite (``adbench run --dump-config``)."""
    import tomli_w

    return tomli_w.dumps({k: v for k, v in suite.items() if v})
