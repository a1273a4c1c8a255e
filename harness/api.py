"""The Python API: the same run, results and report as the command line, for notebooks and scripts.

    import adbench
    frame = adbench.run(methods=["patchead"], demo=True, results="adbench-results")
    frame = adbench.load_results("adbench-results")
    paths = adbench.report("adbench-results", out="adbench-report", formats=["html", "latex"])

Options are those of ``adbench run`` (snake_case) and go through the same suite path as
``adbench run --config``, so a value is validated the same way whichever door it came through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .paths import DEFAULT_RESULTS_DIR as DEFAULT_RESULTS

if TYPE_CHECKING:
    import pandas as pd


def resolve_suite(
    methods: Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
    *,
    config: str | Path | None = None,
    roots: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A suite dict from a suite file (optional) and explicit values, the explicit ones winning."""
    from .run_options import check_methods_argument
    from .suite import load_suite, merge

    given: dict[str, Any] = {"run": dict(options or {}), "roots": dict(roots or {})}
    if methods is not None:
        check_methods_argument(methods, "adbench.run()")
        given["methods"] = (
            {name: dict(fields) for name, fields in methods.items()}
            if isinstance(methods, Mapping)
            else {name: {} for name in methods}
        )
    base = load_suite(config) if config is not None else {}
    return merge(base, given)


def run(
    methods: Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
    *,
    config: str | Path | None = None,
    results: str | Path | None = None,
    roots: Mapping[str, str] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Run a benchmark and return this run's records as a DataFrame (one row per job).

    ``methods`` is a list of names or ``{name: {field: value or [alternatives]}}`` (a suite's
    ``[methods]`` table); ``config`` a suite file; ``options`` any ``adbench run`` option
    (``datasets=["mvtec"]``, ``protocol="few_shot"``, ``shots=(1, 4)``, ``demo=True``, ...).
    """
    from .runner import Runner
    from .store import ResultsStore
    from .suite import build_spec

    suite = resolve_suite(methods, config=config, roots=roots, options=options)
    if results is None:
        results = suite["run"].get("results", DEFAULT_RESULTS)
    spec = build_spec(suite, where=str(config) if config else "adbench.run()")
    spec.progress = bool(options.get("progress", False))
    store = ResultsStore(results)
    runner = Runner(spec, store)
    from .dry_run import shard_keys

    runner.run()
    keys = shard_keys(runner)
    if keys is None:
        keys = {job.key for job in runner.plan()}
    frame = store.frame(include_failed=True)
    return frame[frame["key"].isin(keys)].reset_index(drop=True) if not frame.empty else frame


def load_results(path: str | Path = DEFAULT_RESULTS, include_failed: bool = False) -> pd.DataFrame:
    """Every record of a results store as a DataFrame (failed jobs only with ``include_failed``)."""
    from .store import ResultsStore

    return ResultsStore(path).frame(include_failed=include_failed)


def report(
    results: str | Path = DEFAULT_RESULTS,
    out: str | Path = "adbench-report",
    formats: Sequence[str] = ("html", "latex"),
    **options: Any,
) -> list[Path]:
    """Render the report of a results store (as ``adbench report``); returns the written files."""
    from .registry import get_registry
    from .reports import render_report
    from .run_options import output_folder
    from .store import ResultsStore

    out = output_folder(out, "out")
    return render_report(ResultsStore(results), out, list(formats), registry=get_registry(), **options)
