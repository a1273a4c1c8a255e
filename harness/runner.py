"""Expand the job grid (method config x dataset x category x protocol x shots x seed), run each job,
isolate failures and resume: a job whose record exists is skipped unless forced.

The key of a job hashes everything that can change its numbers: the resolved method config, the
fingerprint of the job's category (and of its fit's auxiliary categories) and the dataset variant, backbone names and weights identities, protocol, shots, seed,
evaluation size, auxiliary training data and the results-compatibility number (not the adbench
version: a release that changes no number keeps every record; see lm-evaluation-harness #2715 for
what goes wrong when the model identity is left out of a cache key).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import platform
import time
import traceback
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from . import RESULTS_COMPAT, __version__, metrics
from .config import check_set_scopes, expand, stable_hash, to_dict
from .data import Category, Dataset, load_images, load_masks
from .demo import demo_grid
from .errors import AdbenchError, WeightsNotFoundError
from .evaluation import Evaluation, resolve_evaluation
from .image_io import image_size
from .measure import parameter_counts, peak_memory_mb, reset_peak_memory
from .methods import Method
from .protocols import (
    DEFAULT_FEW_SHOT_SEEDS,
    DEFAULT_SHOTS,
    auxiliary_names,
    check_protocol,
    make_context,
    predict_category,
    two_fold_split,
)
from .record import JobRecord, Timing
from .registry import Registry, get_registry
from .seeding import seed_everything
from .store import ResultsStore

log = logging.getLogger("adbench.runner")


@dataclass
class RunSpec:
    """Everything ``adbench run`` was asked for, after parsing."""

    methods: list[str]
    datasets: list[str] = field(default_factory=lambda: ["synthetic"])
    roots: dict[str, str] = field(default_factory=dict)
    categories: list[str] | None = None
    protocol: str | None = None
    shots: tuple[int, ...] = DEFAULT_SHOTS
    seeds: tuple[int, ...] | None = None
    overrides: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    device: str = "auto"
    demo: bool = False
    force: bool = False
    retrain: bool = False
    train_on: list[str] | None = None
    eval_protocol: str = "default"
    eval_size: int | str | None = None  # None: the protocol's; "input", "original" or N px
    mask_resize: str | None = None  # None: the protocol's
    precision: str = "bf16"  # bf16 autocast on CUDA, or fp32
    batch_size: int = 16
    trust_weights: bool = False
    progress: bool = True
    #: Trackers to notify (``--tracker``; names from the ``adbench_trackers`` hook, e.g. mlflow).
    trackers: tuple[str, ...] = ()
    #: Where jobs run: serial (this process), local (one process per device/worker) or ray.
    executor: str = "serial"
    workers: int | None = None
    devices: tuple[str, ...] | None = None
    #: ``I/N``: only the I-th of N deterministic shares of the plan (Slurm arrays, several machines).
    shard: str | None = None
    #: Ray cluster address (``auto``, ``HOST:PORT``); None starts a local Ray instance.
    address: str | None = None

    def __post_init__(self) -> None:
        """Check every value before any work, whichever door it came through (CLI, suite file, API):
        one-line errors naming the option."""
        from .evaluation import MASK_RESIZES, eval_protocol, parse_eval_size
        from .executors import EXECUTORS, parse_shard, worker_devices

        eval_protocol(self.eval_protocol)
        self.eval_size = parse_eval_size(self.eval_size)
        checks = [
            ("--shots", all(int(k) >= 1 for k in self.shots) and bool(self.shots), "integers >= 1"),
            ("--seeds", self.seeds is None or all(int(s) >= 0 for s in self.seeds), "integers >= 0"),
            ("--batch-size", int(self.batch_size) >= 1, "an integer >= 1"),
            ("--workers", self.workers is None or int(self.workers) >= 1, "an integer >= 1"),
            ("--executor", self.executor in EXECUTORS, f"one of {', '.join(EXECUTORS)}"),
            ("--precision", self.precision in ("bf16", "fp32"), "bf16 or fp32"),
            (
                "--mask-resize",
                self.mask_resize is None or self.mask_resize in MASK_RESIZES,
                " or ".join(MASK_RESIZES),
            ),
        ]
        for option, ok, expected in checks:
            if not ok:
                name = option[2:].replace("-", "_")
                raise AdbenchError(f"{option} {getattr(self, name)!r}: expected {expected}")
        parse_shard(self.shard)
        worker_devices(self.devices, 1)  # device names checked even before --executor local uses them
        for option, value, executor in (
            ("--workers", self.workers, "local"),
            ("--devices", self.devices, "local"),
            ("--address", self.address, "ray"),
        ):
            if value is not None and self.executor != executor:
                raise AdbenchError(f"{option} applies to --executor {executor} (this run: {self.executor})")


@dataclass
class Job:
    """One unit of work and the identity that keys its record."""

    method_cls: type[Method]
    config: Any
    dataset: Dataset
    category: str
    protocol: str
    shots: int
    seed: int
    evaluation: Evaluation
    weights: dict[str, str]
    train_on: list[tuple[str, str]] | None
    precision: str = "fp32"  # what prediction runs in: "bf16-autocast" or "fp32"
    variant: str = ""  # the label of the config asked for (before a per-dataset preset), one report column
    key: str = ""
    #: ``Method.key_material`` for the target and auxiliary object names (e.g. a knowledge hash).
    key_extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        shots = f" {self.shots}-shot seed {self.seed}" if self.protocol == "few_shot" else ""
        return f"{self.method_cls.name} {self.dataset.name}/{self.category}{shots}"


@dataclass(frozen=True)
class JobSpec:
    """A planned job as plain, picklable data: what an executor ships to a worker, which looks the
    plugins up again by name (:meth:`Runner.job_from_spec`)."""

    key: str
    label: str
    method: str
    config: dict[str, Any]
    dataset: str
    root: str | None
    category: str
    protocol: str
    shots: int
    seed: int
    evaluation: dict[str, Any]
    precision: str
    variant: str
    weights: dict[str, str]
    train_on: list[tuple[str, str]] | None
    key_extra: dict[str, Any]
    #: Jobs of one group share a model instance (a fit, a loaded split) and run in one worker.
    group: str
    #: GPUs one job asks a cluster for (the method's declaration).
    gpus: float = 1.0


@dataclass
class RunSummary:
    done: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    #: Keys of the records this run wrote (the driver tells observers about workers' records).
    written: list[str] = field(default_factory=list)

    def merge(self, other: RunSummary) -> None:
        """Add another worker's counts."""
        self.done += other.done
        self.skipped += other.skipped
        self.failed += other.failed
        self.written += other.written


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; an unavailable CUDA request is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AdbenchError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    try:
        return torch.device(device)
    except RuntimeError:
        raise AdbenchError(f"--device {device!r}: expected auto, cpu, mps, cuda or cuda:N") from None


