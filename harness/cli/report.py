"""``adbench report``: render paper-style tables, plots and figures from the results store."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import AdbenchError
from ..registry import get_registry
from ..store import ResultsStore
from .options import _csv, results_option


@click.command()
@click.option("--format", "formats", default="html,latex", show_default=True, help="Comma-separated formats.")
@click.option(
    "--out", "out_dir", default="adbench-report", show_default=True, type=click.Path(file_okay=False)
)
@click.option("--published", is_flag=True, help="Show published numbers beside reproduced ones.")
@click.option(
    "--ablation", default=None, metavar="METHOD.FIELD", help="Ablation table over one config field."
)
@click.option(
    "--mode",
    type=click.Choice(["reproduced", "published"]),
    default="reproduced",
    show_default=True,
    help="'published' renders the papers' own tables from the shipped data (no results needed).",
)
@click.option("--paper", default=None, help="Only this paper's published numbers (every table and file).")
@click.option(
    "--coverage",
    type=click.Choice(["shared", "all"]),
    default="shared",
    show_default=True,
    help="'shared' compares columns over the categories/datasets they share; 'all' marks each cell's coverage.",
)
@click.option("--methods", "methods", default=None, help="Comma-separated methods to show.")
@click.option("--datasets", "datasets_", default=None, help="Comma-separated datasets to show.")
@click.option("--metrics", "metrics_", default=None, help="Comma-separated metrics to show.")
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="COLUMN=TEXT",
    help="Rename a column (as printed in the legend).",
)
@click.option("--ci", is_flag=True, help="95% bootstrap confidence intervals of Image-AUROC over images.")
@click.option(
    "--figures", "figures", is_flag=True, help="Qualitative figures (image | GT | maps), PNG and PDF."
)
@click.option("--figure-images", default=4, show_default=True, help="Images per qualitative figure.")
@click.option("--figure-categories", default=None, help="Categories for figures (default: the first few).")
@click.option("--root", "roots", multiple=True, help="NAME=PATH of a dataset, for the figures' images.")
@results_option
def report(
    formats: str,
    out_dir: str,
    published: bool,
    ablation: str | None,
    mode: str,
    paper: str | None,
    coverage: str,
    methods: str | None,
    datasets_: str | None,
    metrics_: str | None,
    labels: tuple[str, ...],
    ci: bool,
    figures: bool,
    figure_images: int,
    figure_categories: str | None,
    roots: tuple[str, ...],
    results_dir: str,
) -> None:
    """Render paper-style tables and plots from the results store."""
    from adbench.reports import render_report

    from ..sample_images import image_loader

    label_map = {}
    for item in labels:
        old, sep, new = item.rpartition("=")
        if not sep or not old:
            raise AdbenchError(f"--label {item!r}: expected COLUMN=TEXT")
        label_map[old] = new
    root_map = {}
    for item in roots:
        name, sep, path = item.partition("=")
        if not sep:
            raise AdbenchError(f"--root {item!r}: expected NAME=PATH")
        root_map[name] = path
    paths = render_report(
        ResultsStore(results_dir),
        Path(out_dir),
        _csv(formats) or [],
        published=published,
        ablation=ablation,
        registry=get_registry(),
        mode=mode,
        paper=paper,
        coverage=coverage,
        methods=_csv(methods),
        datasets=_csv(datasets_),
        metrics=_csv(metrics_),
        labels=label_map,
        ci=ci,
        figures=figure_images if figures else 0,
        figure_categories=_csv(figure_categories),
        images=image_loader(root_map) if figures else None,
    )
    for p in paths:
        click.echo(str(p))
