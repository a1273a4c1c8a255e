"""Issue 21 (Reliability III): hostile names, damaged stores, option checks, executors under faults.

Each test failed before its fix. CLI cases run in-process through ``adbench.cli.main``, so they see
what a user sees: the output, the exit status, no traceback.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import warnings
from pathlib import Path

import pytest

from adbench import hookimpl
from adbench.errors import AdbenchError
from adbench.knowledge import KnowledgeProvider, describe
from adbench.registry import Registry, set_registry
from adbench.runner import Runner, RunSpec
from adbench.safe_names import safe_name, safe_path
from adbench.store import ResultsStore

from .helpers import TinyPlugin, example_plugin_module
from .test_reliability import cli, data, registry, run_args, spec  # noqa: F401 - fixtures


@pytest.fixture()
def done(registry, tmp_path: Path, data: Path) -> ResultsStore:
    """A store with the two tiny jobs of median_dev finished."""
    store = ResultsStore(tmp_path / "results")
    Runner(spec(data), store, registry).run()
    return store


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


# --- security: file names from data ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["x/../../../../PWNED", "/etc/passwd", "a\x00b", "a\nb", "..", ""])
def test_safe_name_is_one_component_under_its_root(tmp_path: Path, name: str) -> None:
    safe = safe_name(name)
    assert safe and "/" not in safe and "\x00" not in safe and "\n" not in safe and not safe.startswith(".")
    path = safe_path(tmp_path, "figures", name, suffix=".png")
    assert path.resolve().is_relative_to(tmp_path.resolve())
    assert safe_name("a/b") != safe_name("a-b")  # unsafe characters never make two names collide


def test_hostile_category_names_stay_in_the_report_and_are_escaped(done, tmp_path, monkeypatch, capsys):
    hostile = "x/../../../../PWNED_a&b_%$#{}~^<svg onload=alert(1)>\nrow"
    for path in done.records_dir.glob("*.json"):
        rec = json.loads(path.read_text())
        rec["category"] = hostile + rec["category"]
        path.write_text(json.dumps(rec))
    monkeypatch.setattr("adbench.sample_images.image_loader", lambda roots: lambda *a: {})
    out_dir = tmp_path / "deep" / "a" / "b" / "c" / "rep"
    before = _files(tmp_path)
    code, out = cli(
        monkeypatch, capsys, "report", "--figures", "--format", "markdown,latex",
        "--out", str(out_dir), "--results", str(done.root),
    )  # fmt: skip
    assert code == 0, out
    new = _files(tmp_path) - before
    assert new and all(f.startswith("deep/a/b/c/rep/") for f in new), new
    tex = (out_dir / "report.tex").read_text()
    for line in tex.splitlines():
        if "includegraphics" in line and "{figures/" in line:
            assert not set("&%$#{}~^\\") & set(line.split("{figures/")[1].rsplit("}", 1)[0]), line
    md = (out_dir / "report.md").read_text()
    assert not re.search(r"(?<!\\)<svg", md), md
    rows = [line for line in md.splitlines() if "PWNED" in line and line.startswith("|")]
    assert rows and all(line.rstrip().endswith("|") for line in rows)  # a newline never splits a row


def test_knowledge_provider_name_cannot_leave_the_home(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ADBENCH_HOME", str(tmp_path / "home"))
    provider = KnowledgeProvider("../../../x", lambda name: ["a broken part"], version="1")
    assert describe(provider, "screw") == ["a broken part"]
    written = [p for p in tmp_path.rglob("*.json")]
    assert written and all(p.is_relative_to(tmp_path / "home") for p in written), written


# --- knowledge providers: answers validated, failures are one job's ---------------------------------
@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("a scratch", "returned str"),
        (b"a scratch", "returned bytes"),
        (["a scratch", None], "NoneType item"),
        (None, "returned NoneType"),
        (["  "], "no description"),
    ],
)
def test_knowledge_answers_must_be_sentences(tmp_path, monkeypatch, answer, message) -> None:
    monkeypatch.setenv("ADBENCH_HOME", str(tmp_path))
    provider = KnowledgeProvider("bad", lambda name: answer, cached=False)
    with pytest.raises(AdbenchError, match=message):
        describe(provider, "screw")


def test_knowledge_provider_that_raises_is_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ADBENCH_HOME", str(tmp_path))

    def boom(name: str) -> list[str]:
        raise ConnectionError("LLM endpoint down\nmore detail")

    with pytest.raises(AdbenchError, match="failed on 'screw': ConnectionError: LLM endpoint down$"):
        describe(KnowledgeProvider("llm", boom), "screw")


def test_corrupt_knowledge_cache_is_rebuilt(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ADBENCH_HOME", str(tmp_path))
    provider = KnowledgeProvider("kb", lambda name: ["a crack"], version="2")
    describe(provider, "screw")
    (cache,) = tmp_path.rglob("*.json")
    for junk in (b"{not json", json.dumps({"descriptions": "abc"}).encode()):
        cache.write_bytes(junk)
        assert describe(provider, "screw") == ["a crack"]
        assert json.loads(cache.read_text())["descriptions"] == ["a crack"]


class FailingKnowledge:
    """A method whose key material asks a knowledge provider that fails, beside median_dev."""

    @hookimpl
    def adbench_methods(self):
        from adbench_median import MedianDeviation

        class Knowing(MedianDeviation):
            name = "knowing"

            @classmethod
            def key_material(cls, config, object_names):
                provider = KnowledgeProvider("down", lambda n: None, cached=False)
                return {"knowledge": describe(provider, object_names[0])}

        return [Knowing]


def test_failing_knowledge_provider_fails_only_that_methods_jobs(tmp_path, data, monkeypatch, capsys):
    reg = Registry(autoload=True, plugins=[TinyPlugin(), example_plugin_module(), FailingKnowledge()])
    set_registry(reg)
    try:
        args = run_args(data, tmp_path / "results")
        args[args.index("--methods") + 1] = "median_dev,knowing"
        args += ["--set", "knowing.image_size=32"]
        code, out = cli(monkeypatch, capsys, *args)
    finally:
        set_registry(None)
    assert code == 1 and "Traceback" not in out, out
    assert "2 jobs run" in out and "2 failed" in out and "knowledge provider 'down'" in out, out


# --- data loss and wrong numbers ---------------------------------------------------------------------
def test_failing_force_rerun_keeps_the_good_record(done, registry, data, monkeypatch) -> None:
    before = {p.name: p.read_bytes() for p in done.records_dir.glob("*.json")}

    def corrupt_fit_cache(self, job):
        raise RuntimeError("corrupt fit cache")

    monkeypatch.setattr(Runner, "run_job", corrupt_fit_cache)
    summary = Runner(spec(data, force=True), done, registry).run()
    assert len(summary.failed) == 2 and all("kept the earlier result" in f for f in summary.failed)
    assert {p.name: p.read_bytes() for p in done.records_dir.glob("*.json")} == before

    def disk_full(self, job):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Runner, "run_job", disk_full)
    with pytest.raises(AdbenchError, match="No space left on device.*stopped after 0 job"):
        Runner(spec(data, force=True), done, registry).run()
    assert {p.name: p.read_bytes() for p in done.records_dir.glob("*.json")} == before


def test_stray_record_copy_is_quarantined_not_a_second_row(done) -> None:
    first = sorted(done.records_dir.glob("*.json"))[0]
    rec = json.loads(first.read_text())
    rec["metrics"]["image_auroc"] = 0.497
    (done.records_dir / "copyof.json").write_text(json.dumps(rec))
    with pytest.warns(UserWarning, match="not its file name"):
        frame = done.frame()
    assert len(frame) == 2 and 0.497 not in set(frame["image_auroc"])
    assert not (done.records_dir / "copyof.json").exists()
    assert any(p.name.startswith("copyof.json") for p in done.quarantine_dir.iterdir())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("notes", 5),
        ("metrics", {"image_auroc": "high"}),
        ("extra", "str"),
        ("timing", "fast"),
        ("metrics", [1, 2]),
    ],
)
def test_record_of_wrong_types_is_quarantined_and_recomputed(done, registry, data, field, value) -> None:
    path = sorted(done.records_dir.glob("*.json"))[0]
    rec = json.loads(path.read_text())
    rec[field] = value
    path.write_text(json.dumps(rec))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = Runner(spec(data), done, registry).run()
        assert summary.done == 1 and summary.skipped == 1
        frame = done.frame()
    assert len(frame) == 2 and json.loads(path.read_text()).get(field) != value


def test_index_notices_an_edit_that_keeps_size_and_mtime(done) -> None:
    assert len(done.frame()) == 2  # the index now holds both rows
    path = sorted(done.records_dir.glob("*.json"))[0]
    text = path.read_text()
    rec = json.loads(text)
    old = rec["metrics"]["image_auroc"]
    new_text = text.replace(
        json.dumps(old), json.dumps(round(1 - old, 12)).ljust(len(json.dumps(old)))[: len(json.dumps(old))]
    )
    assert len(new_text) == len(text) and new_text != text
    st = path.stat()
    path.write_text(new_text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    frame = done.frame()
    assert json.loads(new_text)["metrics"]["image_auroc"] in set(frame["image_auroc"])


def test_read_only_store_and_index_folder_are_read_without_the_index(done, monkeypatch, capsys) -> None:
    expected = len(done.frame())
    index = done.root / "index.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    index.mkdir()
    assert len(done.frame()) == expected and index.is_dir()
    code, out = cli(monkeypatch, capsys, "results", "--results", str(done.root))
    assert code == 0 and "Traceback" not in out
    index.rmdir()
    done.frame()  # an index again
    real_connect = sqlite3.connect

    def read_only(path, *args, **kwargs):  # what a read-only filesystem answers (root ignores chmod)
        con = real_connect(f"file:{path}?mode=ro", *args, uri=True, **kwargs)
        return con

    monkeypatch.setattr(sqlite3, "connect", read_only)
    (done.records_dir / "late.json").write_text("{}")  # a change the index would have to write
    monkeypatch.setattr(ResultsStore, "quarantine", lambda self, path, why: None)
    assert len(done.frame()) == expected and index.is_file()
    code, out = cli(monkeypatch, capsys, "results", "--results", str(done.root))
    assert code == 0 and "Traceback" not in out, out


# --- options: one check for every door ----------------------------------------------------------------
def test_root_name_path_for_an_auxiliary_dataset_is_not_the_targets_root(
    registry, tmp_path, monkeypatch, capsys
):
    code, out = cli(
        monkeypatch, capsys, "run", "--datasets", "tiny", "--root", "tiny=/data/tiny",
        "--root", "mvtec=/data/mvtec_ad", "--dump-config",
    )  # fmt: skip
    assert code == 0, out
    assert 'tiny = "/data/tiny"' in out and 'mvtec = "/data/mvtec_ad"' in out, out
    code, out = cli(monkeypatch, capsys, "run", "--datasets", "tiny", "--root", "mvtecc=/x", "--dump-config")
    assert code == 2 and out.count("\n") == 1 and "no dataset named 'mvtecc'; did you mean 'mvtec'" in out, (
        out
    )


@pytest.mark.parametrize(
    ("suite", "message"),
    [
        ("eval_size = true", "--eval-size True"),
        ("eval_size = 1.5", "--eval-size 1.5"),
        ("categories = []", "categories is empty"),
        ("datasets = []", "datasets is empty"),
    ],
)
def test_suite_values_are_type_checked_and_lists_non_empty(
    registry, tmp_path, monkeypatch, capsys, suite, message
):
    path = tmp_path / "suite.toml"
    path.write_text(f"[run]\n{suite}\n")
    code, out = cli(monkeypatch, capsys, "run", "--config", str(path), "--dump-config")
    assert code == 2 and message in out and "Traceback" not in out, out


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"methods": "median_dev"}, "expected a list of names"),
        ({"methods": []}, "methods is empty"),
        ({"methods": ["median_dev"], "categories": []}, "categories is empty"),
        ({"methods": ["median_dev"], "results": ""}, "--results ''"),
    ],
)
def test_python_api_checks_types_like_the_cli(registry, tmp_path, monkeypatch, kwargs, message):
    import adbench

    monkeypatch.chdir(tmp_path)
    with pytest.raises(AdbenchError, match=re.escape(message)):
        adbench.run(datasets=["tiny"], roots={"tiny": str(tmp_path)}, **kwargs)
    assert not (tmp_path / "records").exists()


def test_empty_results_folder_is_refused(registry, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for command in (["run", "--dump-config"], ["results"]):
        code, out = cli(monkeypatch, capsys, *command, "--results", "")
        assert code == 2 and "--results ''" in out, out


def test_dump_config_keeps_the_demo_grids_set_and_none_values(registry, tmp_path, monkeypatch, capsys):
    code, out = cli(
        monkeypatch, capsys, "run", "--demo", "--set", "patchead.weights=none,random", "--dump-config"
    )
    assert code == 0 and "[sets.patchead]" in out and '"none"' in out, out
    path = tmp_path / "dumped.toml"
    path.write_text(out)
    code, again = cli(monkeypatch, capsys, "run", "--config", str(path), "--dump-config")
    assert code == 0 and again == out, again
    code, out = cli(
        monkeypatch, capsys, "run", "--methods", "patchead", "--set", "patchead.weights=none", "--dump-config"
    )
    assert code == 0 and 'weights = "none"' in out, out


def test_suite_roots_are_relative_to_the_file_and_a_bom_is_fine(registry, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "suites"
    folder.mkdir()
    path = folder / "suite.toml"
    path.write_bytes('\ufeff[roots]\ntiny = "data/tiny"\n'.encode())
    monkeypatch.chdir(tmp_path)
    code, out = cli(monkeypatch, capsys, "run", "--config", str(path), "--dump-config")
    assert code == 0 and f'tiny = "{folder / "data" / "tiny"}"' in out, out


def test_user_config_datasets_not_a_table_is_one_line(registry, tmp_path, monkeypatch, capsys):
    config = tmp_path / "config.toml"
    config.write_text("datasets = 5\n")
    monkeypatch.setenv("ADBENCH_CONFIG", str(config))
    monkeypatch.delenv("ADBENCH_DATA", raising=False)
    code, out = cli(
        monkeypatch,
        capsys,
        "run",
        "--methods",
        "median_dev",
        "--datasets",
        "tiny",
        "--results",
        str(tmp_path / "r"),
    )
    assert code == 2 and "datasets must be a table" in out and "Traceback" not in out, out


# --- MLflow ----------------------------------------------------------------------------------------------
def test_mlflow_metric_names_are_valid_for_tuple_settings_and_odd_categories() -> None:
    from mlflow.utils.validation import _validate_metric_name

    from adbench.plugins.mlflow_tracker import metric_key

    for variant in ("layers=-2,-1", "layers=(-2, -1)", "w=a/../b"):
        record = {"method": "patchead", "dataset": "tiny", "category": "x/../y<z>", "variant": variant}
        key = metric_key(record, "image_auroc")
        _validate_metric_name(key)
        assert key.startswith("patchead/") and key.endswith("/tiny/" + key.split("/")[3] + "/image_auroc")


class BrokenTracker:
    @hookimpl
    def adbench_job_finished(self, record):
        raise RuntimeError("tracker down")


def test_tracker_failure_is_reported_in_the_run_summary(tmp_path, data, monkeypatch, capsys):
    reg = Registry(autoload=True, plugins=[TinyPlugin(), example_plugin_module(), BrokenTracker()])
    set_registry(reg)
    try:
        code, out = cli(monkeypatch, capsys, *run_args(data, tmp_path / "results"))
    finally:
        set_registry(None)
    assert code == 0 and "Traceback" not in out, out
    assert "tracker: plugin" in out and "adbench_job_finished: tracker down (2x)" in out, out


def test_unreachable_mlflow_server_is_one_warning_within_seconds(
    registry, tmp_path, data, monkeypatch, capsys
):
    import time

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    t0 = time.perf_counter()
    code, out = cli(monkeypatch, capsys, *run_args(data, tmp_path / "results"), "--tracker", "mlflow")
    assert time.perf_counter() - t0 < 60
    assert code == 0 and "2 jobs run" in out and "Traceback" not in out, out
    assert out.count("unreachable") == 2, out  # the warning, and the summary's tracker line


# --- Ray ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("garbage", "expected auto, HOST:PORT"),
        ("127.0.0.1:9", "no Ray cluster answers there"),
        ("ray://127.0.0.1:9", "cannot start or reach Ray"),
    ],
)
def test_bad_ray_address_is_one_line_within_seconds(
    registry, tmp_path, data, monkeypatch, capsys, address, message
):
    import time

    pytest.importorskip("ray")
    t0 = time.perf_counter()
    code, out = cli(
        monkeypatch, capsys, *run_args(data, tmp_path / "r"), "--executor", "ray", "--address", address
    )
    assert time.perf_counter() - t0 < 30
    assert code == 2 and message in out and out.count("\n") == 1, out


def test_ray_tasks_get_the_drivers_absolute_paths(registry, tmp_path, data, monkeypatch):
    """Tasks run in the Ray head's working folder: relative --results and roots are resolved first."""
    import sys
    import types

    sent = []

    class Remote:
        def options(self, **kw):
            return self

        def remote(self, run_spec, store_root, groups, device):
            sent.append((run_spec.roots, store_root))
            return None

    fake = types.SimpleNamespace(
        is_initialized=lambda: True,
        cluster_resources=lambda: {},
        remote=lambda fn: Remote(),
        get=lambda ref: __import__("adbench.runner", fromlist=["RunSummary"]).RunSummary(),
        exceptions=types.SimpleNamespace(RayError=RuntimeError),
    )
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.chdir(data.parent)
    store = ResultsStore("results")
    Runner(spec(Path("data"), executor="ray"), store, registry).run()
    assert sent and all(root == str(tmp_path / "results") for _, root in sent)
    assert all(roots == {"tiny": str(data)} for roots, _ in sent)


