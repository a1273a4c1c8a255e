"""The typed job record: one schema shared by the runner (writes), the store (reads, frames) and tests.

Every field declares a ``role`` in its metadata, which is all the reports need to know:

- ``cell``: where a number goes in a table (dataset, category, seed; shots is a setting);
- ``setting``: a value that can change the numbers; columns are told apart by the settings that
  differ between records (derived from the records, never from a fixed list);
- ``data``: the identity of the dataset's files (version, variant, fingerprint): it differs between
  datasets by nature, so it tells columns apart only where it differs within one dataset;
- ``result``: what the job measured (metrics, timing, notes, error, parameter counts);
- ``meta``: bookkeeping (key, creation time, device string, platform).

Fields this schema does not know (added by newer code or plugins) are kept in ``extra`` and
written back at the top level, so no field is lost on a read-write round trip; the reports treat
an unknown scalar field as a setting, so two records that differ in it never collapse into one.
Records written before ``schema_version`` existed load as version 0.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from .protocol_catalog import DEFAULT_PROTOCOL

SCHEMA_VERSION = 1

CELL, SETTING, DATA, RESULT, META = "cell", "setting", "data", "result", "meta"
#: Fields without which a stored record cannot be used (its identity and status).
REQUIRED_FIELDS = ("key", "status", "method", "dataset", "category", "protocol")


def _f(role: str, default: Any = None, factory: Any = None) -> Any:
    if factory is not None:
        return field(default_factory=factory, metadata={"role": role})
    return field(default=default, metadata={"role": role})


@dataclass
class Timing:
    """Wall-clock and memory figures of one job (peak memory measured for this job only)."""

    wall_s: float | None = None
    predict_s: float | None = None
    images_per_s: float | None = None
    peak_mem_mb: float | None = None
    peak_mem_kind: str | None = None
    train_s: float | None = None


@dataclass
class JobRecord:
    """One job's record, as stored in ``records/<key>.json``."""

    key: str = _f(META, "")
    method: str = _f(SETTING, "")
    dataset: str = _f(CELL, "")
    category: str = _f(CELL, "")
    protocol: str = _f(SETTING, DEFAULT_PROTOCOL)
    shots: int = _f(SETTING, 0)
    #: Ids of the train images a few-shot job used as references (None for the other protocols).
    reference_ids: list[str] | None = _f(META)
    seed: int = _f(CELL, 0)
    status: str = _f(RESULT, "ok")
    error: str | None = _f(RESULT)
    schema_version: int = _f(META, SCHEMA_VERSION)
    adbench_version: str = _f(META, "")  # provenance, not identity: a release changes no number
    created: str | None = _f(META)
    method_title: str = _f(META, "")  # the paper's display name, from the method plugin
    #: The method's name in the published tables for this config (None: no paper reports it).
    published_name: str | None = _f(META)
    variant: str = _f(META, "")  # short label of non-default config fields (derived from method_config)
    method_config: dict[str, Any] = _f(SETTING, factory=dict)
    method_config_hash: str = _f(META, "")
    trained: bool = _f(SETTING, False)
    dataset_version: str = _f(DATA, "")
    dataset_variant: str = _f(DATA, "")
    dataset_task: str | None = _f(META)
    difficulty: str | None = _f(META)  # the category's declared difficulty (built-in dataset)
    dataset_title: str = _f(META, "")
    dataset_group: str = _f(META, "other")  # industrial / medical / other, from the dataset plugin
    dataset_order: int = _f(META, 1000)  # the papers' row order, from the dataset plugin
    dataset_n_categories: int | None = _f(META)  # categories the dataset has (a run may select fewer)
    #: Content fingerprint of the job's category (and its fit's auxiliary categories): part of the
    #: job key, bookkeeping in tables (it differs per category by nature).
    dataset_fingerprint: str = _f(META, "")
    #: The named evaluation protocol and what it resolved to (``adbench.evaluation``).
    eval_protocol: str | None = _f(SETTING)
    eval_size: int | str | None = _f(SETTING)
    mask_resize: str | None = _f(SETTING)
    smoothing_sigma: float | None = _f(SETTING)
    backbones: dict[str, str] = _f(SETTING, factory=dict)
    weights: dict[str, str] = _f(SETTING, factory=dict)
    random_weights: bool = _f(SETTING, False)
    #: The auxiliary ``dataset/category`` pairs of this job's fit (they differ per target category).
    train_on: list[str] | None = _f(META)
    #: What the run was asked to train on: ``--train-on`` names, or "default" (the paper's policy).
    train_on_policy: str | None = _f(SETTING)
    precision: str | None = _f(SETTING)
    fit: dict[str, Any] | None = _f(META)
    device: str | None = _f(META)
    platform: str | None = _f(META)
    metrics: dict[str, float | None] = _f(RESULT, factory=dict)
    metric_definitions: dict[str, str] = _f(RESULT, factory=dict)
    notes: list[str] = _f(RESULT, factory=list)
    n_test: int | None = _f(RESULT)
    n_anomalous: int | None = _f(RESULT)
    timing: Timing = _f(RESULT, factory=Timing)
    params_total: int | None = _f(RESULT)
    #: Image AUROC of all normals against each anomaly type's images (datasets that declare types).
    image_auroc_by_anomaly_type: dict[str, float | None] = _f(RESULT, factory=dict)
    params_trainable: int | None = _f(RESULT)
    rescored: str | None = _f(META)
    #: Where a number came from (code version, host, command line ...): never tells columns apart.
    provenance: dict[str, Any] = _f(META, factory=dict)
    #: Fields unknown to this schema (newer writers, plugins): kept and written back as they were.
    extra: dict[str, Any] = field(default_factory=dict, metadata={"role": SETTING})

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every field at the top level, ``extra`` fields merged back in."""
        out = dataclasses.asdict(self)
        extra = out.pop("extra")
        return {**extra, **out}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        """Read a stored record of any schema version; unknown fields go to ``extra``."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        extra.update(data.get("extra") or {})
        values.setdefault("schema_version", 0)  # written before the schema had a version
        timing = values.get("timing") or {}
        tfields = {f.name for f in dataclasses.fields(Timing)}
        values["timing"] = Timing(**{k: v for k, v in timing.items() if k in tfields})
        for name in ("method_config", "backbones", "weights", "metrics", "metric_definitions"):
            values[name] = values.get(name) or {}
        values["notes"] = list(values.get("notes") or [])
        return cls(**values, extra=extra)


