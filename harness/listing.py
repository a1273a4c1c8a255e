"""Text for ``adbench list``: what each installed plugin provides, and which package provides it."""

from __future__ import annotations

from .registry import Registry

_KIND = {
    "methods": "method",
    "datasets": "dataset",
    "backbones": "backbone",
    "report-formats": "report_format",
    "trackers": "tracker",
    "knowledge-providers": "knowledge_provider",
}


def _method_traits(cls: type) -> str:
    kind = "trained" if getattr(cls, "trained", False) else "training-free"
    protocols = "/".join(p.replace("_", "-") for p in sorted(getattr(cls, "supports", ())))
    return f"{kind}; {protocols}"


def _dataset_traits(cls: type) -> str:
    task = {"image": "image-level", "pixel": "pixel-level", "both": "image+pixel"}.get(cls.task, cls.task)
    variant = "" if cls.variant == "native" else f"; variant {cls.variant}"
    return f"{task}{variant}"


def _backbone_traits(spec: object) -> str:
    weights = getattr(spec, "pretrained", None) or "random init"
    caps = sorted(getattr(spec, "capabilities", ()))
    text = f"; {', '.join(caps)}" if caps else ""
    return f"{spec.family}; weights {weights}{text}"  # type: ignore[attr-defined]


#: What ``adbench list`` accepts (the registry's kinds, plus the named evaluation protocols).
LIST_KINDS = (*_KIND, "eval-protocols")


def describe_entries(registry: Registry, kind: str) -> str:
    """One line per entry: name, description, what it supports, providing package."""
    key = _KIND[kind]
    traits = {"method": _method_traits, "dataset": _dataset_traits, "backbone": _backbone_traits}.get(key)
    rows = []
    for e in registry.entries(key):
        desc = getattr(e.obj, "description", "") or ""
        rows.append((e.name, desc, traits(e.obj) if traits else "", e.provider))
    if not rows:
        return f"no {kind} installed"
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    head = ("name", "description", "supports", "provided by")
    widths = [max(w, len(h)) for w, h in zip(widths, head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)