# --- claims ----------------------------------------------------------------------------------------------
def _claim_all(store: ResultsStore, runner: Runner, **info) -> None:
    import socket
    import time

    store.claims_dir.mkdir(parents=True, exist_ok=True)
    for job in runner.plan():
        payload = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), **info}
        store.claim_path(job.key).write_text(json.dumps(payload))


def test_waiting_for_a_live_claim_says_what_it_waits_for(registry, tmp_path, data, caplog):
    store = ResultsStore(tmp_path / "r", claim_expiry_s=4.0)
    runner = Runner(spec(data), store, registry)
    _claim_all(store, runner)  # a live process (this one) that is no run of this plan
    with caplog.at_level("WARNING", logger="adbench"):
        summary = runner.run()  # the claims expire (no heartbeat) and the run goes on
    assert summary.done == 2
    notices = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert len(notices) == 2 and all(f"pid {os.getpid()}" in n and "delete the file" in n for n in notices)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times come from /proc")
def test_claim_of_a_reused_pid_is_stale(registry, tmp_path, data):
    import time

    store = ResultsStore(tmp_path / "r", claim_expiry_s=30.0)
    runner = Runner(spec(data), store, registry)
    _claim_all(store, runner, start=1)  # our pid, but a process that started at boot: not us
    t0 = time.perf_counter()
    assert runner.run().done == 2
    assert time.perf_counter() - t0 < 15


