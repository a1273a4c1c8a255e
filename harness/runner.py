"""Execution: run planned :class:`~adbench.jobs.JobSpec` records, isolate failures and resume (a job
whose record exists is skipped unless forced). Planning lives in :mod:`adbench.planner`, job identity
in :mod:`adbench.jobs`, metrics in :mod:`adbench.scoring`, where jobs run in :mod:`adbench.executors`.

A job carries its key and data fingerprint; execution only loads what it runs on (the model, the
category's images) and never recomputes a job's identity.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import logging
import platform
import re
import time
import traceback
from typing import Any

import numpy as np
import torch

from . import __version__
from .claims import ClaimWaits
from .config import stable_hash, to_dict
from .data import Category, load_images, load_masks
from .errors import AdbenchError, WeightsNotFoundError
from .evaluation import engine_sigma
from .executors import EXECUTORS, parse_shard
from .jobs import DEVICE_CHOICES, DEVICE_PATTERN, JobSpec, RunSpec
from .measure import parameter_counts, peak_memory_mb, reset_peak_memory
from .methods import Context, Method, Prediction
from .planner import DataSource, Planner, group_jobs, shard_groups
from .precision import autocast as precision_autocast
from .precision import precision_scope
from .protocol_catalog import protocol_spec
from .protocols import make_context, predict_category
from .record import JobRecord, Timing
from .registry import Registry, get_registry
from .run_options import warn_if_large
from .scoring import eval_sizes, metrics_block, postprocess_maps
from .seeding import seed_everything
from .store import ResultsStore
from .summary import RunSummary

log = logging.getLogger("adbench.runner")


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; an unavailable CUDA request is an error."""
    if not re.fullmatch(DEVICE_PATTERN, device):
        raise AdbenchError(f"--device {device!r}: expected {DEVICE_CHOICES}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AdbenchError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return torch.device(device)


def execute_groups(
    run_spec: RunSpec, store_root: str, groups: list[list[JobSpec]], device: str | None = None
) -> RunSummary:
    """Worker entry point (any process): execute the groups' jobs with a fresh runner and registry."""
    spec = dataclasses.replace(run_spec, device=device or run_spec.device, progress=False)
    runner = Runner(spec, ResultsStore(store_root))
    runner.observed = False  # the driver tells the run's observers (trackers) about these records
    return runner.execute([s for group in groups for s in group])


class Runner:
    """Executes a run's jobs; all results go to the store."""

    def __init__(
        self,
        spec: RunSpec,
        store: ResultsStore,
        registry: Registry | None = None,
        data: DataSource | None = None,
    ) -> None:
        self.spec = spec
        self.store = store
        self.registry = registry or get_registry()
        self.device = resolve_device(spec.device)
        from .backbones.weights import trust_torchscript

        trust_torchscript(spec.trust_weights)
        from .image_cache import configure as configure_image_cache

        configure_image_cache(enabled=spec.image_cache)
        self.data = data or DataSource(self.registry, spec.roots)
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

    def plan(self) -> list[JobSpec]:
        """The run's jobs (:meth:`adbench.planner.Planner.plan`), sharing this runner's loaded data."""
        return Planner(self.spec, self.registry, self.device, self.data).plan()

    def run(self) -> RunSummary:
        """Plan, drop finished jobs, take this shard's groups and hand them to the executor.

        Each job is claimed in the store before it runs (whichever executor runs it), so concurrent
        runs, workers and overlapping shards sharing a store never compute a job twice.
        """
        self.store.check_writable()
        self.store.sweep_stale_claims()
        warn_if_large(self.spec)
        specs = self.plan()
        groups = shard_groups(group_jobs(specs), parse_shard(self.spec.shard))
        planned = sum(len(g) for g in groups)
        todo = [[s for s in g if self.spec.force or not self.store.has(s.key)] for g in groups]
        todo = [g for g in todo if g]
        skipped = planned - sum(len(g) for g in todo)
        root = str(self.store.root)
        log.info("%d jobs planned, %d already done", planned, skipped)
        self.registry.observer_failures.clear()  # what this run's summary reports
        self.registry.notify(
            "adbench_run_started", spec=self.spec, jobs=[s.to_dict() for s in specs], store_root=root
        )
        executor = EXECUTORS[self.spec.executor]
        worker = self.execute_here if executor.in_process else execute_groups
        summary = executor.run(worker, self.spec, root, todo, RunSummary())
        summary.skipped += skipped
        if not executor.in_process:  # workers do not notify: observers live in this process
            for key in summary.written:
                self.registry.notify("adbench_job_finished", record=self.store.read_record(key))
        self.registry.notify("adbench_run_finished", spec=self.spec, summary=summary, store_root=root)
        summary.notices = [f"{line} ({n}x)" for line, n in self.registry.observer_failures.items()]
        return summary

    def execute_here(
        self, run_spec: RunSpec, store_root: str, groups: list[list[JobSpec]], device: str | None = None
    ) -> RunSummary:
        """The in-process worker: this runner executes the groups (progress bar, observers per job)."""
        return self.execute([s for group in groups for s in group])

    def execute(self, jobs: list[JobSpec]) -> RunSummary:
        """Run jobs in this process; failures are recorded, not fatal."""
        from tqdm.auto import tqdm

        summary = RunSummary()
        bar = tqdm(total=len(jobs), disable=not self.spec.progress, unit="job", dynamic_ncols=True)
        pending = jobs
        waits = ClaimWaits(self.store)
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
                for job in deferred:
                    if notice := waits.note(job.key):
                        log.warning("%s: %s", job.label, notice)
                time.sleep(0.2)
            pending = deferred
        bar.close()
        return summary

    def claim_and_run(self, job: JobSpec, summary: RunSummary) -> str:
        """Claim, run and record one job: 'done', 'failed', 'skipped' (finished meanwhile) or 'busy'."""
        with self.store.claim(job.key) as claimed:
            if not claimed:
                return "busy"
            if not self.spec.force and self.store.has(job.key):
                summary.skipped += 1  # another run finished it between planning and our claim
                return "skipped"
            with precision_scope(job.precision):  # every stage, the fit included (adbench.precision)
                record = self.run_isolated(job, summary)
            if not record.ok and self.spec.force and self.store.has(job.key):
                # a failed --force rerun never replaces a good result: reported, the old record stays
                summary.failed.append(f"{job.label}: {_first_line(record.error)} (kept the earlier result)")
                return "failed"
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
        summary.failed.append(f"{job.label}: {_first_line(record.error)}")
        return "failed"

    def run_isolated(self, job: JobSpec, summary: RunSummary) -> JobRecord:
        """The job's record: its results, or a failure record when the job raised (missing weights
        stop the run; so does a full or read-only store, keeping what was written)."""
        try:
            return self.run_job(job)
        except WeightsNotFoundError:
            raise
        except AdbenchError as exc:
            record = self.failure_record(job, str(exc))
            log.info("%s failed: %s", job.label, exc)  # the CLI prints one line per failure
        except OSError as exc:
            if exc.errno in STORE_FULL_ERRNOS:  # every next job would fail too: stop, keep what is written
                raise AdbenchError(
                    f"{job.label}: {exc.strerror} ({exc.filename or self.store.root}); stopped after "
                    f"{summary.done} job(s) (their results are kept); free space and rerun to resume"
                ) from None
            record = self.failure_record(job, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}")
            log.info("%s failed: %s: %s", job.label, type(exc).__name__, exc, exc_info=exc)
        except (Exception, SystemExit) as exc:  # isolate one job's crash (a plugin's sys.exit too)
            record = self.failure_record(job, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}")
            # the full traceback goes to the run's log file; the terminal keeps the CLI's one line
            log.info("%s failed: %s: %s", job.label, type(exc).__name__, exc, exc_info=exc)
        return record

    # --- the model ------------------------------------------------------------------------
    def method_instance(self, job: JobSpec) -> Method:
        """The set-up (and, for trained methods, fitted) instance for this job. One instance is held
        at a time: when the config or training set changes, the previous model and cached backbones
        are released first, so peak memory does not depend on what ran before."""
        ident = job.instance
        if ident not in self._methods:
            self.release_models()
            method_cls = self.registry.method(job.method)
            method = method_cls(job.config, self.device)
            method.setup()
            if method_cls.trained:
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

    def fit(self, method: Method, job: JobSpec) -> Any:
        from .training import ensure_fitted, read_fit_log

        assert job.train_on is not None and job.fit_fingerprint is not None
        aux = [(d, self.data.category(d, c)) for d, c in job.train_on]
        result = ensure_fitted(
            method,
            aux,
            aux_fingerprint=job.fit_fingerprint,
            seed=job.seed,
            retrain=self.spec.retrain,
            progress=self.spec.progress,
            claim=lambda key: self.store.hold(f"fit-{key}"),
        )
        # per-epoch losses beside the records (the fit itself lives in the cache)
        log = read_fit_log(job.method, result.key)
        self.store.write_training_log(result.key, log)
        # training time of the fit (also when this run reused it from the cache)
        return dataclasses.replace(result, seconds=log.get("seconds", result.seconds))

    # --- one job --------------------------------------------------------------------------
    def base_record(self, job: JobSpec) -> JobRecord:
        ds = self.data.dataset(job.dataset.name, job.dataset.root)
        method_cls = self.registry.method(job.method)
        fit = self._fits.get(job.instance)
        return JobRecord(
            key=job.key,
            adbench_version=__version__,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            method=job.method,
            method_title=method_cls.display_name or job.method,
            published_name=method_cls.published_name(job.config),
            variant=job.variant,
            method_config=to_dict(job.config),
            method_config_hash=stable_hash(to_dict(job.config)),
            trained=method_cls.trained,
            dataset=ds.name,
            dataset_title=ds.title or ds.name,
            dataset_group=ds.group,
            dataset_order=ds.order,
            dataset_n_categories=len(ds.categories()),
            dataset_version=job.dataset.version,
            dataset_variant=job.dataset.variant,
            dataset_task=ds.task,
            dataset_fingerprint=job.fingerprint,
            category=job.category,
            protocol=job.protocol,
            shots=job.shots,
            seed=job.seed,
            **job.evaluation.record(),
            backbones={f: getattr(job.config, f) for f in method_cls.backbone_fields},
            weights=job.weights,
            random_weights="random" in job.weights.values(),
            train_on=[f"{d}/{c}" for d, c in job.train_on] if job.train_on is not None else None,
            train_on_policy=job.train_on_policy,
            fit=dataclasses.asdict(fit) if fit is not None else None,
            device=str(self.device),
            platform=f"python {platform.python_version()}, torch {torch.__version__}",
            precision=job.precision,
            provenance=self.provenance,
        )

    def failure_record(self, job: JobSpec, error: str) -> JobRecord:
        return dataclasses.replace(self.base_record(job), status="failed", error=error)

    def test_split(
        self, job: JobSpec, category: Category, size: int
    ) -> tuple[torch.Tensor | None, torch.Tensor | list[torch.Tensor] | None]:
        """Test masks of a category, and its images when the protocol hands the whole split to the
        method at once (batch zero-shot; other protocols stream images from disk batch by batch).
        The last split is kept, since consecutive jobs (few-shot k and seeds, config variants) share it."""
        ev = job.evaluation
        whole = protocol_spec(job.protocol).whole_split
        ident = (job.dataset.name, category.name, size, ev.size, ev.mask_resize, whole)
        if self._split_cache is None or self._split_cache[0] != ident:
            self._split_cache = None  # free the previous split before loading the next
            images = load_images(category.test, size) if whole else None
            mask_size = None if ev.size == "original" else int(ev.size)
            allow_resize = self.data.dataset(job.dataset.name, job.dataset.root).allow_mask_resize
            masks = (
                load_masks(category.test, mask_size, ev.mask_resize, allow_resize)
                if category.has_masks
                else None
            )
            self._split_cache = (ident, images, masks)
        return self._split_cache[1], self._split_cache[2]

    def predict(
        self, job: JobSpec, method: Method, category: Category, images: Any, ctx: Context
    ) -> tuple[Prediction, float]:
        """The method's prediction on the category's test split, and the seconds it took."""
        t1 = time.perf_counter()
        with (
            torch.inference_mode(),
            precision_autocast(self.device),
        ):
            source = images.to(self.device) if images is not None else category.test
            pred = predict_category(method, source, ctx, self.spec.batch_size, method.image_size, self.device)
        return pred, time.perf_counter() - t1

    def run_job(self, job: JobSpec) -> JobRecord:
        if "key_material_error" in job.key_extra:  # planning could not ask the method's sources
            raise AdbenchError(job.key_extra["key_material_error"])
        seed_everything(job.seed)
        t0 = time.perf_counter()
        method = self.method_instance(job)
        category = self.data.category(job.dataset.name, job.category)
        images, masks = self.test_split(job, category, method.image_size)
        labels = np.array([s.label for s in category.test], dtype=np.int64)
        ctx = make_context(job.protocol, category, method.image_size, job.shots, job.seed, method.input_shape)
        mem_kind = reset_peak_memory(self.device)
        pred, predict_s = self.predict(job, method, category, images, ctx)
        scores = pred.scores.detach().float().cpu().numpy()
        ev = job.evaluation
        np_masks = None
        if masks is not None:
            np_masks = [m.numpy() for m in masks] if isinstance(masks, list) else masks.numpy()
        maps = None
        if pred.maps is not None:
            maps = postprocess_maps(
                pred.maps, eval_sizes(ev, category.test, np_masks), engine_sigma(type(method), ev)
            )
        anomaly_types = np.array([s.anomaly_type or "" for s in category.test])
        block, notes = metrics_block(labels, scores, np_masks, maps, anomaly_types)
        self.store.save_predictions(
            job.key,
            scores=scores,
            labels=labels,
            ids=np.array([s.id for s in category.test]),
            anomaly_types=anomaly_types,
            maps=maps,
            masks=np_masks,
        )
        fit = self._fits.get(job.instance)
        params_total, params_trainable = parameter_counts(method)
        return dataclasses.replace(
            self.base_record(job),
            **block,
            reference_ids=ctx.reference_ids,
            notes=list(category.notes) + notes,
            n_test=int(len(labels)),
            n_anomalous=int(labels.sum()),
            params_total=params_total,
            params_trainable=params_trainable,
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


#: File-system errors after which no job can be stored (disk full, quota, read-only): the run stops.
STORE_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _first_line(error: str | None) -> str:
    return ((error or "").splitlines() or ["failed"])[0]