def variant_label(config: Any) -> str:
    """Short label of the fields that differ from the paper defaults, e.g. ``variant=A``."""
    default = type(config)()
    diffs = [
        f"{f.name}={getattr(config, f.name)}"
        for f in dataclasses.fields(config)
        if getattr(config, f.name) != getattr(default, f.name)
    ]
    return ",".join(diffs)


def method_configs(
    method_cls: type[Method], spec: RunSpec, overrides: dict[str, list[str]] | None = None
) -> list[Any]:
    """The grid of configs for one method: ``--set`` overrides (or ``overrides``, one set of a demo
    grid), and demo backbones and settings under ``--demo`` for fields left unset."""
    overrides = dict(spec.overrides.get(method_cls.name, {}) if overrides is None else overrides)
    if spec.demo:
        for fld, backbone in method_cls.demo_backbones.items():
            overrides.setdefault(fld, [backbone])
        for fld, value in method_cls.demo_settings.items():
            overrides.setdefault(fld, [value])
    return expand(method_cls.config_cls, overrides, method_cls.name)


def check_method(method_cls: type[Method], config: Any) -> None:
    """Plan-time checks of a method and config: the declared config base and backbone capabilities."""
    from .backbones import check_capabilities
    from .methods import MethodConfig, TrainedConfig

    base = TrainedConfig if method_cls.trained else MethodConfig
    if not isinstance(config, base):
        raise AdbenchError(
            f"method '{method_cls.name}': its config {type(config).__name__} must subclass "
            f"adbench.methods.{base.__name__}"
        )
    for fld, needed in method_cls.backbone_requirements(config).items():
        check_capabilities(method_cls.name, fld, getattr(config, fld), needed)