# --- other tracebacks, now one line ------------------------------------------------------------------------
def test_files_where_folders_go_are_one_line(registry, tmp_path, data, monkeypatch, capsys):
    import adbench

    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    cases = [
        (run_args(data, afile / "sub"), "is under the file"),
        (["results", "--results", str(afile / "sub")], "is under the file"),
        (["report", "--out", str(afile / "sub"), "--results", str(tmp_path / "r")], "--out"),
    ]
    for args, message in cases:
        code, out = cli(monkeypatch, capsys, *args)
        assert code == 2 and message in out and out.count("\n") == 1, out
    with pytest.raises(AdbenchError, match="is a file, not a folder"):
        adbench.load_results(afile)
    monkeypatch.setenv("ADBENCH_HOME", str(afile / "home"))
    code, out = cli(monkeypatch, capsys, "run", "--methods", "median_dev", "--results", str(tmp_path / "r2"))
    assert code == 2 and "Not a directory" in out and out.count("\n") == 1, out


def test_a_folder_where_a_claim_goes_is_broken_like_a_stale_claim(done, registry, data):
    key = sorted(done.records_dir.glob("*.json"))[0].stem
    done.record_path(key).unlink()
    done.claim_path(key).mkdir(parents=True)
    os.utime(done.claim_path(key), (1, 1))  # old: no writer is filling it
    summary = Runner(spec(data), done, registry).run()
    assert summary.done == 1 and not done.claim_path(key).exists()


