"""How many published numbers of each seed paper adbench can produce, and how many a results store has.

A published row (``published_results.csv``) is producible when some registered method declares its
name (``Method.published_name`` under its default config or one finite-choice field changed, or a
``published_names()`` classmethod), a dataset plugin (or every dataset of the paper's average row)
exists, and the method supports a protocol matching the row's setting. It is reproduced when the
store holds a finished record with that published name, dataset(s), protocol and metric. Nothing
here names a method or dataset: the registry and the shipped data decide, so third-party plugins count.
"""

from __future__ import annotations

import dataclasses
import typing
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from adbench.protocol_catalog import PROTOCOLS

from .published import METRIC_KEYS, load_papers, load_published, paper_info

ABLATION = " ablation "


def _choices(tp: Any) -> tuple[Any, ...]:
    """The values of a finite-choice field type (bool, Literal), else none."""
    if tp is bool:
        return (False, True)
    if typing.get_origin(tp) is typing.Literal:
        return typing.get_args(tp)
    return ()


def published_names(method_cls: type) -> set[str]:
    """Every published name a method answers to: its ``published_names()`` when it declares one, else
    ``published_name`` of the default config and of each config with one bool/Literal field changed."""
    declared = getattr(method_cls, "published_names", None)
    if callable(declared):
        return {n for n in declared() if n}
    base = method_cls.config_cls()
    names = {method_cls.published_name(base)}
    for name, tp in typing.get_type_hints(method_cls.config_cls).items():
        for value in _choices(tp):
            try:
                names.add(method_cls.published_name(dataclasses.replace(base, **{name: value})))
            except Exception:  # noqa: BLE001 - a combination the config refuses publishes nothing
                continue
    return {n for n in names if n}


def protocol_of(setting: str) -> str | None:
    """The adbench protocol a CSV ``setting`` describes (``zero-shot ablation`` -> ``zero_shot``)."""
    for spec in PROTOCOLS.values():
        label = spec.published_label
        if setting.startswith(label) or setting.startswith(label.rstrip(" (") + " ablation"):
            return spec.name
    return None


def base_method(name: str) -> str:
    """The method of a CSV name: ``'DMA-SAP ablation A. baseline'`` -> ``'DMA-SAP'``."""
    return name.split(ABLATION, 1)[0]


@dataclass
class PaperCoverage:
    """Counts for one paper and, per reason, how many of its numbers are not producible."""

    paper: str
    published: int = 0
    producible: int = 0
    reproduced: int = 0
    missing: Counter = field(default_factory=Counter)

    def percent(self, count: int) -> float:
        return 100.0 * count / self.published if self.published else 0.0


def _datasets_of(row: pd.Series) -> tuple[str, ...]:
    """The datasets a row needs: its own, or every dataset its paper's average covers."""
    averages = paper_info(row["paper"]).averages
    return averages.get(row["dataset"], (row["dataset"],))


def gap(row: pd.Series, methods: dict[str, list[type]], datasets: set[str]) -> str | None:
    """Why adbench cannot produce a published row (one line), or None when it can."""
    name = base_method(row["method"])
    if name not in methods:
        return f"no method plugin publishes '{name}'"
    absent = [d for d in _datasets_of(row) if d not in datasets]
    if absent:
        return f"no dataset plugin '{absent[0]}'"
    protocol = protocol_of(row["setting"])
    if protocol is None or not any(protocol in cls.supports for cls in methods[name]):
        return f"no protocol for '{row['setting']}' in the methods publishing '{name}'"
    return None


def _done(store: pd.DataFrame) -> set[tuple[str, str, str, str]]:
    """(published name, dataset, protocol, metric key) a store has at least one number for, from
    finished records on real weights."""
    if store.empty or "published_name" not in store:
        return set()
    ok = store[(store["status"] == "ok") & store["published_name"].notna()]
    if "random_weights" in ok:  # a run on random backbones reproduces nothing
        ok = ok[~ok["random_weights"].fillna(False).astype(bool)]
    out = set()
    for key in METRIC_KEYS:
        if key in ok:
            hit = ok[ok[key].notna()]
            out |= set(
                zip(hit["published_name"], hit["dataset"], hit["protocol"], [key] * len(hit), strict=True)
            )
    return out


def _metric_key(row: pd.Series) -> str | None:
    return next((k for k, v in METRIC_KEYS.items() if v == (row["level"], row["metric"])), None)


def coverage(
    registry: Any, store: pd.DataFrame | None = None, paper: str | None = None
) -> list[PaperCoverage]:
    """Per paper of the shipped data (in ``papers.json`` order): published, producible, reproduced."""
    methods: dict[str, list[type]] = {}
    for entry in registry.entries("method"):
        for name in published_names(entry.obj):
            methods.setdefault(name, []).append(entry.obj)
    datasets = set(registry.names("dataset"))
    done = _done(store if store is not None else pd.DataFrame())
    table = load_published()
    out = []
    for name in load_papers():
        if paper and paper.lower() not in name.lower():
            continue
        cov = PaperCoverage(name)
        for _, row in table[table["paper"] == name].iterrows():
            cov.published += 1
            why = gap(row, methods, datasets)
            if why:
                cov.missing[why] += 1
                continue
            cov.producible += 1
            key = (base_method(row["method"]), protocol_of(row["setting"]), _metric_key(row))
            if all((key[0], d, key[1], key[2]) in done for d in _datasets_of(row)):
                cov.reproduced += 1
        out.append(cov)
    return out


def format_coverage(rows: list[PaperCoverage], with_store: bool) -> str:
    """A plain-text table, then the missing numbers per paper and reason."""
    head = f"{'paper':<34} {'published':>9} {'producible':>17}" + (
        f" {'reproduced':>17}" if with_store else ""
    )
    lines = [head]
    for c in rows:
        line = f"{c.paper:<34} {c.published:>9} {c.producible:>9} ({c.percent(c.producible):5.1f} %)"
        if with_store:
            line += f" {c.reproduced:>9} ({c.percent(c.reproduced):5.1f} %)"
        lines.append(line)
    total = PaperCoverage(
        "all", *(sum(getattr(c, f) for c in rows) for f in ("published", "producible", "reproduced"))
    )
    lines.append(
        f"{'all':<34} {total.published:>9} {total.producible:>9} ({total.percent(total.producible):5.1f} %)"
        + (f" {total.reproduced:>9} ({total.percent(total.reproduced):5.1f} %)" if with_store else "")
    )
    for c in rows:
        for why, n in sorted(c.missing.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"missing: {c.paper}: {n} numbers: {why}")
    return "\n".join(lines)