def backbone_identities(method_cls: type[Method], config: Any) -> dict[str, str]:
    """Backbone name -> weights identity, resolved without building any model."""
    if not method_cls.backbone_fields:
        return {}
    from .backbones import resolve_backbone_identity

    explicit = getattr(config, "weights", None)
    out = {}
    for fld in method_cls.backbone_fields:
        name = getattr(config, fld)
        out[name] = resolve_backbone_identity(
            name, explicit if len(method_cls.backbone_fields) == 1 else None
        )
    return out


def config_from_dict(config_cls: type, values: dict[str, Any]) -> Any:
    """Rebuild a config dataclass from :func:`to_dict` output (JSON lists back to tuples)."""
    hints = typing.get_type_hints(config_cls)
    kwargs = {}
    for f in dataclasses.fields(config_cls):
        if f.name in values:
            v = values[f.name]
            origin = typing.get_origin(hints[f.name])
            kwargs[f.name] = tuple(v) if isinstance(v, list) and origin is not list else v
    return config_cls(**kwargs)


def job_key(job: Job, fingerprint: str) -> str:
    return stable_hash(
        {
            "method": job.method_cls.name,
            "config": to_dict(job.config),
            "dataset": job.dataset.name,
            "dataset_version": job.dataset.version,
            "dataset_variant": job.dataset.variant,
            "fingerprint": fingerprint,
            "category": job.category,
            "protocol": job.protocol,
            "shots": job.shots,
            "seed": job.seed,
            "evaluation": dataclasses.asdict(job.evaluation),
            "precision": job.precision,
            "weights": job.weights,
            "train_on": job.train_on,
            "results_compat": RESULTS_COMPAT,
            **({"extra": job.key_extra} if job.key_extra else {}),
        },
        length=20,
    )


