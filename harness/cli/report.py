"""``adbench report``: render paper-style tables, plots and figures from the results store."""

from __future__ import annotations

import click

from ..errors import AdbenchError
from ..registry import get_registry
from ..store import ResultsStore
from .options import _csv, results_option

#: Report choices, written once here for the CLI and checked again by ``ReportOptions`` (importing
#: adbench.reports would load pandas and the renderers at ``adbench --help``).
MODES = ("reproduced", "published")
COVERAGES = ("all", "shared")
LATEX_COLUMNS = ("1", "2")


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
    type=click.Choice(MODES),
    default=MODES[0],
    show_default=True,
    help="'published' renders the papers' own tables from the shipped data (no results needed).",
)
@click.option("--paper", default=None, help="Only this paper's published numbers (every table and file).")
@click.option(
    "--coverage",
    type=click.Choice(COVERAGES),
    default=COVERAGES[0],
    show_default=True,
    help="'all': each column over its own categories, partial cells marked; 'shared' adds tables over the categories all columns ran.",
)
@click.option(
    "--where", "where", multiple=True, metavar="FIELD=VALUE", help="Only records with this setting."
)
@click.option("--latex-columns", type=click.Choice(LATEX_COLUMNS), default="2", show_default=True)
@click.option("--paired-cells", is_flag=True, help="Per-category cells as (AUROC, AP) pairs.")
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
    "--no-stats",
    "no_stats",
    is_flag=True,
    help="No paired significance marks, critical-difference diagrams or shot curves.",
)
@click.option(
    "--figures", "figures", is_flag=True, help="Qualitative figures (image | GT | maps), PNG and PDF."
)
@click.option(
    "--figure-images",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Images per qualitative figure.",
)
@click.option("--figure-categories", default=None, help="Categories for figures (default: the first few).")
@click.option("--root", "roots", multiple=True, help="NAME=PATH of a dataset, for the figures' images.")
@results_option
def report(**opts: object) -> None:
    """Render paper-style tables and plots from the results store."""
    from adbench.reports import render_report

    from ..run_options import output_folder

    formats, out_dir, results_dir = opts.pop("formats"), opts.pop("out_dir"), opts.pop("results_dir")
    paths = render_report(
        ResultsStore(str(results_dir)),
        output_folder(str(out_dir), "--out"),
        _csv(formats) or [],
        **_report_options(opts),
    )
    for p in paths:
        click.echo(str(p))


def _pairs(items: object, option: str, split_last: bool = False) -> dict[str, str]:
    """``--label OLD=NEW`` / ``--root NAME=PATH`` values as a dict; a value without '=' is one line."""
    out = {}
    for item in items:  # type: ignore[attr-defined]
        key, sep, value = item.rpartition("=") if split_last else item.partition("=")
        if not sep or not key:
            raise AdbenchError(f"{option} {item!r}: expected {'COLUMN=TEXT' if split_last else 'NAME=PATH'}")
        out[key] = value
    return out


def _report_options(opts: dict) -> dict:
    """The CLI's values as ``ReportOptions`` fields."""
    from ..sample_images import image_loader

    figures = bool(opts.pop("figures"))
    roots = _pairs(opts.pop("roots"), "--root")
    datasets, metrics = _csv(opts.pop("datasets_")), _csv(opts.pop("metrics_"))
    stats, images = not opts.pop("no_stats"), int(opts.pop("figure_images"))
    return {
        **opts,
        "registry": get_registry(),
        "latex_columns": int(opts["latex_columns"]),
        "methods": _csv(opts["methods"]),
        "datasets": datasets,
        "metrics": metrics,
        "labels": _pairs(opts["labels"], "--label", split_last=True),
        "stats": stats,
        "figures": images if figures else 0,
        "figure_categories": _csv(opts["figure_categories"]),
        "images": image_loader(roots) if figures else None,
    }
