"""The data model every dataset plugin yields, and image/mask loading shared by all of them.

A dataset has categories; a category has a train split (normal images only) and a test split of
samples with a label (0 normal, 1 anomalous), a defect type and, where the dataset has them, a
binary pixel mask aligned with the image. Images are read with Pillow in RGB; masks are
binarised with ``> 0`` and resized nearest-neighbour (stays binary) or bilinearly then > 0.5
(the AnomalyCLIP lineage), or kept at their own resolution (``adbench.evaluation``).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import lazy_loader as lazy
import numpy as np
from PIL import Image

from .content_hash import file_digests
from .errors import AdbenchError
from .image_io import PIL_ERRORS, image_size, load_float_rgb, mask_array
from .paths import data_root

if TYPE_CHECKING:
    from .dataset_tools import Issue

torch = lazy.load("torch")  # imported on first use: `adbench list` / `--help` stay torch-free


@dataclass(frozen=True)
class Sample:
    """One image of a category. ``mask_path`` is None for normal images and mask-less datasets.

    ``anomaly_type`` groups defects for per-type results ("structural", "logical", ...) where a
    dataset declares it; None for normal images and datasets that do not.
    """

    id: str
    image_path: Path
    label: int
    defect_type: str = "good"
    mask_path: Path | None = None
    anomaly_type: str | None = None


@dataclass
class Category:
    """A category's splits. ``has_masks`` says whether pixel metrics are defined for it;
    ``difficulty`` is the dataset's own label for it, where it declares one."""

    name: str
    train: list[Sample]
    test: list[Sample]
    has_masks: bool = True
    notes: list[str] = field(default_factory=list)
    #: The object shown, in words, for text prompts; the runner sets the dataset's ``object_name``.
    object_name: str = ""
    difficulty: str | None = None

    def __post_init__(self) -> None:
        if not self.object_name:
            self.object_name = self.name.replace("_", " ")

    @property
    def num_anomalous(self) -> int:
        return sum(s.label for s in self.test)


