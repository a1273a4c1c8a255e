"""Checks of run options that every door shares (command line, suite file, Python API).

The CLI only parses; the values it parses, a suite's tables and :func:`adbench.run`'s arguments all
meet here, so ``--root NAME=PATH``, empty lists and mistyped values give the same one-line error
whichever way they came in.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import AdbenchError
from .protocol_catalog import takes_references

log = logging.getLogger("adbench.run_options")

#: What may stand before '=' in ``--root NAME=PATH`` (a dataset name; a path has a '/' or is absolute).
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def parse_roots(values: Iterable[str], datasets: Sequence[str]) -> dict[str, str]:
    """``--root NAME=PATH`` for any dataset the plan may touch (targets and ``--train-on``
    auxiliaries alike; the names are checked against the registry by :func:`check_roots`), or a
    bare ``--root PATH`` when one dataset is named. ``NAME=PATH`` is never read as a path."""
    roots: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if sep and _NAME.fullmatch(name):
            if not path:
                raise AdbenchError(f"--root {value!r}: no path after '='")
            roots[name] = path
        elif len(datasets) == 1:
            roots[datasets[0]] = value
        else:
            raise AdbenchError(f"--root {value!r}: with several datasets write --root NAME=PATH")
    return roots


def check_roots(roots: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    """Every root names a registered dataset (one line with a did-you-mean otherwise)."""
    for name, path in roots.items():
        if not isinstance(path, str | Path) or not str(path):
            raise AdbenchError(f"{where}: root of {name}: expected a folder path, got {path!r}")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(known))}"
            raise AdbenchError(f"{where}: --root {name}=...: no dataset named '{name}'; {hint}")


def check_methods_argument(methods: Any, where: str) -> None:
    """The API's ``methods``: a list of names or a table, never a bare string (it would be split into
    letters) and never empty."""
    if isinstance(methods, str | bytes):
        raise AdbenchError(f"{where}: methods={methods!r}: expected a list of names, e.g. [{methods!r}]")
    if not methods:
        raise AdbenchError(f"{where}: methods is empty; name at least one method (or leave it out)")


def check_list(key: str, value: Any, where: str) -> None:
    """A list-valued run option that is given must name something (``categories = []`` would
    otherwise run everything and ``datasets = []`` nothing), each item once (``seeds = [0, 0]``
    would count its second job as already done)."""
    if isinstance(value, list | tuple) and not value:
        raise AdbenchError(f"{where}: [run] {key} is empty; name at least one, or leave it out")
    if isinstance(value, list | tuple):
        seen: list[Any] = []
        for item in value:
            if item in seen:
                raise AdbenchError(f"{where}: [run] {key}: {item!r} is given twice")
            seen.append(item)


#: Planned jobs above which a run warns before planning (each is one model evaluation).
LARGE_PLAN = 10_000


def warn_if_large(spec: Any) -> None:
    """Warn before planning a grid of more than :data:`LARGE_PLAN` jobs (a lower bound: categories
    are not counted yet), so a typo in ``--set a,b,c|...`` does not start days of work unnoticed."""
    configs = sum(math.prod(len(v) for v in spec.overrides.get(m, {}).values()) for m in spec.methods)
    seeds = len(spec.seeds or (0,))
    shots = len(spec.shots) if takes_references(spec.protocol) else 1
    jobs = max(configs, 1) * len(spec.datasets) * seeds * shots
    if jobs > LARGE_PLAN:
        log.warning(
            "planning at least %d jobs (%d configs x %d datasets x %d seeds x %d shots, times categories); "
            "narrow --set, --seeds or --datasets, or split the run with --shard",
            jobs, max(configs, 1), len(spec.datasets), seeds, shots,
        )  # fmt: skip


def check_workers(devices: Sequence[str]) -> None:
    """GPU workers need CUDA here; more CPU workers than cores is allowed but warned about (each
    holds its own model: 8 workers took 5.5 GB on 2 cores and ran no faster)."""
    gpus = [d for d in devices if d.startswith("cuda")]
    if gpus:
        import torch

        if not torch.cuda.is_available():
            raise AdbenchError(
                f"--devices {','.join(d.split(':')[-1] for d in gpus)}: no CUDA GPU on this machine; "
                "use --workers N for CPU worker processes"
            )
    cores = os.cpu_count() or 1
    cpu_workers = len(devices) - len(gpus)
    if cpu_workers > cores:
        log.warning(
            "--workers %d: more worker processes than the %d CPU cores; each loads its own model",
            cpu_workers,
            cores,
        )


def results_folder(value: Any) -> Path:
    """The results store folder: a non-empty path (``--results ""`` would write into the current folder)."""
    if not isinstance(value, str | Path) or not str(value).strip():
        raise AdbenchError(f"--results {value!r}: expected a folder path")
    return output_folder(value, "--results")


def output_folder(value: str | Path, option: str) -> Path:
    """A folder to read or write: one line when it is empty, or it or a folder above it is a file."""
    if not str(value).strip():
        raise AdbenchError(f"{option}: empty; give a folder")
    path = Path(value)
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                what = "is a file" if parent == path else f"is under the file {parent}"
                raise AdbenchError(f"{option} {value}: {what}, not a folder")
            break
    return path
