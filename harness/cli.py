"""The ``adbench`` command line: parse options, call the harness, print. No logic lives here."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__
from .config import parse_set_options
from .errors import AdbenchError
from .listing import LIST_KINDS
from .registry import get_registry
from .store import DEFAULT_RESULTS_DIR, ResultsStore

RANDOM_BANNER = (
    "NOTE: backbones with randomly initialised weights were used ({names}): "
    "these numbers are not comparable to published results."
)


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _roots(values: tuple[str, ...], datasets: list[str]) -> dict[str, str]:
    """``--root PATH`` (one dataset) or ``--root NAME=PATH`` (several)."""
    roots: dict[str, str] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if sep and name in datasets:
            roots[name] = path
        elif len(datasets) == 1:
            roots[datasets[0]] = v
        else:
            raise AdbenchError(f"--root {v!r}: with several datasets write --root NAME=PATH")
    return roots


class IntList(click.ParamType):
    """Comma-separated integers, each at least ``minimum`` (``--shots 1,2,4``, ``--seeds 0,1``)."""

    name = "ints"

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum

    def convert(self, value, param, ctx):  # noqa: ANN001 - click's signature
        if isinstance(value, tuple):
            return value
        try:
            items = tuple(int(v) for v in _csv(str(value)) or ())
        except ValueError:
            self.fail(f"{value!r}: expected comma-separated integers", param, ctx)
        if not items or min(items) < self.minimum:
            self.fail(f"{value!r}: every value must be an integer >= {self.minimum}", param, ctx)
        return items


DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"


def _device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    import re

    if not re.fullmatch(DEVICE_PATTERN, value):
        raise click.BadParameter(f"{value!r}: expected auto, cpu, mps, cuda or cuda:N", ctx, param)
    return value


results_option = click.option(
    "--results",
    "results_dir",
    default=DEFAULT_RESULTS_DIR,
    show_default=True,
    type=click.Path(file_okay=False),
    help="Results store directory.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="adbench (adbench-zsad)")
@click.option("-v", "--verbose", count=True, help="More log output on the terminal (-vv: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on the terminal.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """adbench: benchmark zero-shot anomaly detection methods on equal terms."""
    from .logs import configure

    ctx.obj = {"verbosity": -1 if quiet else verbose}
    configure(ctx.obj["verbosity"])


@cli.command()
@click.option(
    "--methods",
    default=None,
    help="Comma-separated method names [default: patchead; with --demo, the dataset's demo grid].",
)
@click.option("--datasets", default="synthetic", show_default=True, help="Comma-separated dataset names.")
@click.option(
    "--root", "roots", multiple=True, help="Dataset root: PATH, or NAME=PATH with several datasets."
)
@click.option("--categories", default=None, help="Comma-separated subset of categories.")
@click.option(
    "--protocol",
    type=click.Choice(["zero_shot", "batch_zero_shot", "few_shot"]),
    default=None,
    help="Evaluation protocol (default: each method's own).",
)
@click.option("--shots", type=IntList(1), default="1,2,4", show_default=True, help="Few-shot k values.")
@click.option("--seeds", type=IntList(0), default=None, help="Seeds (few-shot default 0,1,2; otherwise 0).")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="METHOD.FIELD=VALUE",
    help="Override a config field; 'a,b' or 'a|b' expands the grid.",
)
@click.option(
    "--device", default="auto", show_default=True, callback=_device, help="auto, cpu, mps, cuda or cuda:N."
)
@click.option(
    "--demo",
    is_flag=True,
    help="Run the built-in demo grid (no download); with --methods, swap in backbones that need no download.",
)
@click.option("--force", is_flag=True, help="Recompute jobs that already have a record.")
@click.option("--retrain", is_flag=True, help="Refit trained methods instead of reusing a cached fit.")
@click.option(
    "--train-on",
    default=None,
    help="Auxiliary dataset(s) for trained methods; TARGET=AUX+AUX names them for one target.",
)
@click.option(
    "--eval-protocol",
    default="default",
    show_default=True,
    help="Named evaluation protocol (adbench list eval-protocols): size, mask resize and sigma.",
)
@click.option(
    "--eval-size",
    default=None,
    help="Pixel-metric resolution: input, original or N px (overrides the protocol's).",
)
@click.option(
    "--mask-resize",
    type=click.Choice(["nearest", "bilinear"]),
    default=None,
    help="How masks are resized to the eval size (bilinear: then > 0.5); overrides the protocol's.",
)
@click.option(
    "--precision",
    type=click.Choice(["bf16", "fp32"]),
    default="bf16",
    show_default=True,
    help="Prediction precision on CUDA: bf16 autocast, or fp32 throughout (CPU always runs fp32).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option(
    "--trust-weights",
    is_flag=True,
    help="Allow TorchScript weight files (torch.jit.load runs code from the file).",
)
@click.option(
    "--tracker",
    "trackers",
    multiple=True,
    metavar="NAME",
    help="Log the run to a tracker plugin (adbench list trackers), e.g. mlflow.",
)
@click.option(
    "--executor",
    type=click.Choice(["serial", "local", "ray"]),
    default="serial",
    show_default=True,
    help="Where jobs run: this process, one local process per device/worker, or a Ray cluster.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="--executor local: CPU worker processes."
)
@click.option(
    "--devices", default=None, help="--executor local: GPUs to use, one worker each (e.g. 0,1,2,3)."
)
@click.option(
    "--shard", default=None, metavar="I/N", help="Run only the I-th of N deterministic shares of the plan."
)
@click.option(
    "--address", default=None, help="--executor ray: cluster address (auto, HOST:PORT); default: local."
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Suite file (TOML) with methods, settings, datasets and roots; options given here override it.",
)
@click.option("--dump-config", is_flag=True, help="Print the resolved suite as TOML and exit (runs nothing).")
@click.option(
    "--dry-run",
    is_flag=True,
    help="List the planned jobs and any missing dataset roots or weights; run nothing.",
)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@results_option
def run(**options: object) -> None:
    """Evaluate METHODS on DATASETS and write one record per job to the results store."""
    from .dry_run import dry_run, format_rows, has_missing
    from .logs import configure
    from .runner import Runner
    from .suite import build_spec, dump_suite, load_suite, merge, suite_of

    ctx = click.get_current_context()
    given = {
        name: value
        for name, value in options.items()
        if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)
    }
    config_file = options["config_file"]
    suite = merge(load_suite(config_file) if config_file else {}, _suite_from_options(given))
    where = str(config_file) if config_file else "command line"
    spec = build_spec(suite, raw_sets=parse_set_options(options["sets"]), where=where)
    spec.progress = not options["no_progress"]
    results_dir = str(suite["run"].get("results", DEFAULT_RESULTS_DIR))
    store = ResultsStore(results_dir)
    registry = get_registry()
    if options["dump_config"]:
        click.echo(dump_suite(suite_of(spec, results_dir, registry)), nl=False)
        return
    if options["dry_run"]:
        rows = dry_run(spec, store, registry)
        click.echo(format_rows(rows))
        if has_missing(rows):
            sys.exit(1)
        return
    for line in registry.broken_lines():
        click.echo(f"warning: {line}", err=True)
    log_file = configure(ctx.obj["verbosity"] if ctx.obj else 0, results_dir)
    summary = Runner(spec, store, registry).run()
    click.echo(
        f"{summary.done} jobs run, {summary.skipped} already done (skipped), {len(summary.failed)} failed"
    )
    for line in summary.failed:
        click.echo(f"  failed: {line}", err=True)
    if summary.failed:
        click.echo(f"  full tracebacks: {log_file}", err=True)
    _print_results(store, "table")
    if summary.failed:
        sys.exit(1)


#: ``adbench run`` options that are suite ``[run]`` keys under the same name (the rest are mapped below).
_RUN_KEYS = (
    "protocol", "device", "demo", "force", "retrain", "eval_protocol", "mask_resize", "precision",
    "batch_size", "trust_weights", "executor", "workers", "shard", "address", "shots", "seeds",
)  # fmt: skip


def _suite_from_options(given: dict[str, object]) -> dict[str, dict]:
    """The command line's explicit options as a suite (``--set`` values stay raw, see build_spec)."""
    run: dict[str, object] = {k: given[k] for k in _RUN_KEYS if k in given}
    for key in ("datasets", "categories", "train_on", "devices"):
        if key in given:
            run[key] = _csv(given[key])  # type: ignore[arg-type]
    if "eval_size" in given:
        run["eval_size"] = given["eval_size"]
    if "trackers" in given:
        run["trackers"] = list(given["trackers"])  # type: ignore[call-overload]
    if "results_dir" in given:
        run["results"] = given["results_dir"]
    suite: dict[str, dict] = {"run": run}
    if "methods" in given:
        suite["methods"] = {m: {} for m in _csv(given["methods"]) or []}  # type: ignore[arg-type]
    if "roots" in given:
        datasets = _csv(given.get("datasets")) or ["synthetic"]  # type: ignore[arg-type]
        suite["roots"] = _roots(given["roots"], datasets)  # type: ignore[arg-type]
    return suite


