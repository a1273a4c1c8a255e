"""The Method interface: a plugin maps images to image scores and anomaly maps, nothing more.

Training-free methods implement :meth:`Method.predict`. Trained methods (auxiliary-data ZSAD) also
set ``trained = True`` and implement ``learnable_module``, ``frozen_features`` and ``training_loss``,
which the training engine (``adbench.training``) drives; the method never loads data or writes results.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import lazy_loader as lazy

from .config import setting

torch = lazy.load("torch")  # imported on first use: `adbench list` / `--help` stay torch-free

if TYPE_CHECKING:
    from .data import Category

PROTOCOLS = ("zero_shot", "batch_zero_shot", "few_shot")


@dataclass
class MethodConfig:
    """Fields the runner reads from every method config; a method's config subclasses this and
    overrides the defaults with its paper's values."""

    image_size: int = setting(224, ge=14, le=4096, doc="square input size (px) images are resized to")


@dataclass
class TrainedConfig(MethodConfig):
    """Fields the training engine reads (``adbench.training``); a trained method's config subclasses this."""

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = setting(1e-3, gt=0, doc="learning rate")
    betas: tuple[float, ...] = setting((0.9, 0.999), ge=0, lt=1, doc="Adam betas (torch defaults)")
    weight_decay: float = setting(0.0, ge=0)
    momentum: float = setting(0.9, ge=0, lt=1, doc="SGD momentum")
    lr_schedule: Literal["constant", "cosine"] = "constant"
    batch_size: int = setting(8, ge=1)
    epochs: int = setting(10, ge=0, doc="0 keeps the untrained initialisation (a baseline)")


@dataclass
class Prediction:
    """Outputs for N query images: ``scores`` (N,), higher = more anomalous; ``maps`` (N, h, w) or None.

    Maps may come at any resolution; the runner resizes them to the evaluation size.
    """

    scores: torch.Tensor
    maps: torch.Tensor | None = None


@dataclass
class Context:
    """What the protocol lets the method see besides the query images.

    ``references`` are the few-shot normal images (k, 3, H, W) in [0, 1]; in batch zero-shot the
    query batch is the whole test split of the category and serves as its own reference set.
    """

    protocol: str
    category: str
    seed: int = 0
    references: torch.Tensor | None = None
    #: The object the category shows, in words (``Dataset.object_name``), for text prompts.
    object_name: str = ""