class Runner:
    """Plans and executes a run; all results go to the store."""

    def __init__(self, spec: RunSpec, store: ResultsStore, registry: Registry | None = None) -> None:
        self.spec = spec
        self.store = store
        self.registry = registry or get_registry()
        self.device = resolve_device(spec.device)
        from .backbones.weights import trust_torchscript

        trust_torchscript(spec.trust_weights)
        self._datasets: dict[str, Dataset] = {}
        self._categories: dict[tuple[str, str], Category] = {}
        self._fingerprints: dict[tuple[str, str], str] = {}
        self._methods: dict[str, Method] = {}
        self._fits: dict[str, Any] = {}
        self._split_cache: tuple[tuple, torch.Tensor, torch.Tensor | None] | None = None
        self._provenance: dict[str, Any] | None = None
        #: Whether lifecycle hooks hear of each job here; a worker process leaves that to the driver.
        self.observed = True

    @property
    def provenance(self) -> dict[str, Any]:
        """Versions, commit, hardware, command line and resolved suite; collected once per run."""
        if self._provenance is None:
            from .provenance import collect
            from .suite import suite_of

            self._provenance = collect(suite=suite_of(self.spec, str(self.store.root), self.registry))
        return self._provenance

    # --- planning -------------------------------------------------------------------------
    def dataset(self, name: str) -> Dataset:
        if name not in self._datasets:
            cls = self.registry.dataset(name)
            self._datasets[name] = cls(self.spec.roots.get(name))
        return self._datasets[name]

    def category(self, dataset: str, name: str) -> Category:
        if (dataset, name) not in self._categories:
            category = self.dataset(dataset).load_category(name)
            category.object_name = self.dataset(dataset).object_name(name)
            self._categories[(dataset, name)] = category
        return self._categories[(dataset, name)]

    def fingerprint(self, dataset: str, category: str) -> str:
        """Content fingerprint of one category (cached): a changed file invalidates only its category."""
        if (dataset, category) not in self._fingerprints:
            ds = self.dataset(dataset)
            try:
                value = ds.category_fingerprint(self.category(dataset, category))
            except AdbenchError as exc:  # a broken category: its job is planned and fails with this error
                value = stable_hash(["unreadable", str(exc)])
            self._fingerprints[(dataset, category)] = value
        return self._fingerprints[(dataset, category)]

    def job_fingerprint(self, job: Job) -> str:
        """The data a job's numbers depend on: its category, and the auxiliary categories of its fit."""
        parts = [self.fingerprint(job.dataset.name, job.category)]
        parts += [self.fingerprint(d, c) for d, c in job.train_on or []]
        return parts[0] if len(parts) == 1 else stable_hash(parts)

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
        aux_names = auxiliary_names(target.name, self.spec.train_on, method_cls)
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

    def plan(self) -> list[Job]:
        """Expand the grid; fails fast (before any work) on unknown names, bad options, missing weights."""
        self.check_categories_exist()
        self.check_plugins()
        method_grid = self.method_grid()
        check_set_scopes(self.spec.overrides, [m for m, _ in method_grid], self.registry.names("method"))
        jobs: list[Job] = []
        for mname, override_sets in method_grid:
            method_cls = self.registry.method(mname)
            protocol = self.spec.protocol or method_cls.default_protocol
            check_protocol(method_cls, protocol)
            configs = [c for sets in override_sets for c in method_configs(method_cls, self.spec, sets)]
            for base_config in configs:
                check_method(method_cls, base_config)
                if protocol == "few_shot":
                    grid = [
                        (k, s) for k in self.spec.shots for s in (self.spec.seeds or DEFAULT_FEW_SHOT_SEEDS)
                    ]
                else:
                    grid = [(0, s) for s in (self.spec.seeds or (0,))]
                for dname in self.spec.datasets:
                    dataset = self.dataset(dname)
                    config = method_cls.config_for_dataset(base_config, dname)
                    if config is not base_config:
                        check_method(method_cls, config)
                    weights = backbone_identities(method_cls, config)
                    evaluation = resolve_evaluation(
                        self.spec.eval_protocol,
                        int(config.image_size),
                        method_cls.map_sigma(config),
                        self.spec.eval_size,
                        self.spec.mask_resize,
                    )
                    for cat in self.selected_categories(dataset):
                        train_on = self.auxiliary(method_cls, dataset, cat)
                        for shots, seed in grid:
                            job = Job(
                                method_cls,
                                config,
                                dataset,
                                cat,
                                protocol,
                                shots,
                                seed,
                                evaluation,
                                weights,
                                train_on,
                                precision=job_precision(self.spec.precision, self.device),
                                variant=variant_label(base_config),
                            )
                            names = [dataset.object_name(cat)] + [
                                self.dataset(d).object_name(c) for d, c in train_on or []
                            ]
                            job.key_extra = method_cls.key_material(config, names)
                            job.key = job_key(job, self.job_fingerprint(job))
                            jobs.append(job)
        return jobs

    # --- execution ------------------------------------------------------------------------
    def method_instance(self, job: Job) -> Method:
        """The set-up (and, for trained methods, fitted) instance for this job. One instance is held
        at a time: when the config or training set changes, the previous model and cached backbones
        are released first, so peak memory does not depend on what ran before."""
        ident = self.instance_id(job)
        if ident not in self._methods:
            self.release_models()
            method = job.method_cls(job.config, self.device)
            method.setup()
            if job.method_cls.trained:
                self._fits[ident] = self.fit(method, job)
            self._methods[ident] = method
        return self._methods[ident]

    def release_models(self) -> None:
        """Drop the held method instance and the backbone cache; return freed CUDA memory."""
        import gc

        from .backbones import clear_backbone_cache

        if not self._methods:
            return
        self._methods.clear()
        clear_backbone_cache()
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @staticmethod
    def instance_id(job: Job) -> str:
        """Trained methods get one instance per training set and seed; training-free ones per config."""
        seed = job.seed if job.method_cls.trained else None
        return stable_hash([job.method_cls.name, to_dict(job.config), job.train_on, seed])

    def fit(self, method: Method, job: Job) -> Any:
        from .training import ensure_fitted

        assert job.train_on is not None
        aux = [(d, self.category(d, c)) for d, c in job.train_on]
        fingerprint = stable_hash([self.fingerprint(d, c) for d, c in job.train_on] + job.train_on)
        result = ensure_fitted(
            method,
            aux,
            aux_fingerprint=fingerprint,
            seed=job.seed,
            retrain=self.spec.retrain,
            progress=self.spec.progress,
            claim=lambda key: self.store.hold(f"fit-{key}"),
        )
        from .training import read_fit_log

        # per-epoch losses beside the records (the fit itself lives in the cache)
        log = read_fit_log(job.method_cls.name, result.key)
        self.store.write_training_log(result.key, log)
        # training time of the fit (also when this run reused it from the cache)
        return dataclasses.replace(result, seconds=log.get("seconds", result.seconds))

    def group_of(self, job: Job) -> str:
        """Jobs that share a model instance: a trained fit (config, training set, seed), or a
        training-free config on one category (the loaded split)."""
        ident = self.instance_id(job)
        return ident if job.method_cls.trained else stable_hash([ident, job.dataset.name, job.category])

    def to_spec(self, job: Job) -> JobSpec:
        """The plain form of a planned job (what executors send to workers)."""
        return JobSpec(
            key=job.key,
            label=job.label,
            method=job.method_cls.name,
            config=to_dict(job.config),
            dataset=job.dataset.name,
            root=str(job.dataset.root) if job.dataset.root else None,
            category=job.category,
            protocol=job.protocol,
            shots=job.shots,
            seed=job.seed,
            evaluation=dataclasses.asdict(job.evaluation),
            precision=job.precision,
            variant=job.variant,
            weights=dict(job.weights),
            train_on=[tuple(p) for p in job.train_on] if job.train_on is not None else None,
            key_extra=dict(job.key_extra),
            group=self.group_of(job),
            gpus=float(job.method_cls.gpus),
        )

    def job_from_spec(self, spec: JobSpec) -> Job:
        """Rebuild a live job in this process: plugins looked up by name through the registry."""
        method_cls = self.registry.method(spec.method)
        if spec.root and spec.dataset not in self._datasets:
            self._datasets[spec.dataset] = self.registry.dataset(spec.dataset)(spec.root)
        return Job(
            method_cls,
            config_from_dict(method_cls.config_cls, spec.config),
            self.dataset(spec.dataset),
            spec.category,
            spec.protocol,
            spec.shots,
            spec.seed,
            Evaluation(**spec.evaluation),
            dict(spec.weights),
            [tuple(p) for p in spec.train_on] if spec.train_on is not None else None,
            precision=spec.precision,
            variant=spec.variant,
            key=spec.key,
            key_extra=dict(spec.key_extra),
        )

    def run(self) -> RunSummary:
        """Plan, drop finished jobs, take this shard's groups and hand them to the executor.

        Each job is claimed in the store before it runs (whichever executor runs it), so concurrent
        runs, workers and overlapping shards sharing a store never compute a job twice.
        """
        from .executors import group_jobs, parse_shard, run_local, run_ray, shard_groups, worker_devices

        self.store.check_writable()
        self.store.sweep_stale_claims()
        jobs = self.plan()
        specs = [self.to_spec(j) for j in jobs]
        groups = shard_groups(group_jobs(specs), parse_shard(self.spec.shard))
        planned = sum(len(g) for g in groups)
        todo = [[s for s in g if self.spec.force or not self.store.has(s.key)] for g in groups]
        todo = [g for g in todo if g]
        skipped = planned - sum(len(g) for g in todo)
        root = str(self.store.root)
        log.info("%d jobs planned, %d already done", planned, skipped)
        self.registry.notify(
            "adbench_run_started",
            spec=self.spec,
            jobs=[dataclasses.asdict(s) for s in specs],
            store_root=root,
        )
        if self.spec.executor == "serial":
            live = {j.key: j for j in jobs}
            summary = self.execute([live[s.key] for g in todo for s in g])
        elif self.spec.executor == "local":
            summary = run_local(self.spec, root, todo, worker_devices(self.spec.devices, self.spec.workers))
        elif self.spec.executor == "ray":
            summary = run_ray(self.spec, root, todo, self.spec.address)
        else:
            raise AdbenchError(f"--executor {self.spec.executor!r}: expected serial, local or ray")
        summary.skipped += skipped
        if self.spec.executor != "serial":  # workers do not notify: observers live in this process
            for key in summary.written:
                self.registry.notify("adbench_job_finished", record=self.store.read_record(key))
        self.registry.notify("adbench_run_finished", spec=self.spec, summary=summary, store_root=root)
        return summary

    def execute(self, jobs: list[Job]) -> RunSummary:
        """Run jobs in this process; failures are recorded, not fatal."""
        from tqdm.auto import tqdm

        summary = RunSummary()
        bar = tqdm(total=len(jobs), disable=not self.spec.progress, unit="job", dynamic_ncols=True)
        pending = jobs
        while pending:
            deferred = []
            for job in pending:
                bar.set_description(job.label)
                outcome = self.claim_and_run(job, summary)
                if outcome == "busy":
                    deferred.append(job)
                else:
                    bar.update()
            if deferred:
                # another run holds these claims: wait until it finishes or its claim goes stale
                time.sleep(0.2)
            pending = deferred
        bar.close()
        return summary

    def claim_and_run(self, job: Job, summary: RunSummary) -> str:
        """Claim, run and record one job: 'done', 'failed', 'skipped' (finished meanwhile) or 'busy'."""
        with self.store.claim(job.key) as claimed:
            if not claimed:
                return "busy"
            if not self.spec.force and self.store.has(job.key):
                summary.skipped += 1  # another run finished it between planning and our claim
                return "skipped"
            try:
                record = self.run_job(job)
            except WeightsNotFoundError:
                raise
            except AdbenchError as exc:
                record = self.failure_record(job, str(exc))
                log.info("%s failed: %s", job.label, exc)  # the CLI prints one line per failure
            except (Exception, SystemExit) as exc:  # isolate one job's crash (a plugin's sys.exit too)
                record = self.failure_record(
                    job, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
                )
                # the full traceback goes to the run's log file; the terminal keeps the CLI's one line
                log.info("%s failed: %s: %s", job.label, type(exc).__name__, exc, exc_info=exc)
            try:
                self.store.write_record(record)
            except OSError as exc:
                self.store.predictions_path(job.key).unlink(missing_ok=True)  # no orphan predictions
                raise AdbenchError(
                    f"cannot write record for {job.label} in {self.store.records_dir}: {exc.strerror or exc}; "
                    f"stopped after {summary.done} job(s) (their results are kept)"
                ) from None
        summary.written.append(job.key)
        if self.observed:
            self.registry.notify("adbench_job_finished", record=record.to_dict())
        if record.ok:
            summary.done += 1
            return "done"
        summary.failed.append(f"{job.label}: {((record.error or '').splitlines() or ['failed'])[0]}")
        return "failed"

    def base_record(self, job: Job) -> JobRecord:
        ds = job.dataset
        fit = self._fits.get(self.instance_id(job))
        return JobRecord(
            key=job.key,
            adbench_version=__version__,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            method=job.method_cls.name,
            method_title=job.method_cls.display_name or job.method_cls.name,
            published_name=job.method_cls.published_name(job.config),
            variant=job.variant,
            method_config=to_dict(job.config),
            method_config_hash=stable_hash(to_dict(job.config)),
            trained=job.method_cls.trained,
            dataset=ds.name,
            dataset_title=ds.title or ds.name,
            dataset_group=ds.group,
            dataset_order=ds.order,
            dataset_n_categories=len(ds.categories()),
            dataset_version=ds.version,
            dataset_variant=ds.variant,
            dataset_task=ds.task,
            dataset_fingerprint=self.job_fingerprint(job),
            category=job.category,
            protocol=job.protocol,
            shots=job.shots,
            seed=job.seed,
            **job.evaluation.record(),
            backbones={f: getattr(job.config, f) for f in job.method_cls.backbone_fields},
            weights=job.weights,
            random_weights="random" in job.weights.values(),
            train_on=[f"{d}/{c}" for d, c in job.train_on] if job.train_on is not None else None,
            train_on_policy=(
                ",".join(self.spec.train_on or ["default"]) if job.train_on is not None else None
            ),
            fit=dataclasses.asdict(fit) if fit is not None else None,
            device=str(self.device),
            platform=f"python {platform.python_version()}, torch {torch.__version__}",
            precision=job.precision,
            provenance=self.provenance,
        )

    def failure_record(self, job: Job, error: str) -> JobRecord:
        return dataclasses.replace(self.base_record(job), status="failed", error=error)

    def test_split(
        self, job: Job, category: Category, size: int
    ) -> tuple[torch.Tensor | None, torch.Tensor | list[torch.Tensor] | None]:
        """Test masks of a category, and its images when the protocol hands the whole split to the
        method at once (batch zero-shot; other protocols stream images from disk batch by batch).
        The last split is kept, since consecutive jobs (few-shot k and seeds, config variants) share it."""
        ev = job.evaluation
        whole = job.protocol == "batch_zero_shot"
        ident = (job.dataset.name, category.name, size, ev.size, ev.mask_resize, whole)
        if self._split_cache is None or self._split_cache[0] != ident:
            self._split_cache = None  # free the previous split before loading the next
            images = load_images(category.test, size) if whole else None
            mask_size = None if ev.size == "original" else int(ev.size)
            masks = (
                load_masks(category.test, mask_size, ev.mask_resize, job.dataset.allow_mask_resize)
                if category.has_masks
                else None
            )
            self._split_cache = (ident, images, masks)
        return self._split_cache[1], self._split_cache[2]

    def run_job(self, job: Job) -> JobRecord:
        seed_everything(job.seed)
        t0 = time.perf_counter()
        method = self.method_instance(job)
        category = self.category(job.dataset.name, job.category)
        images, masks = self.test_split(job, category, method.image_size)
        labels = np.array([s.label for s in category.test], dtype=np.int64)
        ctx = make_context(job.protocol, category, method.image_size, job.shots, job.seed)
        mem_kind = reset_peak_memory(self.device)
        t1 = time.perf_counter()
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=job.precision == "bf16-autocast"),
        ):
            source = images.to(self.device) if images is not None else category.test
            pred = predict_category(method, source, ctx, self.spec.batch_size, method.image_size, self.device)
        predict_s = time.perf_counter() - t1
        scores = pred.scores.detach().float().cpu().numpy()
        ev = job.evaluation
        np_masks = None
        if masks is not None:
            np_masks = [m.numpy() for m in masks] if isinstance(masks, list) else masks.numpy()
        maps = None
        if pred.maps is not None:
            maps = postprocess_maps(pred.maps, eval_sizes(ev, category.test, np_masks), ev.smoothing_sigma)
        values, notes = metrics.compute_metrics(
            labels, scores, np_masks, maps if np_masks is not None else None
        )
        notes = list(category.notes) + notes
        anomaly_types = np.array([s.anomaly_type or "" for s in category.test])
        self.store.write_predictions(
            job.key,
            scores=scores.astype(np.float32),
            labels=labels,
            ids=np.array([s.id for s in category.test]),
            anomaly_types=anomaly_types,
            **pack_pixels(maps, np_masks),
        )
        fit = self._fits.get(self.instance_id(job))
        params_total, params_trainable = parameter_counts(method)
        return dataclasses.replace(
            self.base_record(job),
            metrics=values,
            metric_definitions={k: metrics.METRIC_DEFINITIONS[k] for k in values},
            notes=notes,
            n_test=int(len(labels)),
            n_anomalous=int(labels.sum()),
            params_total=params_total,
            params_trainable=params_trainable,
            image_auroc_by_anomaly_type=metrics.image_auroc_by_group(labels, scores, anomaly_types),
            difficulty=category.difficulty,
            timing=Timing(
                wall_s=round(time.perf_counter() - t0, 3),
                predict_s=round(predict_s, 3),
                images_per_s=round(len(labels) / predict_s, 3) if predict_s > 0 else None,
                peak_mem_mb=peak_memory_mb(self.device),
                peak_mem_kind=mem_kind,
                train_s=round(fit.seconds, 3) if fit is not None else None,
            ),
        )