def role(name: str) -> str:
    """The role of a record field (``config.x`` -> ``method_config``'s); unknown fields count as
    settings (never collapsed)."""
    top = "method_config" if name.startswith("config.") else name.split(".", 1)[0]
    for f in dataclasses.fields(JobRecord):
        if f.name == top:
            return f.metadata["role"]
    return SETTING


def setting_fields() -> list[str]:
    """Schema fields whose values can change a job's numbers (candidates for column identity)."""
    return [
        f.name for f in dataclasses.fields(JobRecord) if f.metadata["role"] == SETTING and f.name != "extra"
    ]


def _hashable(value: Any) -> Any:
    """A frame-friendly, comparable form of a setting value (lists become tuples)."""
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    return value


def flat_settings(record: JobRecord) -> dict[str, Any]:
    """Every setting of a record as ``name -> hashable value``: mappings flattened to ``name.key``
    (``method_config`` as ``config.<field>``), unknown top-level fields under their own name."""
    out: dict[str, Any] = {}
    data = dataclasses.asdict(record)
    data.update(data.pop("extra"))
    for name, value in data.items():
        if role(name) not in (SETTING, DATA):
            continue
        prefix = "config" if name == "method_config" else name
        if isinstance(value, dict):
            for k, v in value.items():
                out[f"{prefix}.{k}"] = _hashable(v)
        else:
            out[name] = _hashable(value)
    return out


def train_on_datasets(train_on: list[str]) -> list[str]:
    """The auxiliary dataset names of a ``train_on`` list (``["visa/candle", ...]`` -> ``["visa"]``):
    the same for every category of a column, whereas the category lists differ per fold."""
    return sorted({str(item).split("/", 1)[0] for item in train_on})


def _fits(value: Any, tp: Any) -> bool:
    """Whether a JSON value matches a schema annotation (ints count as floats; bools are not numbers)."""
    if tp is Any:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return isinstance(value, dict) and all(_fits(v, hints[k]) for k, v in value.items() if k in hints)
    if origin is dict:
        return isinstance(value, dict) and all(_fits(v, args[1]) for v in value.values())
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    return isinstance(value, origin or tp)


@functools.cache
def _schema_types() -> dict[str, Any]:
    return typing.get_type_hints(JobRecord)


def schema_problem(data: dict[str, Any]) -> str | None:
    """None when every known field of a stored record has its schema type; else which one does not.

    Stored records are read by code that trusts these types (tables, trackers, ``adbench results``):
    a record that does not fit is quarantined and recomputed rather than silently dropped.
    """
    for name, tp in _schema_types().items():
        if name in data and data[name] is not None and not _fits(data[name], tp):
            shown = repr(data[name])
            return f"field '{name}' is {shown if len(shown) < 40 else type(data[name]).__name__}, not {_type_name(tp)}"
    return None


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "") if typing.get_origin(tp) else getattr(tp, "__name__", str(tp))
