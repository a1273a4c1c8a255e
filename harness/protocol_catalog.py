"""The evaluation protocols as declared objects, registered once (torch-free).

CLI choices, the planner, tables and the published-number matcher read these specs instead of
spelling protocol names; ``protocols.py`` holds what each protocol does with the data.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import AdbenchError


@dataclass(frozen=True)
class ProtocolSpec:
    """What a protocol is, as every part of adbench names it."""

    name: str  #: record value and CLI choice, e.g. ``few_shot``
    title: str  #: display form, e.g. ``few-shot``
    published_label: str  #: prefix of ``setting`` values in published_results.csv it matches
    shots: tuple[int, ...] = (0,)  #: default k grid (0: no references)
    seeds: tuple[int, ...] = (0,)  #: default seed grid
    whole_split: bool = False  #: the method sees the whole unlabelled test split at once

    @property
    def references(self) -> bool:
        """Whether each job hands the method k normal reference images (a shots grid)."""
        return self.shots != (0,)


PROTOCOLS: dict[str, ProtocolSpec] = {
    p.name: p
    for p in (
        ProtocolSpec("zero_shot", "zero-shot", "zero-shot ("),
        ProtocolSpec("batch_zero_shot", "batch zero-shot", "batch zero-shot", whole_split=True),
        ProtocolSpec("few_shot", "few-shot", "few-shot", shots=(1, 2, 4), seeds=(0, 1, 2)),
    )
}


#: The protocol a method runs when it declares none (the first declared: plain zero-shot).
DEFAULT_PROTOCOL: str = next(iter(PROTOCOLS))
#: The shots and seed grids of the protocol with references (``--shots`` / ``--seeds`` defaults).
DEFAULT_SHOTS: tuple[int, ...] = next(p.shots for p in PROTOCOLS.values() if p.references)
DEFAULT_FEW_SHOT_SEEDS: tuple[int, ...] = next(p.seeds for p in PROTOCOLS.values() if p.references)


def protocol_spec(name: str) -> ProtocolSpec:
    """The spec of a protocol name; a one-line error naming the choices otherwise."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise AdbenchError(f"--protocol {name!r}: expected one of {', '.join(PROTOCOLS)}") from None


def family(name: str) -> str:
    """The table a protocol's columns go to: the first declared protocol with the same references
    flag (zero-shot and batch zero-shot share one table, ranked apart; few-shot has its own)."""
    refs = takes_references(name)
    return next(p.name for p in PROTOCOLS.values() if p.references == refs)


def takes_references(name: str) -> bool:
    """Whether protocol ``name`` has a shots grid (k reference images); False for an unknown name
    (e.g. a record written by a plugin's own protocol)."""
    spec = PROTOCOLS.get(name)
    return spec is not None and spec.references


#: How few-shot references are drawn (part of few-shot job keys): the first k of one seeded order of
#: the train split, so for one seed the 1-shot set lies inside the 2-shot set, inside the 4-shot set
#: and a shot curve compares like with like (independent draws per k made k = 4 dip below k = 1).
REFERENCE_RULE = "nested-prefix-of-seeded-order"
