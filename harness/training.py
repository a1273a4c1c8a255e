"""Training engine of the auxiliary-data (zero-shot) methods: fit once, checkpoint, reuse everywhere.

A trained method is fitted on the TEST split of auxiliary categories (never its target) and the
learnable parts only are saved as safetensors under ``$ADBENCH_HOME/fits/<method>/<key>``, keyed by
the resolved config, the auxiliary data fingerprint, the backbones' weights identities, the seed
and the library versions; every target and rerun loads that file until ``--retrain``.

The loop is generic: the method supplies ``frozen_features`` (computed once per fit through
:class:`~adbench.feature_cache.FeatureCache`), ``training_loss`` and ``learnable_module``; the
optimiser (Adam by default), schedule, epochs, batch size and lr come from the method's config.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import typing
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from . import RESULTS_COMPAT, __version__
from .augment import mosaic_batch
from .config import stable_hash, to_dict
from .data import Category, Sample, load_images, load_masks
from .errors import AdbenchError
from .feature_cache import DEFAULT_MEMORY_LIMIT, FeatureCache
from .methods import Method, Optimizer, Schedule, TrainedConfig
from .paths import cache_dir
from .precision import active_precision
from .precision import autocast as precision_autocast
from .seeding import seed_everything
from .store import atomic_write_bytes, atomic_write_json

OPTIMIZERS: tuple[str, ...] = typing.get_args(Optimizer)
SCHEDULES: tuple[str, ...] = typing.get_args(Schedule)


@dataclass
class FitResult:
    """What a fit produced; the runner copies these fields into every result that used it."""

    key: str  # fit cache key
    path: Path  # safetensors file of the learnable state
    reused: bool  # True when loaded from cache
    losses: list[float]  # mean loss per epoch (when reused: as saved in the fit's JSON log)
    trained_on: list[str]  # ["synthetic/brick", ...]
    seconds: float


@dataclass
class TrainLog:
    """Per-epoch mean loss and its named parts, plus timing of the feature pass and the epochs."""

    losses: list[float] = field(default_factory=list)
    parts: list[dict[str, float]] = field(default_factory=list)
    feature_seconds: float = 0.0
    epoch_seconds: list[float] = field(default_factory=list)
    feature_cache: str = "memory"


def library_versions() -> dict[str, str]:
    """Versions that can change a fit's numbers (part of the fit key)."""
    import importlib.metadata as md

    out = {"results_compat": str(RESULTS_COMPAT), "torch": torch.__version__}
    for dist in ("open_clip_torch", "timm"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "absent"
    return out


def fit_key(method: Method, aux_fingerprint: str, seed: int, extra: dict[str, Any] | None = None) -> str:
    """Cache key of a fit: method, resolved config, auxiliary data, backbone weights, seed, versions,
    and the method's ``key_material`` (``extra``) when it has any."""
    return stable_hash(
        {
            **({"extra": extra} if extra else {}),
            "method": method.name,
            "config": to_dict(method.config),
            "aux": aux_fingerprint,
            "backbones": method.backbone_names(),
            "weights": method.weights,
            "seed": seed,
            "precision": active_precision(method.device),
            "versions": library_versions(),
        },
        length=20,
    )


def fit_paths(method_name: str, key: str) -> tuple[Path, Path]:
    """The safetensors file of a fit and its JSON log beside it."""
    folder = cache_dir("fits", method_name)
    return folder / f"{key}.safetensors", folder / f"{key}.json"


def build_optimizer(config: TrainedConfig, params: Sequence[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Optimiser from the declared training fields: ``optimizer``, ``lr``, ``betas``, ``weight_decay``, ``momentum``."""
    lr, wd = float(config.lr), float(config.weight_decay)
    if config.optimizer in ("adam", "adamw"):
        adam = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        return adam(params, lr=lr, betas=tuple(config.betas), weight_decay=wd)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(config.momentum), weight_decay=wd)
    raise AdbenchError(f"optimizer {config.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")


def build_schedule(
    config: TrainedConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule from ``config.lr_schedule``: constant (default) or cosine to zero."""
    if config.lr_schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    raise AdbenchError(f"lr_schedule {config.lr_schedule!r}: expected one of {', '.join(SCHEDULES)}")


def _autocast(device: torch.device) -> AbstractContextManager[None]:
    """Training follows the job's precision (``adbench.precision``), as prediction does."""
    return precision_autocast(device)


def train(
    method: Method,
    samples: Sequence[Sample] | None,
    masks: torch.Tensor,
    labels: torch.Tensor,
    *,
    seed: int = 0,
    progress: bool = True,
    use_cache: bool = True,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    images: torch.Tensor | None = None,
    extras: dict[str, torch.Tensor] | None = None,
    groups: torch.Tensor | None = None,
) -> TrainLog:
    """Minimise ``method.training_loss`` over its learnable parameters on ``samples``.

    ``masks`` (N, S, S) uint8 and ``labels`` (N,) belong to the samples, S = ``method.image_size``.
    With ``use_cache`` the frozen features are computed once; without it they are recomputed every
    batch (for the benchmark). Images come from ``images`` (N, 3, S, S) when given (then ``samples``
    may be None), else they are read from the samples' files. ``extras`` are per-sample tensors
    (``method.auxiliary_targets``) added to each batch's features. ``groups`` (N,) numbers each
    sample's category, for the method's mosaic augmentation (``Method.mosaic_rate``).
    """
    cfg = method.config
    size = method.image_size
    n = len(images) if images is not None else len(samples or ())
    epochs, batch_size = _check_run_size(method, n)
    if epochs == 0:  # the untrained initialisation, kept as a baseline: `--set METHOD.epochs=0`
        return TrainLog()
    seed_everything(seed)
    module = method.learnable_module()
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise AdbenchError(f"method '{method.name}': learnable_module() has no trainable parameters")
    steps_per_epoch = math.ceil(n / batch_size)
    optimizer = build_optimizer(cfg, params)
    schedule = build_schedule(cfg, optimizer, epochs * steps_per_epoch)
    log = TrainLog()

    features = _BatchFeatures(method, samples, images, extras)
    if use_cache:
        features.cache = _feature_cache(
            features.extract, samples, images, n, batch_size, size, memory_limit, log
        )
    else:
        log.feature_cache = "off"

    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed)
    features.rate = float(method.mosaic_rate(cfg))
    features.groups = groups if groups is not None else torch.zeros(n, dtype=torch.long)
    bar = tqdm(
        range(epochs), disable=not progress, unit="epoch", desc=f"fit {method.name}", dynamic_ncols=True
    )
    try:
        module.train()
        for _epoch in bar:
            t0 = time.perf_counter()
            order = torch.randperm(n, generator=generator)
            total, parts_sum = 0.0, {}
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                feats, batch_masks = features.batch(idx, masks, generator)
                loss, parts = _step(method, feats, batch_masks, labels[idx], optimizer, schedule)
                total += loss * len(idx)
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + float(v) * len(idx)
            _log_epoch(log, total / n, {k: v / n for k, v in parts_sum.items()}, t0)
            bar.set_postfix(loss=f"{log.losses[-1]:.4f}")
    finally:
        module.eval()
        if features.cache is not None:
            features.cache.close()
    return log


class _BatchFeatures:
    """What one training batch feeds ``training_loss``: frozen features (from the cache, else computed
    now from the images) plus the per-sample extras."""

    def __init__(
        self,
        method: Method,
        samples: Sequence[Sample] | None,
        images: torch.Tensor | None,
        extras: dict[str, torch.Tensor] | None,
    ) -> None:
        self.method, self.samples, self.images, self.extras = method, samples, images, extras
        self.cache: FeatureCache | None = None
        #: Mosaic augmentation (``Method.mosaic_rate``): the rate, and each sample's category index.
        self.rate = 0.0
        self.groups: torch.Tensor | None = None

    def load(self, indices: torch.Tensor) -> torch.Tensor:
        """The images of ``indices`` at the method's input size (for mosaics)."""
        if self.images is not None:
            return self.images[indices]
        return load_images([self.samples[i] for i in indices], self.method.image_size)

    def batch(
        self, idx: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """A training batch's features and masks, some samples replaced by mosaics at ``rate``."""
        feats, batch_masks = self(idx), masks[idx]
        if self.rate > 0:
            feats, batch_masks = mosaic_batch(
                idx, self.groups, self.rate, generator, self.load, masks, self.extract, feats, batch_masks
            )
        return feats, batch_masks

    def extract(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        device = self.method.device
        with torch.no_grad(), _autocast(device):
            return self.method.frozen_features(batch.to(device))

    def __call__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        device, size = self.method.device, self.method.image_size
        if self.cache is not None:
            feats = self.cache.get(idx, device)
        else:
            images, samples = self.images, self.samples
            batch = images[idx] if images is not None else load_images([samples[i] for i in idx], size)
            feats = self.extract(batch)
        if self.extras:
            feats = {**feats, **{k: v[idx].to(device) for k, v in self.extras.items()}}
        return feats


def _check_run_size(method: Method, n: int) -> tuple[int, int]:
    """The config's epochs and batch size, refused (one line) when they or the image count cannot train."""
    epochs, batch_size = int(method.config.epochs), int(method.config.batch_size)
    if n == 0:
        raise AdbenchError(f"method '{method.name}': no auxiliary images to train on")
    if epochs < 0 or batch_size < 1:
        raise AdbenchError(
            f"method '{method.name}': epochs must be >= 0 and batch_size >= 1 (got {epochs}, {batch_size})"
        )
    return epochs, batch_size


def _log_epoch(log: TrainLog, loss: float, parts: dict[str, float], started: float) -> None:
    """Record one epoch's mean loss, its named parts and its duration."""
    log.losses.append(loss)
    log.parts.append(parts)
    log.epoch_seconds.append(time.perf_counter() - started)


def _feature_cache(
    extract: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    samples: Sequence[Sample] | None,
    images: torch.Tensor | None,
    n: int,
    batch_size: int,
    size: int,
    memory_limit: int,
    log: TrainLog,
) -> FeatureCache:
    """The frozen features of every training image, computed once (timed into ``log``)."""
    t0 = time.perf_counter()
    source = (
        images.split(batch_size)
        if images is not None
        else (load_images(samples[s : s + batch_size], size) for s in range(0, n, batch_size))
    )
    cache = FeatureCache.build(extract, source, n, memory_limit=memory_limit)
    log.feature_seconds = time.perf_counter() - t0
    log.feature_cache = "disk-float16" if cache.on_disk else "memory"
    return cache


def _step(
    method: Method,
    feats: dict[str, torch.Tensor],
    masks: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
) -> tuple[float, dict[str, Any]]:
    """One optimisation step on one batch: its loss and the loss's named parts."""
    device = method.device
    with _autocast(device):
        out = method.training_loss(feats, masks.to(device), labels.to(device))
    loss, parts = out if isinstance(out, tuple) else (out, {})
    if not torch.isfinite(loss):
        raise AdbenchError(f"method '{method.name}': training loss became {loss.item()} (lower the lr?)")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    schedule.step()
    return float(loss.detach()), parts


def load_auxiliary(
    aux: Sequence[tuple[str, Category]], size: int, mask_resize: str = "nearest"
) -> tuple[list[Sample], torch.Tensor, torch.Tensor, list[str]]:
    """Test samples of the auxiliary categories, their masks at ``size`` (uint8, resized by
    ``mask_resize``: the method's ``train_mask_resize``) and labels."""
    samples = [s for _, cat in aux for s in cat.test]
    if not samples:
        raise AdbenchError("training: the auxiliary categories have no test images")
    masks = load_masks(samples, size, mask_resize)
    labels = torch.tensor([s.label for s in samples], dtype=torch.long)
    return samples, masks, labels, [f"{d}/{cat.name}" for d, cat in aux]


def save_fit(method: Method, key: str, meta: dict[str, Any]) -> Path:
    """Write the learnable state (safetensors) and its JSON log atomically; returns the safetensors path."""
    path, log_path = fit_paths(method.name, key)
    state = {k: v.contiguous() for k, v in method.learnable_state().items()}  # already detached, on CPU
    atomic_write_bytes(
        path, save(state, metadata={"key": key, "method": method.name, "adbench": __version__})
    )
    atomic_write_json(log_path, {"key": key, "method": method.name, **meta})
    return path


def load_fit(method: Method, path: Path) -> None:
    """Load a saved learnable state into ``method`` (on its device)."""
    state = load_file(str(path), device=str(method.device))
    try:
        method.load_learnable_state(state)
    except (RuntimeError, KeyError) as exc:
        raise AdbenchError(f"fitted parameters {path} do not match method '{method.name}': {exc}") from None
    method.learnable_module().eval()


def read_fit_log(method_name: str, key: str) -> dict[str, Any]:
    """The JSON log saved next to a fit (losses, config, trained_on, seconds)."""
    _, log_path = fit_paths(method_name, key)
    return json.loads(log_path.read_text()) if log_path.exists() else {}


def ensure_fitted(
    method: Method,
    aux: list[tuple[str, Category]],
    *,
    aux_fingerprint: str,
    seed: int,
    retrain: bool = False,
    progress: bool = True,
    claim: Callable[[str], AbstractContextManager[object]] | None = None,
) -> FitResult:
    """Fit `method` on the TEST splits of the auxiliary categories (images, masks, labels at
    method.image_size), or load a cached fit; afterwards `method` is ready to predict.

    ``claim(fit_key)`` (the results store's blocking claim) is held while the fit is looked up and
    trained, so parallel workers that need the same fit train it once: the others wait, then load it.
    """
    if not method.trained:
        raise AdbenchError(f"method '{method.name}' is training-free; nothing to fit")
    t0 = time.perf_counter()
    key = fit_key(
        method, aux_fingerprint, seed, method.key_material(method.config, [c.object_name for _, c in aux])
    )
    with claim(key) if claim is not None else contextlib.nullcontext():
        return _load_or_train(method, aux, key, aux_fingerprint, seed, retrain, progress, t0)


def _load_or_train(
    method: Method,
    aux: list[tuple[str, Category]],
    key: str,
    aux_fingerprint: str,
    seed: int,
    retrain: bool,
    progress: bool,
    t0: float,
) -> FitResult:
    path, log_path = fit_paths(method.name, key)
    trained_on = [f"{d}/{cat.name}" for d, cat in aux]
    if path.exists() and log_path.exists() and not retrain:
        load_fit(method, path)
        losses = list(read_fit_log(method.name, key).get("losses", []))
        return FitResult(key, path, True, losses, trained_on, time.perf_counter() - t0)
    samples, masks, labels, _ = load_auxiliary(
        aux, method.image_size, method.train_mask_resize(method.config)
    )
    extras = method.auxiliary_targets([cat for _, cat in aux])
    groups = torch.tensor([i for i, (_, cat) in enumerate(aux) for _ in cat.test], dtype=torch.long)
    log = train(method, samples, masks, labels, seed=seed, progress=progress, extras=extras, groups=groups)
    seconds = time.perf_counter() - t0
    meta = {
        "losses": log.losses,
        "loss_parts": log.parts,
        "config": to_dict(method.config),
        "trained_on": trained_on,
        "n_images": len(samples),
        "n_anomalous": int(labels.sum()),
        "seconds": round(seconds, 3),
        "feature_seconds": round(log.feature_seconds, 3),
        "epoch_seconds": [round(s, 3) for s in log.epoch_seconds],
        "feature_cache": log.feature_cache,
        "seed": seed,
        "aux_fingerprint": aux_fingerprint,
        "backbones": method.backbone_names(),
        "weights": method.weights,
        "versions": library_versions(),
        "device": str(method.device),
    }
    path = save_fit(method, key, meta)
    return FitResult(key, path, False, list(log.losses), trained_on, seconds)
