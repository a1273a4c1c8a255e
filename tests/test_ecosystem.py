"""Suite files, the Python API, lifecycle hooks, provenance and the MLflow tracker."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import adbench
from adbench.errors import AdbenchError
from adbench.registry import set_registry
from adbench.suite import build_spec, dump_suite, load_suite, suite_of

from .helpers import tiny_registry, write_tiny_dataset


@pytest.fixture
def tiny(tmp_path):
    """A hand-built registry (tiny dataset, the README's median plugin, the MLflow tracker)."""
    from adbench.plugins.mlflow_tracker import TRACKER
    from adbench.reports import formats

    root = tmp_path / "tiny"
    write_tiny_dataset(root)
    set_registry(tiny_registry(TRACKER, formats))
    yield root
    set_registry(None)


def _write(path, text):
    path.write_text(text)
    return path


def test_suite_round_trips_through_dump(tiny, tmp_path):
    suite = load_suite(
        _write(
            tmp_path / "s.toml",
            f"""
[run]
datasets = ["tiny"]
protocol = "batch_zero_shot"
seeds = [0, 1]

[roots]
tiny = "{tiny}"

[methods.median_dev]
blur = [3, 5]
""",
        )
    )
    spec = build_spec(suite, where="s.toml")
    assert spec.methods == ["median_dev"] and spec.seeds == (0, 1) and spec.roots == {"tiny": str(tiny)}
    assert spec.overrides == {"median_dev": {"blur": ["3", "5"]}}
    resolved = suite_of(spec)
    again = build_spec(load_suite(_write(tmp_path / "d.toml", dump_suite(resolved))))
    assert again == spec


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "[run]\nprotocl = 'few_shot'\n",
            r"s.toml: \[run\]: unknown key 'protocl'; did you mean 'protocol'\?",
        ),
        ("[runs]\n", r"s.toml: unknown key 'runs'; did you mean 'run'\?"),
        (
            "[methods.median_dev]\nblurr = 3\n",
            r"\[methods.median_dev\]: unknown key 'blurr'; did you mean 'blur'\?",
        ),
        (
            "[methods.median_dev]\nblur = 0\n",
            r"s.toml: \[methods.median_dev\] --set median_dev.blur=0: must be >= 1",
        ),
        ("[methods.median_dve]\n", r"unknown method 'median_dve'; did you mean 'median_dev'\?"),
        ("[run]\nseeds = 'x'\n", r"s.toml: \[run\] seeds = 'x': expected a list of int"),
        ("[run\n", r"s.toml: not valid TOML"),
    ],
)
def test_bad_suites_are_one_line_errors_naming_file_and_key(tiny, tmp_path, text, message):
    with pytest.raises(AdbenchError, match=message) as err:
        build_spec(load_suite(_write(tmp_path / "s.toml", text)), where="s.toml")
    assert "\n" not in str(err.value)


def test_python_api_runs_loads_and_reports(tiny, tmp_path):
    results = tmp_path / "results"
    frame = adbench.run(
        {"median_dev": {"blur": [3, 5]}}, datasets=["tiny"], roots={"tiny": str(tiny)}, results=results
    )
    assert len(frame) == 4 and set(frame["status"]) == {"ok"}  # 2 configs x 2 categories
    assert frame["image_auroc"].between(0, 1).all()
    assert len(adbench.load_results(results)) == 4
    paths = adbench.report(results, out=tmp_path / "report", formats=["markdown"])
    assert paths and all(p.exists() for p in paths)
    record = next((results / "records").glob("*.json")).read_text()
    import json

    prov = json.loads(record)["provenance"]
    assert prov["adbench"] == adbench.__version__ and prov["libraries"]["torch"]
    assert prov["suite"]["methods"] == {"median_dev": {"blur": [3, 5]}}
    assert {"hostname", "git_commit", "command", "cuda", "gpu_count"} <= set(prov)
    assert set(adbench.__all__) >= {"run", "load_results", "report"}
    from adbench.cli import cli

    shown = CliRunner().invoke(cli, ["results", "--format", "json", "--results", str(results)])
    rows = json.loads(shown.stdout)
    assert len(rows) == 4 and all(
        r["provenance"]["suite"]["methods"] == prov["suite"]["methods"] for r in rows
    )


def test_mlflow_tracker_logs_a_run_that_reads_back(tiny, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    adbench.run(
        ["median_dev"],
        datasets=["tiny"],
        roots={"tiny": str(tiny)},
        results=tmp_path / "r",
        trackers=["mlflow"],
    )
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("adbench").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["run.datasets"] == "['tiny']" and "methods.median_dev" not in run.data.params
    aurocs = {k: v for k, v in run.data.metrics.items() if k.endswith("/image_auroc")}
    assert set(aurocs) == {"median_dev/tiny/alpha/image_auroc", "median_dev/tiny/beta/image_auroc"}
    assert run.data.metrics["jobs_done"] == 2.0
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "report")]
    assert any(p.endswith(".md") for p in artifacts)


def test_a_failing_tracker_warns_and_the_run_goes_on(tiny, tmp_path, caplog):
    from adbench import hookimpl
    from adbench.registry import get_registry

    class Broken:
        @hookimpl
        def adbench_job_finished(self, record):
            raise RuntimeError("tracker down")

    get_registry().register(Broken())
    frame = adbench.run(["median_dev"], datasets=["tiny"], roots={"tiny": str(tiny)}, results=tmp_path / "r")
    assert set(frame["status"]) == {"ok"} and len(frame) == 2
    assert any("tracker down" in r.getMessage() for r in caplog.records)
