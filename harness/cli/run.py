"""``adbench run``: parse the options into a suite, then plan and run it (or dry-run / dump it)."""

from __future__ import annotations

import sys

import click

from ..config import parse_set_options
from ..evaluation import MASK_RESIZES, PRECISIONS
from ..executors import EXECUTORS
from ..jobs import DEFAULT_DATASETS, DEVICE_CHOICES
from ..paths import DEFAULT_RESULTS_DIR
from ..protocol_catalog import DEFAULT_FEW_SHOT_SEEDS, DEFAULT_SHOTS, PROTOCOLS
from ..registry import get_registry
from ..store import ResultsStore
from .options import IntList, _csv, _device, _roots, results_option
from .results import print_results


def _ints(values: tuple[int, ...]) -> str:
    return ",".join(map(str, values))


@click.command()
@click.option(
    "--methods",
    default=None,
    help="Comma-separated method names [default: patchead; with --demo, the dataset's demo grid].",
)
@click.option(
    "--datasets", default=",".join(DEFAULT_DATASETS), show_default=True, help="Comma-separated dataset names."
)
@click.option(
    "--root", "roots", multiple=True, help="Dataset root: PATH, or NAME=PATH with several datasets."
)
@click.option("--categories", default=None, help="Comma-separated subset of categories.")
@click.option(
    "--protocol",
    type=click.Choice(list(PROTOCOLS)),
    default=None,
    help="Evaluation protocol (default: each method's own).",
)
@click.option(
    "--shots", type=IntList(1), default=_ints(DEFAULT_SHOTS), show_default=True, help="Few-shot k values."
)
@click.option(
    "--seeds",
    type=IntList(0),
    default=None,
    help=f"Seeds (few-shot default {_ints(DEFAULT_FEW_SHOT_SEEDS)}; otherwise 0).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="METHOD.FIELD=VALUE",
    help="Override a config field; 'a,b' or 'a|b' expands the grid.",
)
@click.option("--device", default="auto", show_default=True, callback=_device, help=f"{DEVICE_CHOICES}.")
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
    type=click.Choice(MASK_RESIZES),
    default=None,
    help="How masks are resized to the eval size (bilinear: then > 0.5); overrides the protocol's.",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
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
    type=click.Choice(list(EXECUTORS)),
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
@click.option(
    "--no-image-cache",
    is_flag=True,
    help="Decode every image again instead of reading the decoded-image cache.",
)
@results_option
def run(**options: object) -> None:
    """Evaluate METHODS on DATASETS and write one record per job to the results store."""
    from ..dry_run import dry_run, format_rows, has_missing
    from ..logs import configure
    from ..runner import Runner
    from ..suite import build_spec, dump_suite, load_suite, merge, suite_of

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
    for line in summary.notices:
        click.echo(f"  tracker: {line}", err=True)
    if summary.failed:
        click.echo(f"  full tracebacks: {log_file}", err=True)
    print_results(store, "table")
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
    if "no_image_cache" in given:
        run["image_cache"] = not given["no_image_cache"]
    for key in ("datasets", "categories", "train_on", "devices"):
        if key in given:
            run[key] = _csv(given[key]) or []  # type: ignore[arg-type]  # empty: refused by the suite check
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
        datasets = _csv(given.get("datasets")) or list(DEFAULT_DATASETS)  # type: ignore[arg-type]
        suite["roots"] = _roots(given["roots"], datasets)  # type: ignore[arg-type]
    return suite