class Dataset(ABC):
    """Base class of dataset plugins: names its categories and loads one category at a time.

    Subclasses set ``name``, ``description``, ``task`` (image / pixel / both) and implement
    :meth:`categories` and :meth:`load_category`. ``root`` is where the user unpacked the data.
    """

    name: ClassVar[str]
    #: Human name for messages and report rows ("MVTec AD"); the name when empty.
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: Report grouping, as the papers split their tables: "industrial", "medical" or "other".
    group: ClassVar[str] = "other"
    #: Row order inside the group (the papers' table order).
    order: ClassVar[int] = 1000
    task: ClassVar[str] = "both"
    version: ClassVar[str] = "1"
    #: Name of the preprocessing variant the numbers rely on (e.g. KSDD thirds); recorded per result.
    variant: ClassVar[str] = "native"
    #: Mask size policy: False (default) refuses a mask whose size differs from its image's; a plugin
    #: whose preprocessing is known to change sizes (e.g. KSDD/DAGM conversions) may set True.
    allow_mask_resize: ClassVar[bool] = False
    #: Published counts for ``datasets check`` (e.g. {"categories": 15, "test_images": 1725}).
    published_counts: ClassVar[dict[str, int]] = {}
    #: Category -> the object it shows, in words, for text prompts ("pcb1" -> "printed circuit board").
    #: Lists every published category, so name-aware methods can be checked without the data.
    object_names: ClassVar[dict[str, str]] = {}
    #: What ``adbench run --demo`` runs on this dataset (``adbench.demo.DemoConfig``s); empty for most.
    demo: ClassVar[tuple] = ()
    #: Where its files come from (``adbench.sources.Source``: URL, size, checksum, licence); empty for
    #: generated data. Read by ``adbench datasets download`` and ``adbench datasets list --sources``.
    sources: ClassVar[tuple] = ()
    #: The auxiliary dataset(s) trained methods fit on for this target when ``--train-on`` is not
    #: given (the papers': MVTec AD for every target); the dataset's own name trains on its other fold.
    auxiliary: ClassVar[tuple[str, ...]] = ("mvtec",)

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root else self.default_root()

    @classmethod
    def object_name(cls, category: str) -> str:
        """The object a category shows, in words: ``object_names``, else the name with ``_`` -> space."""
        return cls.object_names.get(category) or category.replace("_", " ")

    @classmethod
    def default_auxiliary(cls) -> list[str]:
        """The declared default auxiliary datasets (``auxiliary``), as ``--train-on`` would name them."""
        return list(cls.auxiliary)

    @classmethod
    def default_root(cls) -> Path | None:
        """The root used when none is given: ``$ADBENCH_DATA/<name>``."""
        return data_root(cls.name)

    @abstractmethod
    def categories(self) -> list[str]:
        """Names of the categories, in a stable order."""

    @abstractmethod
    def load_category(self, name: str) -> Category:
        """Train and test samples of one category; raise AdbenchError on an unknown name."""

    # --- optional hooks of ``adbench datasets check`` / ``export-meta`` (defaults: nothing extra) ------
    def inspect_category(self, name: str) -> tuple[Category, list[Issue]]:
        """A category and the problems found while scanning it (``datasets check``); by default the
        loaded category and no problems."""
        return self.load_category(name), []

    def raw_counts(self) -> dict[str, int]:
        """Counts of the raw files behind a prepared variant (compared with published counts); none by default."""
        return {}

    @property
    def data_dir(self) -> Path | None:
        """The folder holding the files the samples point to (``meta.json`` goes there); the root by default."""
        return self.root

    def category_fingerprint(self, category: Category) -> str:
        """Hash of one category's samples: ids, labels, relative paths and each file's content digest.

        Content digests are cached by path and stat (:mod:`adbench.content_hash`), so an unchanged
        dataset costs a directory walk; a rewritten mask with the same size still changes the hash.
        """
        files = [p for s in [*category.train, *category.test] for p in (s.image_path, s.mask_path) if p]
        try:
            digests = file_digests(files)
        except OSError as exc:
            raise AdbenchError(f"dataset '{self.name}': cannot read {exc.filename}: {exc.strerror}") from None
        h = hashlib.sha256(f"{category.name}|{category.has_masks}".encode())
        for split, samples in (("train", category.train), ("test", category.test)):
            for s in samples:
                h.update(f"{split}|{s.id}|{s.label}|{s.defect_type}\n".encode())
                for p in (s.image_path, s.mask_path):
                    if p is not None:
                        h.update(f"{_relative(p, self.root)}|{digests[Path(p)]}\n".encode())
        return h.hexdigest()[:16]

    def fingerprint(
        self,
        loaded: Sequence[Category] | None = None,
        load: Callable[[str], Category] | None = None,
    ) -> str:
        """Hash of every category's :meth:`category_fingerprint`: changes when the data on disk changes.

        ``loaded`` passes categories the caller already holds (``load`` a caching loader), so nothing is
        scanned twice. A category that fails to load contributes its error, so a broken category the
        run does not select neither aborts the run nor makes the key unstable.
        """
        h = hashlib.sha256(f"{self.name}:{self.version}:{self.variant}".encode())
        if loaded is not None:
            parts = [(c.name, self.category_fingerprint(c)) for c in loaded]
        else:
            parts = []
            for name in self.categories():
                try:
                    part = self.category_fingerprint((load or self.load_category)(name))
                except AdbenchError as exc:
                    part = "unloadable:" + hashlib.sha256(str(exc).encode()).hexdigest()[:16]
                parts.append((name, part))
        for name, part in parts:
            h.update(f"{name}={part}\n".encode())
        return h.hexdigest()[:16]

    def check_category_name(self, name: str) -> None:
        """Raise a one-line error (with the nearest name) for an unknown category."""
        names = self.categories()
        if name not in names:
            import difflib

            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; categories: {', '.join(names)}"
            raise AdbenchError(f"dataset '{self.name}' has no category '{name}'{hint}")