def eval_sizes(
    ev: Evaluation, samples: Sequence[Any], masks: np.ndarray | list[np.ndarray] | None
) -> list[tuple[int, int]]:
    """(h, w) each map is scored at: the square evaluation size, or under ``original`` each mask's
    size (each image's, read from its header, for datasets without masks)."""
    if ev.size != "original":
        return [(int(ev.size), int(ev.size))] * len(samples)
    if masks is not None:
        return [tuple(m.shape) for m in masks]
    return [image_size(s.image_path)[::-1] for s in samples]


def postprocess_maps(
    maps: torch.Tensor | None, sizes: Sequence[tuple[int, int]], sigma: float
) -> np.ndarray | list[np.ndarray] | None:
    """Resize anomaly maps to the evaluation sizes (bilinear; one (h, w) per image) and Gaussian-smooth
    them (sigma px at that size). One stacked array when all sizes agree, else a list per image."""
    if maps is None:
        return None
    maps = maps.detach().float().cpu()
    out: list[np.ndarray] = []
    for i, size in enumerate(sizes):
        m = maps[i : i + 1]
        if tuple(m.shape[-2:]) != tuple(size):
            m = F.interpolate(m[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
        arr = m[0].numpy()
        if sigma > 0:
            arr = ndimage.gaussian_filter(arr, sigma=sigma)
        out.append(arr)
    # Maps are stored as float16 when their range allows; score the same rounded values so that
    # `adbench rescore` reproduces every record exactly.
    if len({a.shape for a in out}) <= 1:
        stacked = np.stack(out) if out else np.zeros((0, 0, 0), np.float32)
        return compact_maps(stacked).astype(np.float32)
    flat = compact_maps(np.concatenate([a.ravel() for a in out])).astype(np.float32)
    return unpack_ragged(flat, np.array([a.shape for a in out]))


def pack_pixels(
    maps: np.ndarray | list[np.ndarray] | None, masks: np.ndarray | list[np.ndarray] | None
) -> dict[str, np.ndarray]:
    """Store arrays for maps and masks: stacked (N, H, W) when all images share a size, else flat
    pixel arrays plus ``shapes`` (N, 2) (no pickled object arrays; ``unpack_ragged`` reverses it)."""
    out = {"maps": np.zeros((0,), np.float16), "masks": np.zeros((0,), np.uint8)}
    if not (isinstance(maps, list) or isinstance(masks, list)):
        if maps is not None:
            out["maps"] = compact_maps(maps)
        if masks is not None:
            out["masks"] = masks.astype(np.uint8)
        return out
    if maps is not None:
        out["maps"] = compact_maps(np.concatenate([m.ravel() for m in maps]))
    if masks is not None:
        out["masks"] = np.concatenate([m.ravel() for m in masks]).astype(np.uint8)
    out["shapes"] = np.array([m.shape for m in (masks if masks is not None else maps)], dtype=np.int64)
    return out


def unpack_ragged(flat: np.ndarray, shapes: np.ndarray) -> list[np.ndarray]:
    """Per-image arrays from flat pixels and their (N, 2) shapes."""
    ends = np.cumsum([int(h) * int(w) for h, w in shapes])
    return [p.reshape(int(h), int(w)) for p, (h, w) in zip(np.split(flat, ends[:-1]), shapes)]


def job_precision(requested: str, device: torch.device) -> str:
    """What prediction runs in: ``bf16-autocast`` on CUDA unless ``fp32`` is asked for; CPU is fp32."""
    return "fp32" if requested == "fp32" or device.type != "cuda" else "bf16-autocast"


def compact_maps(maps: np.ndarray) -> np.ndarray:
    """float16 copy of the maps when every value fits (|x| < 60000), else float32."""
    if maps.size and np.isfinite(maps).all() and np.abs(maps).max() < 6e4:
        return maps.astype(np.float16)
    return maps.astype(np.float32)


def rescore(store: ResultsStore) -> tuple[int, list[str]]:
    """Recompute every record's metrics from its stored predictions (no model runs).

    Every predictions file is read before any record is written, so a bad file never leaves the
    store half rescored; each bad file is returned as one line (its job is recomputed by the next run).
    """
    loaded, problems = [], []
    for rec in store.iter_records():
        if rec.get("status") != "ok":
            continue
        try:
            loaded.append((rec, store.read_predictions(rec["key"])))
        except AdbenchError as exc:
            problems.append(f"{exc}; `adbench run` recomputes this job")
    for rec, pred in loaded:
        has_masks = pred["masks"].size > 0
        masks, maps = pred["masks"], pred["maps"].astype(np.float32)
        if "shapes" in pred:  # per-image sizes (--eval-size original)
            masks = unpack_ragged(masks, pred["shapes"])
            maps = unpack_ragged(maps, pred["shapes"]) if maps.size else maps
        values, notes = metrics.compute_metrics(
            pred["labels"],
            pred["scores"],
            masks if has_masks else None,
            maps if has_masks and pred["maps"].size else None,
        )
        rec["metrics"] = values
        if "anomaly_types" in pred:
            rec["image_auroc_by_anomaly_type"] = metrics.image_auroc_by_group(
                pred["labels"], pred["scores"], pred["anomaly_types"]
            )
        rec["metric_definitions"] = {k: metrics.METRIC_DEFINITIONS[k] for k in values}
        rec["notes"] = sorted(set(rec.get("notes", [])) | set(notes))
        rec["rescored"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        store.write_record(rec)
    return len(loaded), problems
