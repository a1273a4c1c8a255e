"""The Method interface: a plugin maps images to image scores and anomaly maps, nothing more.

Training-free methods implement :meth:`Method.predict`. Trained methods (auxiliary-data ZSAD) also
set ``trained = True`` and implement ``learnable_module``, ``frozen_features`` and ``training_loss``,
which the training engine (``adbench.training``) drives; the method never loads data or writes results.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

PROTOCOLS = ("zero_shot", "batch_zero_shot", "few_shot")


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


class Method(ABC):
    """Base class of method plugins.

    Class attributes describe the method to the registry and the runner:
    ``name``, ``title`` (display name), ``description``, ``config_cls`` (a dataclass with the paper's defaults),
    ``supports`` (protocols it can run), ``default_protocol``, ``trained``,
    ``backbone_fields`` (config fields holding backbone names) and ``demo_backbones``
    (the backbone each such field takes under ``adbench run --demo``).
    """

    name: ClassVar[str]
    #: Display name as the paper prints it (e.g. "DMA-SAP"); reports show it via the records.
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    config_cls: ClassVar[type]
    supports: ClassVar[frozenset[str]] = frozenset({"zero_shot"})
    default_protocol: ClassVar[str] = "zero_shot"
    trained: ClassVar[bool] = False
    backbone_fields: ClassVar[tuple[str, ...]] = ("backbone",)
    demo_backbones: ClassVar[dict[str, str]] = {}
    #: Gaussian sigma (pixels, at evaluation size) the runner applies to maps; 0 disables.
    smoothing_sigma: ClassVar[float] = 4.0

    def __init__(self, config: Any, device: torch.device | str = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)

    @property
    def image_size(self) -> int:
        """Square input size the runner resizes images to (``config.image_size``)."""
        return int(self.config.image_size)

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
