"""Typed configs as dataclasses, ``--set scope.field=value`` overrides, grid expansion and stable hashes.

Configs are data (as in timm): a method declares a dataclass whose defaults are the paper's values.
Overrides are strings from the command line, coerced to the field's declared type. A value with
several alternatives (``a,b`` for a scalar field, ``a|b`` for any field) expands the job grid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
import types
import typing
from typing import Any

from .errors import AdbenchError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_set_options(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, list[str]]]:
    """Parse ``scope.field=value`` strings into ``{scope: {field: [raw alternatives]}}``.

    Alternatives are split on ``|`` here; splitting on ``,`` waits for the field type (a tuple
    field uses commas for its elements).
    """
    out: dict[str, dict[str, list[str]]] = {}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise AdbenchError(f"--set {item!r}: expected scope.field=value, e.g. patchead.image_size=448")
        key, value = item.split("=", 1)
        scope, field = key.split(".", 1)
        out.setdefault(scope.strip(), {})[field.strip()] = [v.strip() for v in value.split("|")]
    return out


def check_set_scopes(
    overrides: dict[str, dict[str, list[str]]], selected: list[str], known: list[str]
) -> None:
    """Every ``--set`` scope must name a method of the run: a typo or an unselected method would be ignored."""
    import difflib

    for scope, fields in overrides.items():
        where = f"--set {scope}.{next(iter(fields), '')}"
        if scope not in known:
            close = difflib.get_close_matches(scope, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; methods: {', '.join(known)}"
            raise AdbenchError(f"{where}: unknown method '{scope}'{hint}")
        if scope not in selected:
            raise AdbenchError(f"{where}: method '{scope}' is not in --methods ({', '.join(selected)})")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _is_sequence(tp: Any) -> bool:
    tp, _ = _unwrap_optional(tp)
    return typing.get_origin(tp) in (tuple, list)


def coerce(raw: str, tp: Any, where: str) -> Any:
    """Convert one raw string to the declared field type; raise a one-line error naming ``where``."""
    tp, optional = _unwrap_optional(tp)
    if optional and raw.lower() in {"none", "null", ""}:
        return None
    origin = typing.get_origin(tp)
    try:
        if origin in (tuple, list):
            args = typing.get_args(tp)
            elem = args[0] if args else str
            items = tuple(coerce(p.strip(), elem, where) for p in raw.split(",") if p.strip())
            return items if origin is tuple else list(items)
        if origin is typing.Literal:
            allowed = typing.get_args(tp)
            if raw not in allowed:
                raise ValueError(f"expected one of {', '.join(map(str, allowed))}")
            return raw
        if tp is bool:
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ValueError("expected true or false")
        if tp in (int, float, str):
            return tp(raw)
    except ValueError as exc:
        raise AdbenchError(f"--set {where}={raw!r}: {exc}") from None
    return raw


def split_alternatives(raw_values: list[str], tp: Any) -> list[str]:
    """Scalar fields also accept ``a,b`` as alternatives; sequence fields only ``a|b``."""
    if _is_sequence(tp):
        return raw_values
    return [p.strip() for v in raw_values for p in v.split(",")]


def expand(cls: type, overrides: dict[str, list[str]], scope: str) -> list[Any]:
    """Build every config of the grid that ``overrides`` spans, in a stable order."""
    types_ = _field_types(cls)
    axes: list[list[tuple[str, Any]]] = []
    for field, raws in overrides.items():
        if field not in types_:
            import difflib

            close = difflib.get_close_matches(field, list(types_), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; fields: {', '.join(types_)}"
            raise AdbenchError(f"--set {scope}.{field}: '{scope}' has no setting '{field}'{hint}")
        tp = types_[field]
        values = [coerce(r, tp, f"{scope}.{field}") for r in split_alternatives(raws, tp)]
        axes.append([(field, v) for v in values])
    configs = []
    for combo in itertools.product(*axes) if axes else [()]:
        config = cls(**dict(combo))
        validate(config, scope)
        configs.append(config)
    return configs


_BOUNDS = {
    "ge": (lambda v, b: v >= b, ">="),
    "gt": (lambda v, b: v > b, ">"),
    "le": (lambda v, b: v <= b, "<="),
    "lt": (lambda v, b: v < b, "<"),
}


def setting(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    pattern: str | None = None,
    doc: str = "",
) -> Any:
    """A config field with its declared range (pydantic-style ``ge/gt/le/lt``, or a regular
    expression ``pattern`` a text value must match in full) and a one-line doc.

    The range is checked by :func:`validate` before any work, for scalars and for every element of a
    tuple field. ``Literal`` types already restrict choices; use them for enumerations.
    """
    bounds = {k: v for k, v in {"ge": ge, "gt": gt, "le": le, "lt": lt}.items() if v is not None}
    metadata = {"bounds": bounds, "doc": doc, "pattern": pattern}
    if isinstance(default, list | dict | set):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_bounds(field: dataclasses.Field) -> dict[str, float]:
    """The declared range of one config field (empty when it has none)."""
    return dict(field.metadata.get("bounds", {}))


def describe_bounds(bounds: dict[str, float]) -> str:
    """Human-readable range, e.g. ``>= 1, <= 1``."""
    return ", ".join(f"{_BOUNDS[k][1]} {v:g}" for k, v in bounds.items())


def validate(config: Any, scope: str) -> None:
    """Check every field of ``config`` against its declared range; one-line AdbenchError naming the field."""
    for f in dataclasses.fields(config):
        pattern, value = f.metadata.get("pattern"), getattr(config, f.name)
        if pattern and not (isinstance(value, str) and re.fullmatch(pattern, value)):
            raise AdbenchError(f"--set {scope}.{f.name}={value!r}: must match {pattern}")
        bounds = field_bounds(f)
        if not bounds:
            continue
        if isinstance(value, tuple | list) and not value:  # a bounded list of values needs one at least
            raise AdbenchError(f"--set {scope}.{f.name}: empty; give at least one value")
        items = value if isinstance(value, tuple | list) else (value,)
        for item in items:
            if item is None or isinstance(item, bool) or not isinstance(item, int | float):
                continue
            if not all(_BOUNDS[k][0](item, b) for k, b in bounds.items()):
                raise AdbenchError(f"--set {scope}.{f.name}={value!r}: must be {describe_bounds(bounds)}")


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def stable_hash(obj: Any, length: int = 16) -> str:
    """SHA-256 of the canonical JSON of ``obj``: equal inputs give equal keys across runs and machines."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