def test_a_disk_that_fills_during_a_run_stops_it_and_keeps_what_was_written(
    done, registry, data, monkeypatch, capsys
):
    import errno

    from adbench.store import ResultsStore as Store

    calls = []

    def full(self, key, **arrays):
        calls.append(key)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.predictions_path(key)))
        return real(self, key, **arrays)

    real = Store.write_predictions
    monkeypatch.setattr(Store, "write_predictions", full)
    for path in done.records_dir.glob("*.json"):
        path.unlink()
    code, out = cli(monkeypatch, capsys, *run_args(data, done.root), "--set", "median_dev.blur=3,5")
    assert code == 2 and "No space left on device" in out and "stopped after 1 job(s)" in out, out
    assert out.count("\n") == 1 and len(list(done.records_dir.glob("*.json"))) == 1


# --- smaller ---------------------------------------------------------------------------------------------------
def test_figures_leave_out_a_column_without_predictions(done, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("adbench.sample_images.image_loader", lambda roots: lambda *a: {})
    next(done.predictions_dir.glob("*.npz")).unlink()
    out_dir = tmp_path / "rep"
    with pytest.warns(UserWarning, match="no stored predictions"):
        code, out = cli(
            monkeypatch, capsys, "report", "--figures", "--format", "markdown", "--out", str(out_dir),
            "--results", str(done.root),
        )  # fmt: skip
    assert code == 0, out
    assert len(list((out_dir / "figures").glob("*.png"))) == 1


def test_no_negative_zero_in_tables() -> None:
    from adbench.reports.tables import fmt, fmt_diff

    assert fmt(-0.04) == "0.0" and fmt(-0.06) == "-0.1" and fmt_diff(50.0, 50.04) == "+0.0"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "--figures", "--figure-images", "-1"], "--figure-images"),
        (["run", "--seeds", "0,0", "--dump-config"], "0 is given twice"),
    ],
)
def test_smaller_option_checks(registry, tmp_path, monkeypatch, capsys, args, message):
    code, out = cli(monkeypatch, capsys, *args, "--results", str(tmp_path / "r"))
    assert code == 2 and message in out and out.count("\n") == 1, out


