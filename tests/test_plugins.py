"""A third-party plugin installed through its own entry point is listed and evaluated end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .helpers import EXAMPLE_PLUGIN_DIR


def _install_fake_distribution(site: Path) -> None:
    """What `pip install` of the example plugin leaves behind: a dist-info with an entry point."""
    dist = site / "adbench_median-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: adbench-median\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[adbench]\nmedian_dev = adbench_median\n")


def _adbench(args: list[str], site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(EXAMPLE_PLUGIN_DIR)]))
    env.pop("ADBENCH_DISABLE_PLUGIN_AUTOLOAD", None)
    return subprocess.run(
        [sys.executable, "-m", "adbench.cli", *args], env=env, capture_output=True, text=True, timeout=600
    )


def test_third_party_plugin_runs_end_to_end(tmp_path):
    site = tmp_path / "site"
    _install_fake_distribution(site)
    listed = _adbench(["list", "methods"], site)
    assert listed.returncode == 0, listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("median_dev"))
    assert "adbench-median 0.1" in line and "training-free" in line

    results = tmp_path / "results"
    args = [
        "run",
        "--methods",
        "median_dev",
        "--categories",
        "brick",
        "--no-progress",
        "--results",
        str(results),
    ]
    run = _adbench(args, site)
    assert run.returncode == 0, run.stderr
    (record,) = [json.loads(p.read_text()) for p in (results / "records").glob("*.json")]
    assert record["method"] == "median_dev" and record["dataset"] == "synthetic" and record["status"] == "ok"
    assert 0.0 <= record["metrics"]["image_auroc"] <= 1.0
    rerun = _adbench(args, site)
    assert "0 jobs run, 1 already done" in rerun.stdout


def test_plugin_name_clash_names_both_packages(tmp_path):
    site = tmp_path / "site"
    _install_fake_distribution(site)
    clash = site / "clash-0.1.dist-info"
    clash.mkdir()
    (clash / "METADATA").write_text("Metadata-Version: 2.1\nName: clash\nVersion: 0.1\n")
    (clash / "entry_points.txt").write_text("[adbench]\nmedian_copy = adbench_median_copy\n")
    (site / "adbench_median_copy.py").write_text("from adbench_median import *  # noqa: F403\n")
    out = _adbench(["list", "methods"], site)
    assert out.returncode == 2
    assert "median_dev" in out.stderr and "adbench-median 0.1" in out.stderr and "clash 0.1" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_results_csv_is_machine_readable_and_random_weights_warn_on_stderr(tmp_path):
    import io

    import pandas as pd

    results = tmp_path / "results"
    args = [
        "run",
        "--methods",
        "patchead",
        "--set",
        "patchead.backbone=tiny-dinov2",
        "--set",
        "patchead.image_size=112",
    ]
    run = _adbench([*args, "--categories", "pill", "--no-progress", "--results", str(results)], tmp_path)
    assert run.returncode == 0, run.stderr
    assert "randomly initialised" in run.stdout  # the table output carries the warning
    out = _adbench(["results", "--format", "csv", "--results", str(results)], tmp_path)
    df = pd.read_csv(io.StringIO(out.stdout))
    assert list(df["method"]) == ["patchead"] and bool(df["random_weights"].iloc[0]) is True
    assert "randomly initialised" in out.stderr
