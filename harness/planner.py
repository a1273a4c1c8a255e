"""Planning: expand a :class:`~adbench.jobs.RunSpec` into :class:`~adbench.jobs.JobSpec` records
(method config x dataset x category x protocol x shots x seed), each carrying its data fingerprint
and key, and group them so jobs sharing a model instance run together. Nothing here runs a model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from .config import check_set_scopes, stable_hash
from .data import Category, Dataset
from .demo import demo_grid
from .errors import AdbenchError
from .evaluation import resolve_evaluation
from .jobs import (
    DatasetRef,
    JobSpec,
    RunSpec,
    backbone_identities,
    check_method,
    instance_id,
    job_key,
    job_label,
    job_precision,
    method_configs,
    variant_label,
)
from .methods import Method
from .protocol_catalog import DEFAULT_FEW_SHOT_SEEDS, protocol_spec
from .protocols import check_protocol, two_fold_split
from .registry import Registry


class DataSource:
    """Dataset plugins and loaded categories by name, each scanned once per process."""

    def __init__(self, registry: Registry, roots: dict[str, str]) -> None:
        self.registry = registry
        self.roots = roots
        self._datasets: dict[str, Dataset] = {}
        self._categories: dict[tuple[str, str], Category] = {}

    def dataset(self, name: str, root: str | None = None) -> Dataset:
        if name not in self._datasets:
            cls = self.registry.dataset(name)
            self._datasets[name] = cls(root or self.roots.get(name))
        return self._datasets[name]

    def category(self, dataset: str, name: str) -> Category:
        if (dataset, name) not in self._categories:
            category = self.dataset(dataset).load_category(name)
            category.object_name = self.dataset(dataset).object_name(name)
            self._categories[(dataset, name)] = category
        return self._categories[(dataset, name)]


class Planner:
    """Expands a RunSpec into keyed jobs; caches datasets, categories and fingerprints."""

    def __init__(
        self, spec: RunSpec, registry: Registry, device: Any, data: DataSource | None = None
    ) -> None:
        self.spec = spec
        self.registry = registry
        self.device = device
        self.data = data or DataSource(registry, spec.roots)
        self._fingerprints: dict[tuple[str, str], str] = {}

    def dataset(self, name: str) -> Dataset:
        return self.data.dataset(name)

    def fingerprint(self, dataset: str, category: str) -> str:
        """Content fingerprint of one category (cached): a changed file invalidates only its category."""
        if (dataset, category) not in self._fingerprints:
            ds = self.dataset(dataset)
            try:
                value = ds.category_fingerprint(self.data.category(dataset, category))
            except AdbenchError as exc:  # a broken category: its job is planned and fails with this error
                value = stable_hash(["unreadable", str(exc)])
            self._fingerprints[(dataset, category)] = value
        return self._fingerprints[(dataset, category)]

    def job_fingerprint(self, dataset: str, category: str, train_on: list[tuple[str, str]] | None) -> str:
        """The data a job's numbers depend on: its category, and the auxiliary categories of its fit."""
        parts = [self.fingerprint(dataset, category)]
        parts += [self.fingerprint(d, c) for d, c in train_on or []]
        return parts[0] if len(parts) == 1 else stable_hash(parts)

    def fit_fingerprint(self, train_on: list[tuple[str, str]] | None) -> str | None:
        """The fit cache's data identity: the auxiliary categories' fingerprints and names."""
        if train_on is None:
            return None
        return stable_hash([self.fingerprint(d, c) for d, c in train_on] + train_on)

    def selected_categories(self, dataset: Dataset) -> list[str]:
        """The dataset's categories, filtered by ``--categories`` (a name may belong to any dataset)."""
        names = dataset.categories()
        if not self.spec.categories:
            return names
        if len(self.spec.datasets) == 1:
            for c in self.spec.categories:
                dataset.check_category_name(c)  # one dataset: a typo gets the nearest name
        return [c for c in names if c in self.spec.categories]

    def check_categories_exist(self) -> None:
        """With several datasets, every ``--categories`` name must belong to at least one of them."""
        if not self.spec.categories or len(self.spec.datasets) < 2:
            return
        known = {c for d in self.spec.datasets for c in self.dataset(d).categories()}
        missing = [c for c in self.spec.categories if c not in known]
        if missing:
            raise AdbenchError(
                f"--categories: {', '.join(missing)} not in any of {', '.join(self.spec.datasets)}"
            )

    def auxiliary(
        self, method_cls: type[Method], target: Dataset, category: str
    ) -> list[tuple[str, str]] | None:
        """Which (dataset, category) pairs a trained method is fitted on for this target category."""
        if not method_cls.trained:
            return None
        aux_names = auxiliary_names(target.name, self.spec.train_on, method_cls, target.default_auxiliary())
        pairs: list[tuple[str, str]] = []
        for aux in aux_names:
            if aux == target.name:
                split = two_fold_split(target.categories())
                pairs += [(aux, c) for c in split[category]]
            else:
                pairs += [(aux, c) for c in self.dataset(aux).categories()]
        return pairs

    def check_plugins(self) -> None:
        """Names of plugins the run options refer to (trackers) exist: one line with a did-you-mean."""
        for tracker in self.spec.trackers:
            self.registry.get("tracker", tracker)

    def check_train_on(self) -> None:
        """``--train-on`` names datasets that exist, and a ``TARGET=AUX+AUX`` entry a target of this
        run (else it would silently not apply): one line naming the entry."""
        per_target, plain = split_train_on(self.spec.train_on)
        for target, aux in per_target.items():
            if target not in self.spec.datasets:
                raise AdbenchError(
                    f"--train-on {target}=...: {target!r} is not a dataset of this run ({', '.join(self.spec.datasets)})"
                )
            plain = [*plain, *aux]
        for name in plain:
            self.registry.dataset(name)  # an unknown name: one line with a did-you-mean

    def method_grid(self) -> list[tuple[str, list[dict[str, list[str]] | None]]]:
        """(method, override sets) to expand: the datasets' declared demo grid under ``--demo``
        without ``--methods``, else each named method with its ``--set`` values."""
        if self.spec.demo and not self.spec.methods:
            grid = demo_grid([self.dataset(d).demo for d in self.spec.datasets], self.spec.overrides)
            if not grid:
                raise AdbenchError(
                    f"--demo: none of {', '.join(self.spec.datasets)} declares a demo grid; name --methods"
                )
            return grid
        return [(m, [None]) for m in self.spec.methods]

    def plan(self) -> list[JobSpec]:
        """Expand the grid; fails fast (before any work) on unknown names, bad options, missing weights."""
        self.check_categories_exist()
        self.check_plugins()
        self.check_train_on()
        method_grid = self.method_grid()
        check_set_scopes(self.spec.overrides, [m for m, _ in method_grid], self.registry.names("method"))
        jobs: list[JobSpec] = []
        for mname, override_sets in method_grid:
            method_cls = self.registry.method(mname)
            protocol = self.spec.protocol or method_cls.default_protocol
            check_protocol(method_cls, protocol)
            configs = [c for sets in override_sets for c in method_configs(method_cls, self.spec, sets)]
            for base_config in configs:
                check_method(method_cls, base_config)
                for dname in self.spec.datasets:
                    jobs += self.dataset_jobs(method_cls, base_config, protocol, self.dataset(dname))
        return jobs

    def shots_seeds(self, protocol: str) -> list[tuple[int, int]]:
        """The (shots, seed) grid of a protocol under this run's ``--shots``/``--seeds``."""
        if protocol_spec(protocol).references:
            return [(k, s) for k in self.spec.shots for s in (self.spec.seeds or DEFAULT_FEW_SHOT_SEEDS)]
        return [(0, s) for s in (self.spec.seeds or (0,))]

    def dataset_jobs(
        self, method_cls: type[Method], base_config: Any, protocol: str, dataset: Dataset
    ) -> list[JobSpec]:
        """The jobs of one method config on one dataset: its categories x the (shots, seed) grid."""
        aux = tuple(
            auxiliary_names(dataset.name, self.spec.train_on, method_cls, dataset.default_auxiliary())
        )
        config = method_cls.config_for_dataset(base_config, dataset.name, aux)
        if config is not base_config:
            check_method(method_cls, config)
        weights = backbone_identities(method_cls, config)
        evaluation = resolve_evaluation(
            self.spec.eval_protocol,
            int(config.image_size),
            method_cls.map_sigma(config),
            self.spec.eval_size,
            self.spec.mask_resize,
            method_smooths=method_cls.smooths_own_maps,
        )
        ref = DatasetRef(
            dataset.name, str(dataset.root) if dataset.root else None, dataset.version, dataset.variant
        )
        jobs = []
        for cat in self.selected_categories(dataset):
            train_on = self.auxiliary(method_cls, dataset, cat)
            names = [dataset.object_name(cat)] + [self.dataset(d).object_name(c) for d, c in train_on or []]
            for shots, seed in self.shots_seeds(protocol):
                instance = instance_id(method_cls, config, train_on, seed)
                job = JobSpec(
                    key="",
                    label=job_label(method_cls.name, dataset.name, cat, protocol, shots, seed),
                    method=method_cls.name,
                    config=config,
                    dataset=ref,
                    category=cat,
                    protocol=protocol,
                    shots=shots,
                    seed=seed,
                    evaluation=evaluation,
                    precision=job_precision(self.spec.precision, self.device),
                    variant=variant_label(base_config),
                    weights=weights,
                    train_on=train_on,
                    key_extra=_key_material(method_cls, config, names),
                    fingerprint=self.job_fingerprint(dataset.name, cat, train_on),
                    fit_fingerprint=self.fit_fingerprint(train_on),
                    train_on_policy=",".join(self.spec.train_on or ["default"])
                    if train_on is not None
                    else None,
                    instance=instance,
                    group=instance if method_cls.trained else stable_hash([instance, dataset.name, cat]),
                    gpus=float(method_cls.gpus),
                )
                jobs.append(dataclasses.replace(job, key=job_key(job)))
        return jobs