def test_dry_run_and_the_api_honour_the_shard(registry, tmp_path, data, monkeypatch, capsys):
    import adbench

    code, out = cli(monkeypatch, capsys, *run_args(data, tmp_path / "r"), "--dry-run", "--shard", "0/2")
    row = next(line for line in out.splitlines() if line.startswith("median_dev"))
    assert row.split()[2] == "1", out  # one of the two categories' groups
    frames = [
        adbench.run(
            {"median_dev": {"image_size": 32}}, datasets=["tiny"], roots={"tiny": str(data)},
            results=tmp_path / "api", shard=f"{i}/2",
        )
        for i in range(2)
    ]  # fmt: skip
    assert [len(f) for f in frames] == [1, 1] and set(frames[0]["key"]).isdisjoint(frames[1]["key"])


def test_large_plans_and_more_workers_than_cores_warn(caplog) -> None:
    from adbench.run_options import check_workers, warn_if_large

    with caplog.at_level("WARNING", logger="adbench"):
        warn_if_large(RunSpec(methods=["patchead"], seeds=tuple(range(10_001))))
        check_workers(["cpu"] * ((os.cpu_count() or 1) + 1))
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "planning at least 10001 jobs" in text and "more worker processes than the" in text


def test_gpu_devices_without_cuda_name_devices_not_device() -> None:
    import torch

    from adbench.run_options import check_workers

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(AdbenchError, match="--devices 0: no CUDA GPU on this machine; use --workers N"):
        check_workers(["cuda:0"])