def _print_results(store: ResultsStore, fmt: str) -> None:
    df = store.frame()
    if df.empty:
        click.echo(f"no results in {store.root}")
        return
    if df["random_weights"].any():
        names = sorted(df.loc[df["random_weights"], "method"].unique())
        # csv/json stay machine-readable on stdout; the warning goes to stderr there
        click.echo(RANDOM_BANNER.format(names="methods: " + ", ".join(names)), err=fmt != "table")
    if fmt == "csv":
        click.echo(df.to_csv(index=False), nl=False)
    elif fmt == "json":  # whole records (provenance, definitions, timings), in the table's row order
        import json

        records = {rec.key: rec.to_dict() for rec in store.records() if rec.ok}
        click.echo(json.dumps([records[k] for k in df["key"] if k in records], indent=2, default=str))
    else:
        import pandas as pd

        from .metrics import METRICS
        from .store import ID_COLUMNS

        columns = [c for c in (*ID_COLUMNS, *METRICS, "images_per_s") if c in df.columns]
        with pd.option_context("display.max_rows", 500, "display.max_columns", 50, "display.width", 250):
            click.echo(df[columns].round(4).to_string(index=False, na_rep="—"))


@cli.command()
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@results_option
def results(fmt: str, results_dir: str) -> None:
    """Print one row per job with a column per metric."""
    _print_results(ResultsStore(results_dir), fmt)