def group_jobs(specs: Sequence[JobSpec]) -> list[list[JobSpec]]:
    """Jobs with the same ``group`` together, groups in plan order (jobs keep their order inside)."""
    groups: dict[str, list[JobSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.group, []).append(spec)
    return list(groups.values())


def shard_groups(groups: list[list[JobSpec]], shard: tuple[int, int] | None) -> list[list[JobSpec]]:
    """The groups of shard I of N: every N-th group in group-id order (deterministic for one plan)."""
    if shard is None:
        return groups
    index, count = shard
    ordered = sorted(groups, key=lambda g: g[0].group)
    return ordered[index::count]


def _key_material(method_cls: type[Method], config: Any, names: list[str]) -> dict[str, Any]:
    """The method's extra key material; a failure (e.g. a knowledge provider that raised) is kept on
    the job, so that method's jobs fail in one line each and the rest of the plan still runs."""
    try:
        return method_cls.key_material(config, names)
    except AdbenchError as exc:
        return {"key_material_error": str(exc)}


def split_train_on(train_on: Sequence[str] | None) -> tuple[dict[str, list[str]], list[str]]:
    """``--train-on`` entries as ({target: [aux, ...]} for ``TARGET=AUX+AUX``, [plain names]); a
    malformed entry (an empty side or name, a second '=') is one line naming it."""
    per_target: dict[str, list[str]] = {}
    plain: list[str] = []
    for item in train_on or ():
        target, sep, rest = (part.strip() for part in item.partition("="))
        aux = [a.strip() for a in rest.split("+")] if sep else []
        if not target or (sep and (not aux or "" in aux or "=" in rest)):
            raise AdbenchError(f"--train-on {item!r}: expected NAME or TARGET=AUX[+AUX...]")
        if sep:
            per_target[target] = aux
        else:
            plain.append(target)
    return per_target, plain


def auxiliary_names(
    target: str,
    train_on: Sequence[str] | None,
    method_cls: type[Method] | None = None,
    declared: Sequence[str] | None = None,
) -> list[str]:
    """The auxiliary datasets a trained method fits on for ``target``: a ``TARGET=AUX+AUX`` entry of
    ``--train-on`` names them for one target (e.g. MVFA-AD's leave-one-out over the medical sets), its
    plain entries for every other target; without either, a dataset that trains on its own folds keeps
    them, else the method's own pairing (``Method.default_auxiliary``), else the target dataset's
    declared default (``declared``, or the registry's ``Dataset.auxiliary`` when not given)."""
    per_target, plain = split_train_on(train_on)
    if target in per_target:
        return per_target[target]
    if plain:
        return plain
    if declared is None:
        from .registry import get_registry

        declared = get_registry().dataset(target).default_auxiliary()
    if list(declared) == [target]:  # a set that trains on its own folds (built in: no download) keeps them
        return [target]
    own = method_cls.default_auxiliary(target) if method_cls is not None else None
    return list(own or declared)