# --- the walk: every input of the issue through the CLI: one line, the right exit code, no lost record -------
def _hostile_names(store: ResultsStore, tmp: Path) -> list[str]:
    for path in store.records_dir.glob("*.json"):
        rec = json.loads(path.read_text())
        rec["category"] = "x/../../../../PWNED_&%$#{}~^<svg onload=1>\n" + rec["category"]
        path.write_text(json.dumps(rec))
    return ["report", "--format", "markdown,latex", "--out", str(tmp / "rep")]


def _stray_copy(store: ResultsStore, tmp: Path) -> list[str]:
    first = sorted(store.records_dir.glob("*.json"))[0]
    (store.records_dir / "copyof.json").write_bytes(first.read_bytes())
    return ["results"]


def _wrong_types(store: ResultsStore, tmp: Path) -> list[str]:
    path = sorted(store.records_dir.glob("*.json"))[0]
    path.write_text(json.dumps({**json.loads(path.read_text()), "timing": "fast"}))
    return ["RUN"]  # quarantined and recomputed


def _suite(text: str):
    def make(store: ResultsStore, tmp: Path) -> list[str]:
        (tmp / "suite.toml").write_bytes(text.encode())
        return ["run", "--config", str(tmp / "suite.toml"), "--dump-config"]

    return make


