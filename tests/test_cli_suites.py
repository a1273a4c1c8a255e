"""The command line through suite files: --config, --dump-config, --dry-run, overrides, logs, executors."""

from __future__ import annotations

from pathlib import Path

import pytest

from adbench.registry import get_registry
from adbench.runner import Runner
from adbench.store import ResultsStore
from adbench.suite import build_spec, load_suite

from .test_reliability import cli, data, registry  # noqa: F401 - fixtures

SUITES = sorted((Path(__file__).resolve().parents[1] / "suites").glob("*.toml"))


def test_the_shipped_paper_suites_validate_and_dry_run(monkeypatch, capsys):
    assert {p.stem for p in SUITES} >= {"dma_sap", "vip2clip", "kanoclip", "patchead", "demo"}
    for path in SUITES:
        spec = build_spec(load_suite(path), where=str(path))
        assert spec.methods or spec.demo
        code, out = cli(monkeypatch, capsys, "run", "--config", str(path), "--dry-run")
        lines = out.strip().splitlines()
        assert lines[0].split()[:4] == ["method", "dataset", "jobs", "done"], out
        methods = set(spec.methods) or {"patchead"}
        assert {ln.split()[0] for ln in lines[1:]} == methods, out
        # nothing downloaded here: real datasets and weights are reported missing (exit 1), never run
        assert code == (0 if path.stem == "demo" else 1) and "Traceback" not in out


def test_the_demo_suite_plans_exactly_the_demo(tmp_path):
    store = ResultsStore(tmp_path)
    suite = build_spec(load_suite(SUITES[[p.stem for p in SUITES].index("demo")]))
    demo = build_spec({"run": {"demo": True}})
    keys = [[j.key for j in Runner(s, store, get_registry()).plan()] for s in (suite, demo)]
    assert keys[0] == keys[1] and len(keys[0]) == 30


def test_command_line_overrides_the_suite_and_dump_round_trips(registry, data, tmp_path, monkeypatch, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text(
        f'[run]\ndatasets = ["tiny"]\nprotocol = "batch_zero_shot"\n[roots]\ntiny = "{data}"\n'
        "[methods.median_dev]\nblur = [3, 5]\n"
    )
    code, dumped = cli(
        monkeypatch, capsys, "run", "--config", str(suite), "--set", "median_dev.blur=7", "--dump-config"
    )
    assert code == 0 and "blur = 7" in dumped and 'protocol = "batch_zero_shot"' in dumped
    again = tmp_path / "again.toml"
    again.write_text(dumped)
    assert cli(monkeypatch, capsys, "run", "--config", str(again), "--dump-config")[1] == dumped
    code, out = cli(
        monkeypatch, capsys, "run", "--config", str(suite), "--protocol", "zero_shot", "--dry-run"
    )
    # the option won over the file; the dry run collects the problem into its table (exit 1)
    assert code == 1 and "does not support protocol 'zero_shot'" in out


@pytest.mark.parametrize(
    "text, message",
    [
        ("[run]\nexecutor = 'slurm'\n", "--executor 'slurm': expected one of serial, local, ray"),
        ("[run]\nshard = '3/2'\n", "--shard '3/2': expected I/N"),
        ("[run]\neval_size = 0\n", "--eval-size 0: expected input, original or a positive integer"),
        ("[run]\nbatch_size = 0\n", "--batch-size 0: expected an integer >= 1"),
    ],
)
def test_suite_values_are_checked_like_options(registry, tmp_path, monkeypatch, capsys, text, message):
    suite = tmp_path / "s.toml"
    suite.write_text(text + "[methods.median_dev]\n")
    code, out = cli(monkeypatch, capsys, "run", "--config", str(suite), "--dry-run")
    assert code == 2 and message in out and len(out.strip().splitlines()) == 1, out


def test_a_failed_job_is_one_terminal_line_and_a_full_traceback_in_the_run_log(
    registry,
    data,
    tmp_path,
    monkeypatch,
    capsys,
):
    from adbench.plugins.patchead import PatchEAD

    def boom(self, images, ctx):
        raise ValueError("kaboom in predict")

    monkeypatch.setattr(PatchEAD, "predict", boom)
    results = tmp_path / "r"
    args = ["run", "--methods", "patchead", "--set", "patchead.backbone=tiny-dinov2", "--datasets", "tiny"]
    code, out = cli(
        monkeypatch, capsys, *args, "--root", str(data), "--results", str(results), "--no-progress"
    )
    assert code == 1 and out.count("kaboom in predict") == 2 and "Traceback" not in out  # alpha, beta
    (log,) = (results / "logs").glob("*.log")
    text = log.read_text()
    assert "Traceback" in text and "ValueError: kaboom in predict" in text and "2 jobs planned" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tracker", "mlfow"], "unknown tracker 'mlfow'; did you mean 'mlflow'?"),
        (["--executor", "local", "--devices", "x,y"], "--devices x,y: 'cuda:x' is not a GPU index"),
        (["--workers", "2"], "--workers applies to --executor local (this run: serial)"),
        (["--address", "auto"], "--address applies to --executor ray (this run: serial)"),
    ],
)
def test_run_options_that_would_be_ignored_are_one_line_errors(registry, monkeypatch, capsys, args, message):
    code, out = cli(monkeypatch, capsys, "run", "--methods", "median_dev", *args, "--dry-run")
    assert code == 2 and message in out and len(out.strip().splitlines()) == 1, out


def test_the_default_method_and_the_demo_grid_are_the_same_through_every_door():
    from adbench.api import resolve_suite

    assert build_spec(resolve_suite()).methods == ["patchead"]
    demo = build_spec(resolve_suite(options={"demo": True}))
    assert demo.demo and demo.methods == []  # the dataset's demo grid, as `adbench run --demo`
    assert build_spec(resolve_suite(["musc"], options={"demo": True})).methods == ["musc"]
