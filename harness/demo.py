"""What ``adbench run --demo`` runs: the configurations a dataset plugin declares as its demo grid.

A dataset that ships with adbench and needs no download (the built-in ``synthetic`` set) declares
``demo``: a few method configurations that differ in a way worth seeing (a real backbone against a
random one, a method against its ``+`` variant). ``--demo`` without ``--methods`` runs exactly those;
with ``--methods`` it only swaps in the methods' demo backbones, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DemoConfig:
    """One configuration of a demo grid: a method and its ``--set`` values (strings, as typed)."""

    method: str
    settings: dict[str, str] = field(default_factory=dict)
    #: What the configuration shows, for the docs and ``adbench list datasets`` readers.
    purpose: str = ""


def demo_grid(
    declared: Sequence[Sequence[DemoConfig]], overrides: dict[str, dict[str, list[str]]]
) -> list[tuple[str, list[dict[str, list[str]]]]]:
    """Per method (in first-appearance order), the override sets of its demo configurations.

    ``declared`` holds each selected dataset's ``demo``; duplicates are dropped. The user's
    ``--set`` values for a method replace the demo's value of the same field.
    """
    grid: dict[str, list[dict[str, list[str]]]] = {}
    for configs in declared:
        for cfg in configs:
            sets = {k: [v] for k, v in cfg.settings.items()} | overrides.get(cfg.method, {})
            if sets not in grid.setdefault(cfg.method, []):
                grid[cfg.method].append(sets)
    return list(grid.items())