def _relative(path: Path, root: Path | None) -> str:
    try:
        return str(Path(path).relative_to(root)) if root else Path(path).name
    except ValueError:
        return Path(path).name


def read_rgb(path: str | Path) -> Image.Image:
    """Open an image as RGB, turning any read failure into a one-line error naming the file."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except PIL_ERRORS as exc:
        raise AdbenchError(f"cannot read image {path}: {exc.__class__.__name__}: {exc}") from None


def load_image(path: str | Path, size: int | tuple[int, int]) -> torch.Tensor:
    """An image as a float tensor (3, size, size) (or (3, H, W) for ``size`` (H, W)) in [0, 1], resized
    with bicubic interpolation.

    16/32-bit and float files are scaled by their range (:mod:`adbench.image_io`), never clipped.
    """
    return torch.from_numpy(load_float_rgb(path, size)).permute(2, 0, 1).clamp_(0, 1)


def load_mask(
    path: str | Path | None,
    size: int | None,
    resize: str = "nearest",
    image_path: str | Path | None = None,
    allow_mask_resize: bool = False,
) -> torch.Tensor:
    """A binary mask as uint8: ``> 0`` at any bit depth, resized to (size, size) or kept at its own
    resolution when ``size`` is None.

    ``resize`` ``nearest`` keeps it binary; ``bilinear`` resizes the 0/255 mask bilinearly (PIL, as
    torchvision's Resize in the AnomalyCLIP lineage) and thresholds at 0.5. ``None`` (a normal image)
    gives an all-zero mask, of ``image_path``'s size when ``size`` is None. With ``image_path``, a mask
    whose size differs from its image's is a one-line error naming both files (a stretched mask gives
    wrong pixel scores), unless the dataset declares ``allow_mask_resize``.
    """
    if path is None:
        if size is None:
            if image_path is None:
                raise ValueError("load_mask: a normal image at its own size needs image_path")
            w, h = image_size(image_path)
            return torch.zeros(h, w, dtype=torch.uint8)
        return torch.zeros(size, size, dtype=torch.uint8)
    arr = mask_array(path)
    if image_path is not None and not allow_mask_resize:
        img_w, img_h = image_size(image_path)
        if (img_h, img_w) != arr.shape:
            raise AdbenchError(
                f"mask {path} is {arr.shape[1]}x{arr.shape[0]} but image {image_path} is {img_w}x{img_h}; "
                "fix the mask, or use a dataset plugin that declares allow_mask_resize = True"
            )
    binary = Image.fromarray((arr * 255).astype(np.uint8))
    if size is not None:
        binary = binary.resize((size, size), Image.BILINEAR if resize == "bilinear" else Image.NEAREST)
    return torch.from_numpy((np.asarray(binary) > 127).astype(np.uint8))


def load_images(samples: Sequence[Sample], size: int) -> torch.Tensor:
    """Stack the images of several samples into (N, 3, size, size), decoded in parallel threads and
    served from the decoded-image cache when it is on (:mod:`adbench.input_pipeline`)."""
    from .input_pipeline import load_all

    return load_all([s.image_path for s in samples], size)


def load_masks(
    samples: Sequence[Sample], size: int | None, resize: str = "nearest", allow_mask_resize: bool = False
) -> torch.Tensor | list[torch.Tensor]:
    """Stack the masks of several samples into (N, size, size) uint8; with ``size`` None, a list of
    each mask at its own resolution (sizes may differ, non-square kept). Unless ``allow_mask_resize``
    (a dataset's declared policy), each mask must match its image's size. Decoded in parallel threads."""
    from .input_pipeline import parallel_map

    masks = parallel_map(
        lambda s: load_mask(s.mask_path, size, resize, s.image_path, allow_mask_resize), samples
    )
    if size is None:
        return masks
    return torch.stack(masks) if samples else torch.empty(0, size, size, dtype=torch.uint8)
