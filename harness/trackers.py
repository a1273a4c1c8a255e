"""The tracker contract: a plugin object with a ``name`` and a ``description`` that implements the
run lifecycle hooks (:mod:`adbench.hookspecs`) and acts only on runs that turn it on."""

from __future__ import annotations

from typing import Any, ClassVar


class Tracker:
    """Base of tracker plugins (``adbench run --tracker NAME``; listed by ``adbench list trackers``)."""

    #: What ``--tracker`` names it.
    name: ClassVar[str]
    #: One line for ``adbench list trackers``.
    description: ClassVar[str] = ""

    def enabled(self, spec: Any) -> bool:
        """Whether the run (a :class:`~adbench.jobs.RunSpec`) turned this tracker on."""
        return self.name in spec.trackers
