"""What a run is asked for and the jobs it plans, as plain data: :class:`RunSpec`, :class:`JobSpec`,
the job key, config resolution and the run options' parsers (torch-free).

The key of a job hashes everything that can change its numbers: the resolved method config, the
fingerprint of the job's category (and of its fit's auxiliary categories) and the dataset variant,
backbone names and weights identities, protocol, shots, seed, evaluation size, auxiliary training data
and the results-compatibility number (not the adbench version: a release that changes no number keeps
every record; see lm-evaluation-harness #2715 for what goes wrong when the model identity is left out
of a cache key). A :class:`JobSpec` carries every one of these, so :func:`job_key` reads nothing else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import RESULTS_COMPAT
from .config import expand, stable_hash, to_dict
from .errors import AdbenchError
from .evaluation import MASK_RESIZES, PRECISIONS, Evaluation
from .executors import EXECUTORS, parse_shard, worker_devices
from .protocol_catalog import DEFAULT_SHOTS, REFERENCE_RULE, takes_references

if TYPE_CHECKING:
    from .methods import Method

#: ``--device`` values (a regular expression) and how an error names them.
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"
DEVICE_CHOICES = "auto, cpu, mps, cuda or cuda:N"
#: What a run evaluates on when no dataset is named: the built-in dataset (nothing to download).
DEFAULT_DATASETS = ("synthetic",)


@dataclass
class RunSpec:
    """Everything ``adbench run`` was asked for, after parsing."""

    methods: list[str]
    datasets: list[str] = field(default_factory=lambda: list(DEFAULT_DATASETS))
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
    #: Serve decoded, resized images from the cache under $ADBENCH_HOME (``--no-image-cache``: off).
    image_cache: bool = True

    def __post_init__(self) -> None:
        """Check every value before any work, whichever door it came through (CLI, suite file, API):
        one-line errors naming the option."""
        from .evaluation import eval_protocol, parse_eval_size

        eval_protocol(self.eval_protocol)
        self.eval_size = parse_eval_size(self.eval_size)
        checks = [
            ("--shots", all(int(k) >= 1 for k in self.shots) and bool(self.shots), "integers >= 1"),
            ("--seeds", self.seeds is None or all(int(s) >= 0 for s in self.seeds), "integers >= 0"),
            ("--batch-size", int(self.batch_size) >= 1, "an integer >= 1"),
            ("--workers", self.workers is None or int(self.workers) >= 1, "an integer >= 1"),
            ("--executor", self.executor in EXECUTORS, f"one of {', '.join(EXECUTORS)}"),
            ("--precision", self.precision in PRECISIONS, " or ".join(PRECISIONS)),
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


@dataclass(frozen=True)
class DatasetRef:
    """The identity of a job's dataset: its plugin name, resolved root, version and variant."""

    name: str
    root: str | None
    version: str
    variant: str


@dataclass(frozen=True)
class JobSpec:
    """One planned job as plain, picklable data: everything its key is made of (its data fingerprint
    included) and how to group it. Executors ship it to workers as is; a worker looks the plugins up by
    name and never asks the planner for anything."""

    key: str
    label: str
    method: str
    config: Any  #: the method's resolved config dataclass
    dataset: DatasetRef
    category: str
    protocol: str
    shots: int
    seed: int
    evaluation: Evaluation
    precision: str  #: what prediction runs in: "bf16-autocast" or "fp32"
    variant: str  #: the label of the config asked for (before a per-dataset preset), one report column
    weights: dict[str, str]
    train_on: list[tuple[str, str]] | None
    #: ``Method.key_material`` for the target and auxiliary object names (e.g. a knowledge hash).
    key_extra: dict[str, Any]
    #: Content fingerprint of the data the numbers depend on (the category and the fit's categories).
    fingerprint: str
    #: Fingerprint of the fit's auxiliary data (trained methods; keys the fit cache).
    fit_fingerprint: str | None
    #: ``--train-on`` as the record names it (trained methods).
    train_on_policy: str | None
    #: Jobs sharing one model instance (a fit, a set-up config) hold the same id.
    instance: str
    #: Jobs of one group share a model instance (a fit, a loaded split) and run in one worker.
    group: str
    #: GPUs one job asks a cluster for (the method's declaration).
    gpus: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """The job as hooks see it (``adbench_run_started``): JSON-ready, dataset by name."""
        out = dataclasses.asdict(self)
        out["config"] = to_dict(self.config)
        out["dataset"], out["root"] = self.dataset.name, self.dataset.root
        return out


def job_label(method: str, dataset: str, category: str, protocol: str, shots: int, seed: int) -> str:
    """How progress bars and failure lines name a job."""
    tail = f" {shots}-shot seed {seed}" if takes_references(protocol) else ""
    return f"{method} {dataset}/{category}{tail}"


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
    grid), and demo backbones under ``--demo`` for backbone fields left unset."""
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

    explicit = method_cls.weights_identity(config)
    out = {}
    for fld in method_cls.backbone_fields:
        name = getattr(config, fld)
        out[name] = resolve_backbone_identity(
            name, explicit if len(method_cls.backbone_fields) == 1 else None
        )
    return out


def job_key(job: JobSpec) -> str:
    """The job's identity, from its own fields only (a record cannot disagree with its key)."""
    return stable_hash(
        {
            "method": job.method,
            "config": to_dict(job.config),
            "dataset": job.dataset.name,
            "dataset_version": job.dataset.version,
            "dataset_variant": job.dataset.variant,
            "fingerprint": job.fingerprint,
            "category": job.category,
            "protocol": job.protocol,
            "shots": job.shots,
            "seed": job.seed,
            **({"references": REFERENCE_RULE} if takes_references(job.protocol) else {}),
            "evaluation": dataclasses.asdict(job.evaluation),
            "precision": job.precision,
            "weights": job.weights,
            "train_on": job.train_on,
            "results_compat": RESULTS_COMPAT,
            **({"extra": job.key_extra} if job.key_extra else {}),
        },
        length=20,
    )


def instance_id(method_cls: type[Method], config: Any, train_on: Any, seed: int) -> str:
    """Trained methods get one instance per training set and seed; training-free ones per config."""
    return stable_hash([method_cls.name, to_dict(config), train_on, seed if method_cls.trained else None])


def job_precision(requested: str, device: Any) -> str:
    """What the job runs in (``adbench.precision.effective_precision``)."""
    from .precision import effective_precision

    return effective_precision(requested, device)