def _args(*args: str):
    return lambda store, tmp: [a.replace("TMP", str(tmp)) for a in args]


def _index_folder(store: ResultsStore, tmp: Path) -> list[str]:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store.root / 'index.sqlite'}{suffix}").unlink(missing_ok=True)
    (store.root / "index.sqlite").mkdir()
    return ["results"]


def _user_config(store: ResultsStore, tmp: Path) -> list[str]:
    (tmp / "config.toml").write_text("datasets = 5\n")
    os.environ["ADBENCH_CONFIG"] = str(tmp / "config.toml")  # restored by the test's monkeypatch
    return ["run", "--methods", "median_dev", "--datasets", "tiny"]


def _claim_folder(store: ResultsStore, tmp: Path) -> list[str]:
    path = sorted(store.records_dir.glob("*.json"))[0]
    store.claim_path(path.stem).mkdir(parents=True)
    os.utime(store.claim_path(path.stem), (1, 1))
    path.unlink()
    return ["RUN"]


def _afile(store: ResultsStore, tmp: Path) -> Path:
    (tmp / "afile").write_text("x")
    return tmp / "afile"


WALK3 = {  # name: (set-up returning the arguments ("RUN": the tiny run), exit status, text in the output)
    "hostile category names": (_hostile_names, 0, "report.md"),
    "--root for an auxiliary": (
        _args("run", "--root", "tiny=/d", "--root", "mvtec=/m", "--dump-config"),
        0,
        "mvtec",
    ),
    "--root of no dataset": (_args("run", "--root", "nosuch=/x", "--dump-config"), 2, "no dataset named"),
    "stray record copy": (_stray_copy, 0, "median_dev"),
    "record of wrong types": (_wrong_types, 0, "1 jobs run, 1 already done"),
    "eval_size = true": (_suite("[run]\neval_size = true\n"), 2, "--eval-size"),
    "categories = []": (_suite("[run]\ncategories = []\n"), 2, "is empty"),
    "BOM in a suite": (_suite("\ufeff[run]\nseeds = [0]\n"), 0, "seeds"),
    '--results ""': (_args("run", "--results", "", "--dump-config"), 2, "--results ''"),
    "index.sqlite a folder": (_index_folder, 0, "median_dev"),
    "datasets = 5 in the user config": (_user_config, 2, "datasets must be a table"),
    "a claim that is a folder": (_claim_folder, 0, "1 jobs run"),
    "--results under a file": (
        lambda s, t: ["results", "--results", str(_afile(s, t) / "sub")],
        2,
        "under the file",
    ),
    "report --out under a file": (
        lambda s, t: ["report", "--out", str(_afile(s, t) / "o")],
        2,
        "under the file",
    ),
    "negative --figure-images": (_args("report", "--figures", "--figure-images", "-1"), 2, "--figure-images"),
    "duplicate seeds": (_args("run", "--seeds", "0,0", "--dump-config"), 2, "given twice"),
    "--address garbage": (_args("RUN", "--executor", "ray", "--address", "garbage"), 2, "--address"),
    "--address nobody answers": (_args("RUN", "--executor", "ray", "--address", "127.0.0.1:9"), 2, "no Ray"),
}


@pytest.mark.parametrize("case", sorted(WALK3))
def test_walk_every_listed_input_is_one_line_and_loses_nothing(
    registry, tmp_path, data, monkeypatch, capsys, case
):
    monkeypatch.setenv("ADBENCH_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setattr("adbench.sample_images.image_loader", lambda roots: lambda *a: {})
    store = ResultsStore(tmp_path / "results")
    Runner(spec(data), store, registry).run()
    kept = {p.name for p in store.records_dir.glob("*.json")}
    prepare, status, text = WALK3[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = prepare(store, tmp_path)
        if args[0] == "RUN":
            args = run_args(data, store.root) + args[1:]
        elif "--results" not in args:
            args = [*args, "--results", str(store.root)]
        code, out = cli(monkeypatch, capsys, *args)
    assert "Traceback" not in out and code == status and text in out, out
    if code == 2:
        assert len(out.strip().splitlines()) == 1, out
    assert kept <= {p.name for p in store.records_dir.glob("*.json")} | {"copyof.json"}  # no record lost
