"""``adbench run --dry-run``: what a run (or suite) would do, and what is missing, without running it.

One row per method and dataset: the planned and already finished jobs, whether the dataset root is
there and whether every backbone's weights are found. Every problem is collected instead of stopping
at the first, so a paper suite can be checked on a machine that has only part of the data.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import AdbenchError, WeightsNotFoundError
from .jobs import backbone_identities, method_configs
from .planner import Planner
from .registry import Registry
from .store import ResultsStore


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def dataset_status(planner: Planner, name: str) -> str:
    """``ok (N categories)`` or the one-line reason the dataset cannot be read."""
    try:
        return f"ok ({len(planner.dataset(name).categories())} categories)"
    except AdbenchError as exc:
        return f"missing: {_first_line(exc)}"


def weights_status(planner: Planner, method: str) -> str:
    """``ok``/``random`` per backbone, or the one-line message saying which file to put where."""
    cls = planner.registry.method(method)
    seen: dict[str, str] = {}
    configs = [
        c
        for name, override_sets in planner.method_grid()
        if name == method
        for sets in override_sets
        for c in method_configs(cls, planner.spec, sets)
    ]
    for config in configs:
        try:
            for name, identity in backbone_identities(cls, config).items():
                seen[name] = "random weights" if identity == "random" else "ok"
        except WeightsNotFoundError as exc:
            return f"missing: {_first_line(exc)}"
    return ", ".join(f"{n}: {v}" for n, v in seen.items()) or "no backbone"


def shard_keys(planner: Planner) -> set[str] | None:
    """The keys of ``--shard I/N``'s jobs in the full plan (None without ``--shard``): a shard is a
    share of the whole plan's groups, so it cannot be told from one method or dataset."""
    if not planner.spec.shard:
        return None
    from .executors import parse_shard
    from .planner import group_jobs, shard_groups

    return {
        s.key for g in shard_groups(group_jobs(planner.plan()), parse_shard(planner.spec.shard)) for s in g
    }


def dry_run(spec: Any, store: ResultsStore, registry: Registry) -> list[dict[str, Any]]:
    """Rows of the dry-run table for a RunSpec; nothing is computed or written. One planner serves
    every row, so each dataset is scanned once and each method's weights resolved once."""
    from .backbones.weights import trust_torchscript
    from .runner import resolve_device

    trust_torchscript(spec.trust_weights)
    planner = Planner(spec, registry, resolve_device(spec.device))
    planner.check_plugins()
    methods = list(dict.fromkeys(m for m, _ in planner.method_grid()))
    weights = {m: weights_status(planner, m) for m in methods}
    datasets = {d: dataset_status(planner, d) for d in spec.datasets}
    try:
        in_shard = shard_keys(planner)
    except AdbenchError:  # a missing root or weights: the rows below say which
        in_shard = None
    rows = []
    for method in methods:
        for dataset in spec.datasets:
            row = {
                "method": method,
                "dataset": dataset,
                "jobs": 0,
                "done": 0,
                "dataset root": datasets[dataset],
                "weights": weights[method],
            }
            if datasets[dataset].startswith("ok") and not weights[method].startswith("missing"):
                # plan this method on this dataset only (the demo grid keeps its own settings)
                methods_of_row = [] if spec.demo and not spec.methods else [method]
                # the row's method keeps only its own --set values (the others' would name a method
                # this one-method plan does not run)
                own = (
                    {s: f for s, f in spec.overrides.items() if s == method}
                    if methods_of_row
                    else spec.overrides
                )
                planner.spec = dataclasses.replace(
                    spec, methods=methods_of_row, datasets=[dataset], overrides=own
                )
                try:
                    keys = [j.key for j in planner.plan() if j.method == method]
                    keys = [k for k in keys if in_shard is None or k in in_shard]
                    row["jobs"] = len(keys)
                    row["done"] = sum(store.has(k) for k in keys)
                except AdbenchError as exc:
                    row["dataset root"] = f"plan error: {_first_line(exc)}"
                finally:
                    planner.spec = spec
            rows.append(row)
    return rows


def has_missing(rows: list[dict[str, Any]]) -> bool:
    """Whether any row lacks its dataset root or weights (``--dry-run`` then exits 1)."""
    return any(
        not str(r["dataset root"]).startswith("ok") or str(r["weights"]).startswith("missing") for r in rows
    )


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A left-aligned text table (the messages are long; right-aligned text is hard to read)."""
    if not rows:
        return "nothing planned"
    head = list(rows[0])
    cells = [[str(r[h]) for h in head] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)
