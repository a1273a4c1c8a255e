"""The Method interface: a plugin maps images to image scores and anomaly maps, nothing more.

Training-free methods implement :meth:`Method.predict`. Trained methods (auxiliary-data ZSAD) also
set ``trained = True`` and implement ``learnable_module``, ``frozen_features`` and ``training_loss``,
which the training engine (``adbench.training``) drives; the method never loads data or writes results.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import lazy_loader as lazy

from .config import setting
from .protocol_catalog import DEFAULT_PROTOCOL
from .protocol_catalog import PROTOCOLS as PROTOCOL_SPECS

torch = lazy.load("torch")  # imported on first use: `adbench list` / `--help` stay torch-free

if TYPE_CHECKING:
    from .data import Category
    from .fidelity import Choice

#: Protocol names, from the one declaration (``protocol_catalog.PROTOCOLS``).
PROTOCOLS = tuple(PROTOCOL_SPECS)


#: The optimisers and learning-rate schedules the training engine builds (the one list of each).
Optimizer = Literal["adam", "adamw", "sgd"]
Schedule = Literal["constant", "cosine"]


def _field_names(config: Any) -> set[str]:
    """The fields a config dataclass declares (optional contracts are read from the declaration)."""
    return {f.name for f in dataclasses.fields(config)} if dataclasses.is_dataclass(config) else set()


@dataclass
class MethodConfig:
    """Fields the runner reads from every method config; a method's config subclasses this and
    overrides the defaults with its paper's values."""

    image_size: int = setting(224, ge=14, le=4096, doc="square input size (px) images are resized to")


@dataclass
class TrainedConfig(MethodConfig):
    """Fields the training engine reads (``adbench.training``); a trained method's config subclasses this."""

    optimizer: Optimizer = "adam"
    lr: float = setting(1e-3, gt=0, doc="learning rate")
    betas: tuple[float, ...] = setting((0.9, 0.999), ge=0, lt=1, doc="Adam betas (torch defaults)")
    weight_decay: float = setting(0.0, ge=0)
    momentum: float = setting(0.9, ge=0, lt=1, doc="SGD momentum")
    lr_schedule: Schedule = "constant"
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
    #: Sample ids of ``references`` (few-shot), in order; the record lists them.
    reference_ids: list[str] | None = None


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
    supports: ClassVar[frozenset[str]] = frozenset({DEFAULT_PROTOCOL})
    default_protocol: ClassVar[str] = DEFAULT_PROTOCOL
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
    #: True when ``predict`` already smooths its maps, with sigma :meth:`map_sigma` (px at its input
    #: size): the engine then applies no Gaussian of its own, whatever the evaluation protocol says,
    #: and the record's ``smoothing_sigma`` is the method's (one owner, applied once).
    smooths_own_maps: ClassVar[bool] = False
    #: The official code (repository @ commit, files) or paper the defaults follow.
    official_source: ClassVar[str] = ""
    #: Recorded choices against that source (``adbench.fidelity.Choice``); docs/fidelity.md lists them.
    choices: ClassVar[tuple[Choice, ...]] = ()

    def __init__(self, config: Any, device: torch.device | str = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)

    @property
    def image_size(self) -> int:
        """Square input size the runner resizes images to (``config.image_size``)."""
        return int(self.config.image_size)

    def input_shape(self, width: int, height: int) -> tuple[int, int] | None:
        """(H, W) an image of ``width`` x ``height`` px is resized to before ``predict``; None (default)
        is the square ``image_size``. A method whose code keeps the aspect ratio overrides it."""
        return None

    @classmethod
    def published_name(cls, config: Any) -> str | None:
        """The method's name in the published tables (``published_results.csv``) for this config, or
        None when no paper reports this configuration: the published rows ran the default backbones,
        so a config with another backbone (a tiny random one, a smaller CLIP) pairs with none."""
        return (cls.display_name or None) if cls.runs_published_backbones(config) else None

    @classmethod
    def runs_published_backbones(cls, config: Any) -> bool:
        """Whether every backbone field holds its default (the backbone the paper's numbers ran)."""
        defaults = {f.name: f.default for f in dataclasses.fields(config)}
        return all(
            getattr(config, name) == defaults[name] for name in cls.backbone_fields if name in defaults
        )

    @classmethod
    def default_auxiliary(cls, target: str) -> list[str] | None:
        """The method's own auxiliary datasets for ``target`` (its paper's pairing, e.g. a leave-one-out),
        or None: the target dataset's declared default (``Dataset.auxiliary``)."""
        return None

    @classmethod
    def config_for_dataset(cls, config: Any, dataset: str, auxiliary: Sequence[str] = ()) -> Any:
        """The config a job on ``dataset`` runs with (a paper's per-dataset preset); by default ``config``.
        ``auxiliary``: the datasets a trained method fits on for this target (``--train-on`` or the
        target's declared default)."""
        return config

    @classmethod
    def weights_identity(cls, config: Any) -> str | None:
        """An explicit weights file for the method's single backbone: the config's ``weights`` field
        when its config declares one (a local checkpoint), else None (the backbone's own weights)."""
        return config.weights if "weights" in _field_names(config) else None

    @classmethod
    def map_sigma(cls, config: Any) -> float:
        """Gaussian sigma for the maps: the config's ``smoothing_sigma`` when it declares one, else the
        class's. A method with ``smooths_own_maps`` returns the sigma its ``predict`` applies."""
        return float(
            config.smoothing_sigma if "smoothing_sigma" in _field_names(config) else cls.smoothing_sigma
        )

    @classmethod
    def train_mask_resize(cls, config: Any) -> str:
        """How the training engine resizes auxiliary masks to the input size: ``nearest`` (default) or
        ``bilinear`` (resized as 0/255 and thresholded at 0.5, as torchvision-based official code does)."""
        return "nearest"

    @classmethod
    def mosaic_rate(cls, config: Any) -> float:
        """Fraction of auxiliary samples the training engine replaces, each epoch, by a 2 x 2 mosaic of
        four images of the same category (APRIL-GAN's augmentation); 0 (default) disables it."""
        return 0.0

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

    def parameter_breakdown(self) -> list[str]:
        """Lines for ``adbench info`` setting the built model's parameter groups beside the ones its
        paper prints (called after ``setup`` on random backbones); none by default."""
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
