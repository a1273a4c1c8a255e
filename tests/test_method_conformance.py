"""Every registered method, under every protocol it declares, honours the Prediction contract.

The cases are read from the registry at collection time, so a method registered later is checked
without touching this file: it runs once on its demo backbones at a small input size (trained methods
fitted for one epoch by the real training engine on a few tiny images with planted defects) and must
return finite image scores (N,) and finite maps (N, h, w) or None.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adbench.config import expand
from adbench.data import Category, Sample
from adbench.methods import PROTOCOLS, Context, Method, MethodConfig, TrainedConfig
from adbench.registry import get_registry

SIZE = 112  # the tiny demo backbones' native size
N_QUERY = 3


def _cases() -> list[tuple[str, str]]:
    registry = get_registry()
    return [(name, p) for name in registry.names("method") for p in sorted(registry.method(name).supports)]


def test_every_method_is_covered():
    names = {name for name, _ in _cases()}
    assert {
        "clip",
        "winclip",
        "aprilgan",
        "anomalyclip",
        "dma_sap",
        "patchead",
        "vip2clip",
        "kanoclip",
        "adaclip",
        "anovl",
        "crane",
        "mvfa",
    } <= names
    assert all(p in PROTOCOLS for _, p in _cases())


def _images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grey noise images; odd ones carry a bright square (label 1, its mask)."""
    g = torch.Generator().manual_seed(seed)
    images = 0.5 + 0.05 * torch.randn(n, 3, SIZE, SIZE, generator=g)
    masks = torch.zeros(n, SIZE, SIZE, dtype=torch.uint8)
    labels = torch.arange(n) % 2
    for i in range(1, n, 2):
        y, x = torch.randint(8, SIZE - 40, (2,), generator=g).tolist()
        images[i, :, y : y + 24, x : x + 24] = 1.0
        masks[i, y : y + 24, x : x + 24] = 1
    return images.clamp(0, 1), masks, labels


def _demo_method(cls: type[Method]) -> Method:
    overrides = {field: [backbone] for field, backbone in cls.demo_backbones.items()}
    overrides["image_size"] = [str(SIZE)]
    if cls.trained:
        overrides |= {"epochs": ["1"], "batch_size": ["2"]}
    (config,) = expand(cls.config_cls, overrides, cls.name)
    assert isinstance(config, TrainedConfig if cls.trained else MethodConfig)
    method = cls(config, "cpu")
    method.setup()
    return method


@pytest.mark.parametrize("name,protocol", _cases())
def test_prediction_contract(name, protocol):
    from adbench.training import train

    cls = get_registry().method(name)
    torch.manual_seed(0)
    method = _demo_method(cls)
    if cls.trained:
        aux, masks, labels = _images(4, seed=1)
        # the auxiliary images as one category, for methods that condition training on the class
        samples = [Sample(f"aux{i}", Path(f"aux{i}.png"), int(labels[i])) for i in range(4)]
        extras = method.auxiliary_targets([Category("metal_nut", [], samples)])
        log = train(method, None, masks, labels, images=aux, progress=False, use_cache=True, extras=extras)
        assert len(log.losses) == 1 and all(torch.isfinite(torch.tensor(log.losses)))
        assert method.learnable_state(), "a trained method checkpoints some learnable state"
    queries, _, _ = _images(N_QUERY, seed=2)
    references = _images(2, seed=3)[0] if protocol == "few_shot" else None
    ctx = Context(protocol=protocol, category="metal_nut", seed=0, references=references)
    with torch.inference_mode():
        pred = method.predict(queries, ctx)
    assert pred.scores.shape == (N_QUERY,)
    assert torch.isfinite(pred.scores.float()).all()
    if pred.maps is not None:
        assert pred.maps.dim() == 3 and pred.maps.shape[0] == N_QUERY
        assert min(pred.maps.shape[1:]) >= 1
        assert torch.isfinite(pred.maps.float()).all()
