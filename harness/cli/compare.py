"""``adbench compare A B``: paired significance tests between two methods from the results store."""

from __future__ import annotations

import click

from ..store import ResultsStore
from .options import _csv, results_option

FORMATS = ("markdown", "csv", "json")


@click.command()
@click.argument("method_a")
@click.argument("method_b")
@click.option(
    "--datasets", "datasets_", default=None, help="Comma-separated datasets (default: all both ran)."
)
@click.option(
    "--metrics",
    "metrics_",
    default=None,
    help="Comma-separated metrics (default: image and pixel AUROC/AP, AUPRO).",
)
@click.option(
    "--any-protocol", is_flag=True, help="Pair test sets run under different protocols (same images)."
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=FORMATS[0], show_default=True)
@results_option
def compare(
    method_a: str,
    method_b: str,
    datasets_: str | None,
    metrics_: str | None,
    any_protocol: bool,
    fmt: str,
    results_dir: str,
) -> None:
    """Paired tests of METHOD_A - METHOD_B (NAME or NAME:FIELD=VALUE) per category and dataset."""
    from ..reports.pairwise import DEFAULT_METRICS, Side, render
    from ..reports.pairwise import compare as do_compare

    a, b = Side.parse(method_a), Side.parse(method_b)
    metrics = _csv(metrics_) or DEFAULT_METRICS
    rows = do_compare(ResultsStore(results_dir), a, b, metrics, _csv(datasets_), any_protocol=any_protocol)
    click.echo(render(rows, a, b, fmt))
