"""``adbench papers``: per seed paper, how many published numbers adbench can produce and a store has."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import AdbenchError
from ..registry import get_registry
from ..store import ResultsStore


@click.command()
@click.option(
    "--results",
    "results_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Also count what this results store already reproduces.",
)
@click.option("--paper", default=None, help="Only papers whose file name contains this (any case).")
def papers(results_dir: str | None, paper: str | None) -> None:
    """Count each seed paper's published numbers that installed plugins can produce, and list the gaps."""
    from adbench.reports.coverage import coverage, format_coverage
    from adbench.reports.published import load_papers

    store = None
    if results_dir is not None:
        if not (Path(results_dir) / "records").is_dir():
            raise AdbenchError(
                f"--results {results_dir or repr(results_dir)}: not a results store (no records/)"
            )
        store = ResultsStore(results_dir).frame()
    names = list(load_papers())
    if paper is not None and not any(paper.lower() in n.lower() for n in names if paper):
        raise AdbenchError(f"--paper {paper!r}: matches none of {', '.join(names)}")
    registry = get_registry()
    click.echo(format_coverage(coverage(registry, store, paper), with_store=results_dir is not None))
    for line in registry.broken_lines():
        click.echo(f"warning: {line}", err=True)