@cli.command()
@results_option
def rescore(results_dir: str) -> None:
    """Recompute all metrics from the stored predictions (after a metric fix); runs no model."""
    from .runner import rescore as do_rescore

    count, problems = do_rescore(ResultsStore(results_dir))
    click.echo(f"rescored {count} records")
    for line in problems:
        click.echo(f"error: {line}", err=True)
    if problems:
        sys.exit(1)


@cli.command()
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

    from .sample_images import image_loader

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


@cli.command(name="list")
@click.argument("kind", type=click.Choice(list(LIST_KINDS)))
def list_(kind: str) -> None:
    """List the methods, datasets, backbones or report formats that installed plugins provide, or the
    named evaluation protocols."""
    from .evaluation import describe_protocols
    from .listing import describe_entries

    if kind == "eval-protocols":
        click.echo(describe_protocols())
        return
    registry = get_registry()
    click.echo(describe_entries(registry, kind))
    for line in registry.broken_lines():
        click.echo(f"warning: {line}", err=True)


@cli.command()
@click.argument("method")
@click.option("--set", "sets", multiple=True, metavar="METHOD.FIELD=VALUE")
def info(method: str, sets: tuple[str, ...]) -> None:
    """Describe a method: settings, resolved config and parameter counts at full size."""
    from .info import describe_method

    click.echo(describe_method(method, get_registry(), parse_set_options(sets).get(method, {})))


@cli.group()
def datasets() -> None:
    """Check dataset folders and export them as meta.json."""


@datasets.command()
@click.argument("name")
@click.option("--root", default=None, type=click.Path(), help="Dataset root folder.")
def check(name: str, root: str | None) -> None:
    """Validate a dataset folder and compare its counts with the published ones."""
    from .dataset_tools import check_dataset

    report_ = check_dataset(get_registry().dataset(name)(root))
    click.echo(report_.format())
    if report_.errors:
        sys.exit(1)


@datasets.command(name="export-meta")
@click.argument("name")
@click.option("--root", default=None, type=click.Path(), help="Dataset root folder.")
@click.option(
    "--out", default=None, type=click.Path(dir_okay=False), help="Output file (default ROOT/meta.json)."
)
def export_meta(name: str, root: str | None, out: str | None) -> None:
    """Write a meta.json that AnomalyCLIP and AdaCLIP can read."""
    from .dataset_tools import export_meta as do_export

    dataset = get_registry().dataset(name)(root)
    click.echo(str(do_export(dataset, Path(out) if out else None)))


from .cli_papers import papers  # noqa: E402 - subcommands in their own modules

cli.add_command(papers)


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    import warnings

    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # bad option values: one line, like every other user error
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except AdbenchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except SystemExit:
        raise


if __name__ == "__main__":
    main()
