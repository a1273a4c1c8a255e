"""``adbench info METHOD``: a method's description, settings, resolved config and parameter counts.

Counts use the full-size backbones of the resolved config built randomly initialised
(``pretrained=False``), so no weights are needed; a trained method's learnable parts are built by
its ``setup`` on those random backbones. Training-free methods have 0 trainable parameters.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

from torch import nn

from .config import expand, stable_hash, to_dict
from .errors import AdbenchError
from .registry import Registry, get_registry


def _type_name(tp: Any) -> str:
    text = getattr(tp, "__name__", None) if not typing.get_args(tp) else None
    return text or str(tp).replace("typing.", "")


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of a module (``parameters()`` yields each shared tensor once)."""
    return sum(p.numel() for p in module.parameters())


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f} M ({n:,})"


def parameter_counts(method_cls: type, config: Any, registry: Registry | None = None) -> dict[str, Any]:
    """Backbone name -> parameter count, and the method's trainable and total counts (random init, CPU)."""
    from .backbones import build_backbone

    backbones: dict[str, int] = {}
    for field in method_cls.backbone_fields:
        name = getattr(config, field)
        if name not in backbones:
            backbones[name] = count_parameters(
                build_backbone(name, pretrained=False, device="cpu", registry=registry)
            )
    trainable, breakdown = 0, []
    if method_cls.trained:
        method = method_cls(config, "cpu")
        method.pretrained_backbones = False
        method.setup()
        trainable = sum(p.numel() for p in method.learnable_module().parameters() if p.requires_grad)
        breakdown = method.parameter_breakdown()
    frozen = sum(backbones.values())
    return {
        "backbones": backbones,
        "frozen": frozen,
        "trainable": trainable,
        "total": frozen + trainable,
        "breakdown": breakdown,
    }


def describe_method(name: str, registry: Registry | None = None, overrides: dict | None = None) -> str:
    """Text for ``adbench info``: description, settings (type = default), resolved config, parameter counts.

    ``overrides`` maps field -> value or list of raw values (as parsed from ``--set``); a grid of
    several values describes the first combination.
    """
    registry = registry or get_registry()
    cls = registry.method(name)
    raw = {k: (v if isinstance(v, list) else [str(v)]) for k, v in (overrides or {}).items()}
    configs = expand(cls.config_cls, raw, cls.name)
    config = configs[0]
    default = cls.config_cls()
    hints = typing.get_type_hints(cls.config_cls)
    lines = [f"{cls.name}: {cls.description or '(no description)'}"]
    lines.append(
        f"trained: {'yes (fitted on an auxiliary dataset, learnable parts only)' if cls.trained else 'no (training-free)'}"
    )
    lines.append(f"protocols: {', '.join(sorted(cls.supports))} (default {cls.default_protocol})")
    lines.append(
        "settings (name: type = paper default [-> resolved value when set])"
        + (f"; --set grid of {len(configs)}, showing the first" if len(configs) > 1 else "")
        + ":"
    )
    for f in dataclasses.fields(cls.config_cls):
        value, base = getattr(config, f.name), getattr(default, f.name)
        changed = f"  -> {value!r}" if value != base else ""
        lines.append(f"  {f.name}: {_type_name(hints[f.name])} = {base!r}{changed}")
    lines.append(f"resolved config: {json.dumps(to_dict(config), sort_keys=False)}")
    lines.append(f"resolved config hash: {stable_hash(to_dict(config))}")
    lines += cls.info_lines(config)
    try:
        counts = parameter_counts(cls, config, registry)
    except AdbenchError as exc:
        lines.append(f"parameters: not counted ({exc})")
        return "\n".join(lines)
    lines.append("parameters (backbones built randomly initialised; no weights needed):")
    for bname, n in counts["backbones"].items():
        lines.append(f"  frozen backbone {bname}: {_millions(n)}")
    lines.append(f"  trainable: {_millions(counts['trainable'])}{published_trainable(cls, config)}")
    lines.append(f"  total: {_millions(counts['total'])}")
    lines += counts["breakdown"]
    return "\n".join(lines)


def published_trainable(cls: type, config: Any) -> str:
    """'  (published: 10.67 M, <source>)' when a paper prints this configuration's trainable count."""
    from adbench.reports.published import load_efficiency

    name = cls.published_name(config)
    table = load_efficiency()
    rows = table[(table["method"] == name) & table["trainable_params_m"].notna()] if name else table.iloc[:0]
    if rows.empty:
        return ""
    row = rows.iloc[0]
    return f"  (published: {row['trainable_params_m']:.2f} M, {row['source']})"
