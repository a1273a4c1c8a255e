"""What describes a backbone without building it: its capabilities, its spec, where its taps go.

Torch-free on purpose: plugins declare specs and methods declare requirements at import time, and
``adbench list`` / ``--help`` must not pay for importing torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Backbone

#: What a backbone can do beyond patch tokens; methods declare what they call in
#: ``Method.backbone_requirements`` and the runner checks it at plan time, before building anything.
CAPABILITIES: dict[str, str] = {
    "text": "text tower: encode_text / encode_text_embeddings (prompt learning)",
    "deep_text_prompts": "learnable tokens inserted at the input of text blocks (encode_text_embeddings deep_prompts)",
    "projection": "patch tokens projected into the joint image-text space (forward_tokens project=True)",
    "vv": "V-V attention path in the last blocks (forward_tokens vv_blocks=n; CLIP Surgery / DPAM)",
    "cls_attention": "last block's CLS-to-patch attention (forward_tokens with_attention=True)",
    "windows": "image embedding of the vision tower run on subsets of patch tokens (encode_windows; WinCLIP)",
}
CLIP_CAPABILITIES = frozenset(CAPABILITIES)
VIT_CAPABILITIES = frozenset({"cls_attention"})


@dataclass(frozen=True)
class BackboneSpec:
    """A named backbone: how to build it and where its weights come from (timm-style config as data)."""

    name: str
    description: str
    family: str  # "open_clip" | "timm" | "efficientnet" | "tiny"
    builder: Callable[..., Backbone]
    model_name: str = ""  # the library's own name, e.g. "ViT-L-14-336-quickgelu"
    pretrained: str | None = None  # library tag, e.g. "openai"; None for random-only models
    weight_files: tuple[str, ...] = ()  # file names looked for under $ADBENCH_WEIGHTS
    capabilities: frozenset[str] = frozenset()  # keys of CAPABILITIES
    patch_size: int = 16
    default_size: int = 224
    num_blocks: int = 12
    kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.capabilities) - set(CAPABILITIES)
        if unknown:
            raise ValueError(f"backbone '{self.name}': unknown capabilities {sorted(unknown)}")

    @property
    def has_text(self) -> bool:
        """Whether the backbone has a text tower (the ``text`` capability)."""
        return "text" in self.capabilities


def require_text_tower(backbone: Backbone, option: str, value: str) -> None:
    """Refuse a backbone without a text tower for a method that prompts it (one line naming the option);
    the one place a method checks for the ``text`` capability at setup."""
    if not backbone.has_text:
        from ..errors import AdbenchError

        raise AdbenchError(f"{option}={value!r}: needs a CLIP model with a text tower")


def scale_taps(taps: tuple[int, ...], paper_depth: int, depth: int) -> tuple[int, ...]:
    """Taps given for a ``paper_depth``-block model, moved proportionally to a ``depth``-block one
    (the paper's ViT-L/14 layers on a tiny or ViT-B backbone); unchanged when the depths agree."""
    if depth == paper_depth:
        return tuple(taps)
    return tuple(min(depth, max(1, round(t * depth / paper_depth))) for t in taps)