class Method(ABC):
    """Base class of method plugins.

    Class attributes describe the method to the registry and the runner:
    ``name``, ``display_name``, ``description``, ``config_cls`` (a dataclass with the paper's defaults),
    ``supports`` (protocols it can run), ``default_protocol``, ``trained``,
    ``backbone_fields`` (config fields holding backbone names) and ``demo_backbones``
    (the backbone each such field takes under ``adbench run --demo``). ``config_cls`` subclasses :class:`MethodConfig`
    (:class:`TrainedConfig` when ``trained``); :meth:`backbone_requirements` declares the backbone
    capabilities the method calls.
    """

    name: ClassVar[str]
    #: Name as the method's paper prints it ("DMA-SAP"); reports use it, the name when empty.
    display_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    config_cls: ClassVar[type]
    supports: ClassVar[frozenset[str]] = frozenset({"zero_shot"})
    default_protocol: ClassVar[str] = "zero_shot"
    trained: ClassVar[bool] = False
    backbone_fields: ClassVar[tuple[str, ...]] = ("backbone",)
    demo_backbones: ClassVar[dict[str, str]] = {}
    #: Other ``--set`` values ``--demo`` applies when the user sets none (e.g. the tiny backbone's input
    #: size and one epoch for methods whose training runs the whole tower per step); recorded as run.
    demo_settings: ClassVar[dict[str, str]] = {}
    #: GPUs one job of this method asks a cluster for (Ray ``num_gpus``); 0 on CPU-only clusters.
    gpus: ClassVar[float] = 1.0
    #: Gaussian sigma (pixels, at evaluation size) the runner applies to maps; 0 disables.
    smoothing_sigma: ClassVar[float] = 4.0

    def __init__(self, config: Any, device: torch.device | str = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)

    @property
    def image_size(self) -> int:
        """Square input size the runner resizes images to (``config.image_size``)."""
        return int(self.config.image_size)

    @classmethod
    def published_name(cls, config: Any) -> str | None:
        """The method's name in the published tables (``published_results.csv``) for this config, or
        None when no paper reports this configuration."""
        return cls.display_name or None

    @classmethod
    def config_for_dataset(cls, config: Any, dataset: str) -> Any:
        """The config a job on ``dataset`` runs with (a paper's per-dataset preset); by default ``config``."""
        return config

    @classmethod
    def map_sigma(cls, config: Any) -> float:
        """Gaussian sigma for the maps: the config's ``smoothing_sigma`` when it declares one, else the class's."""
        return float(getattr(config, "smoothing_sigma", cls.smoothing_sigma))

    @classmethod
    def backbone_requirements(cls, config: Any) -> dict[str, frozenset[str]]:
        """Config field -> backbone capabilities (``adbench.backbones.CAPABILITIES``) the method calls
        under ``config``; the runner checks them at plan time, before building anything."""
        return {}

    @classmethod
    def key_material(cls, config: Any, object_names: Sequence[str]) -> dict[str, Any]:
        """Inputs outside the config that change the method's numbers for these object names (e.g. a
        knowledge base's hash); the runner adds them to job and fit keys. Empty for most methods."""
        return {}

    @classmethod
    def info_lines(cls, config: Any) -> list[str]:
        """Extra lines for ``adbench info`` (e.g. a shipped knowledge base's version); none by default."""
        return []

    def backbone_names(self) -> dict[str, str]:
        """Config field -> backbone name, for the job key and the weights record."""
        return {f: getattr(self.config, f) for f in self.backbone_fields}

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Build backbones and modules. Called once before fit/predict; may be slow."""

    @abstractmethod
    def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
        """Score ``images`` (N, 3, H, W) in [0, 1] under the protocol described by ``ctx``."""

    # --- trained methods only -------------------------------------------------------------
    # The training engine (adbench.training) drives these: it computes ``frozen_features`` of the
    # auxiliary images once per fit (the backbones are frozen, so every epoch reuses them), then
    # minimises ``training_loss`` over the parameters of ``learnable_module`` and checkpoints
    # ``learnable_state``. The method never loads data, picks an optimiser or writes results.
    #: False builds backbones randomly initialised (``adbench info`` counts parameters without weights).
    pretrained_backbones: bool = True

    def learnable_module(self) -> torch.nn.Module:
        """The module holding every learnable parameter (never a frozen backbone)."""
        raise TypeError(f"method '{self.name}' is training-free and has no learnable parameters")

    def frozen_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Frozen-backbone features of ``images`` (N, 3, H, W) in [0, 1], each (N, ...); run without grad."""
        raise TypeError(f"method '{self.name}' is training-free and has no frozen_features()")

    def training_loss(
        self, features: dict[str, torch.Tensor], masks: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, float]]:
        """Loss of one batch: ``features`` from :meth:`frozen_features`, ``masks`` (N, H, W) in {0, 1},
        ``labels`` (N,) in {0, 1}; optionally with named parts (e.g. focal, dice) for the log."""
        raise TypeError(f"method '{self.name}' is training-free and has no training_loss()")

    def auxiliary_targets(self, categories: Sequence[Category]) -> dict[str, torch.Tensor]:
        """Per-sample tensors (N, ...) in the order of the auxiliary test samples (category by category)
        that the training engine hands to :meth:`training_loss` beside the features, e.g. each image's class."""
        return {}

    def learnable_state(self) -> dict[str, torch.Tensor]:
        """The learnable parameters only (never frozen backbones), for safetensors checkpoints."""
        if not self.trained:
            return {}
        return {k: v.detach().cpu().clone() for k, v in self.learnable_module().state_dict().items()}

    def load_learnable_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`learnable_state` returned (strict: every key must match)."""
        if self.trained:
            self.learnable_module().load_state_dict(state, strict=True)

    @property
    def weights(self) -> dict[str, str]:
        """Backbone name -> weights identity ('random' for random init); filled in by setup()."""
        return getattr(self, "_weights", {})
