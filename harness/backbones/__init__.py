"""Backbones: the common interface (``base``) and the builders of each library family.

``build_backbone(name)`` looks the spec up in the plugin registry, resolves the weights
(``weights``: explicit file, ``$ADBENCH_WEIGHTS``, library cache, download), builds, freezes and
caches the model per (name, weights identity, device), so two methods sharing a backbone build it once.
``resolve_backbone_identity(name)`` gives the weights identity for job keys without building anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader as lazy

from .spec import CAPABILITIES, CLIP_CAPABILITIES, VIT_CAPABILITIES, BackboneSpec, scale_taps

if TYPE_CHECKING:
    from .base import Backbone, Tokens
    from .weights import WeightSource

torch = lazy.load("torch")  # imported on first use: `adbench list` / `--help` stay torch-free
# The torch-bound names load with their module on first access (SPEC 1 lazy attributes).
__getattr__, _dir, _ = lazy.attach(
    __name__, submod_attrs={"base": ["Backbone", "Tokens"], "weights": ["WeightSource", "resolve_weights"]}
)

__all__ = [
    "CAPABILITIES",
    "CLIP_CAPABILITIES",
    "VIT_CAPABILITIES",
    "Backbone",
    "BackboneSpec",
    "Tokens",
    "WeightSource",
    "build_backbone",
    "build_from_spec",
    "check_capabilities",
    "clear_backbone_cache",
    "resolve_backbone_identity",
    "scale_taps",
]


def __dir__() -> list[str]:
    return sorted(set(_dir()) | set(__all__))


_CACHE: dict[tuple[str, str, str], Backbone] = {}


def _registry() -> object:
    from ..registry import get_registry

    return get_registry()


def _spec(name: str, registry: object | None = None) -> BackboneSpec:
    return (registry or _registry()).backbone(name)  # type: ignore[attr-defined]


def build_from_spec(
    spec: BackboneSpec,
    *,
    weights: str | None = None,
    device: torch.device | str = "cpu",
    source: WeightSource | None = None,
) -> Backbone:
    """Build one backbone (no cache): resolve weights (unless ``source`` is given), build with the torch
    RNG seeded from ``spec.kwargs['seed']`` (default 0, so random inits are reproducible), freeze, move to ``device``."""
    from .weights import resolve_weights

    source = source or resolve_weights(spec, weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(spec.kwargs.get("seed", 0)))
        model = spec.builder(spec, source)
    model.weights = source.identity
    model.capabilities = spec.capabilities
    model.default_size = spec.default_size
    model.requires_grad_(False)
    model.eval()
    return model.to(torch.device(device))


def build_backbone(
    name: str,
    *,
    weights: str | None = None,
    device: torch.device | str = "cpu",
    pretrained: bool = True,
    registry: object | None = None,
) -> Backbone:
    """The frozen backbone ``name`` on ``device``, built once per (name, weights identity, device).

    ``weights`` is a file path or 'random'; ``pretrained=False`` builds a random init (e.g. to count
    parameters). Raises WeightsNotFoundError (one line) when pretrained weights are nowhere to be found.
    """
    from .weights import resolve_weights

    spec = _spec(name, registry)
    source = resolve_weights(spec, weights, pretrained)
    key = (name, source.identity, str(torch.device(device)))
    if key not in _CACHE:
        _CACHE[key] = build_from_spec(spec, device=device, source=source)
    return _CACHE[key]


def resolve_backbone_identity(name: str, weights: str | None = None, registry: object | None = None) -> str:
    """Weights identity of backbone ``name`` for job keys ('random', a tag or a file hash); builds nothing."""
    from .weights import resolve_weights

    return resolve_weights(_spec(name, registry), weights).identity


def check_capabilities(
    method: str, field: str, backbone: str, needed: frozenset[str], registry: object | None = None
) -> None:
    """Refuse (one line, before any work) a backbone that lacks a capability the method calls."""
    spec = _spec(backbone, registry)
    missing = sorted(set(needed) - set(spec.capabilities))
    if missing:
        from ..errors import AdbenchError

        able = [
            s.name
            for s in (registry or _registry()).index["backbone"].values()  # type: ignore[attr-defined]
            if set(needed) <= set(s.obj.capabilities)
        ]
        raise AdbenchError(
            f"--set {method}.{field}={backbone}: backbone '{backbone}' lacks {', '.join(missing)} "
            f"(needed by '{method}'); backbones that have it: {', '.join(sorted(able)) or 'none'}"
        )


def clear_backbone_cache() -> None:
    """Forget every cached backbone (frees their memory once no method holds them)."""
    _CACHE.clear()
