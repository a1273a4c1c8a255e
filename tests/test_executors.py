"""One plan, four ways to execute it: serial, local worker processes, shards, and a real Ray cluster."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adbench.errors import AdbenchError
from adbench.executors import parse_shard
from adbench.jobs import RunSpec
from adbench.registry import set_registry
from adbench.runner import Runner
from adbench.store import ResultsStore

from .helpers import EXAMPLE_PLUGIN_DIR, write_tiny_dataset

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def plan_env(tmp_path, monkeypatch):
    """Worker processes find the example plugin and the test plugins through ADBENCH_PLUGINS."""
    root = tmp_path / "data"
    write_tiny_dataset(root, categories=("alpha", "beta", "gamma"))
    paths = [str(EXAMPLE_PLUGIN_DIR), str(TESTS.parent), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    monkeypatch.setenv("ADBENCH_PLUGINS", "adbench_median,tests.plugins_for_tests.killer_plugin")
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN_DIR))
    monkeypatch.syspath_prepend(str(TESTS.parent))
    set_registry(None)
    yield root
    set_registry(None)


def _spec(root, **kw) -> RunSpec:
    base = dict(
        methods=["median_dev"],
        datasets=["folder"],
        roots={"folder": str(root)},
        overrides={"median_dev": {"blur": ["3", "5"]}},
        progress=False,
    )
    return RunSpec(**{**base, **kw})


def _records(store: ResultsStore) -> dict[str, dict]:
    return {r["key"]: r["metrics"] for r in store.iter_records() if r["status"] == "ok"}


def test_serial_local_shards_and_ray_give_identical_records(plan_env, tmp_path):
    serial = ResultsStore(tmp_path / "serial")
    summary = Runner(_spec(plan_env), serial).run()
    expected = _records(serial)
    assert summary.done == len(expected) == 6 and not summary.failed  # 2 configs x 3 categories

    from tests.plugins_for_tests.killer_plugin import SEEN

    SEEN.clear()
    local = ResultsStore(tmp_path / "local")
    assert Runner(_spec(plan_env, executor="local", workers=2), local).run().done == 6
    assert _records(local) == expected
    assert sorted(SEEN) == sorted(expected)  # observers (trackers) in the driver hear of every job once

    sharded = ResultsStore(tmp_path / "sharded")
    done = [Runner(_spec(plan_env, shard=f"{i}/2"), sharded).run().done for i in range(2)]
    assert sum(done) == 6 and min(done) > 0 and _records(sharded) == expected
    assert Runner(_spec(plan_env, shard="1/2"), sharded).run().done == 0  # nothing done twice

    pytest.importorskip("ray")
    ray_store = ResultsStore(tmp_path / "ray")
    assert Runner(_spec(plan_env, executor="ray"), ray_store).run().done == 6
    assert _records(ray_store) == expected


def test_a_killed_worker_is_replaced_and_its_groups_resubmitted_once(plan_env, tmp_path, monkeypatch):
    monkeypatch.setenv("ADBENCH_KILLER_MARKER", str(tmp_path / "marker"))
    monkeypatch.setenv("ADBENCH_KILLER_CATEGORY", "beta")
    store = ResultsStore(tmp_path / "r")
    spec = _spec(plan_env, methods=["killer"], overrides={}, executor="local", workers=2)
    first = Runner(spec, store).run()
    assert (tmp_path / "marker").exists()  # the worker died mid-job ...
    assert not first.failed and first.done == 3 and len(_records(store)) == 3  # ... and nothing was lost
    assert not list(store.claims_dir.glob("*.claim"))
    second = Runner(spec, store).run()
    assert second.skipped == 3 and second.done == 0


@pytest.mark.parametrize("text", ["2/2", "x/2", "1", "-1/3", "0/0"])
def test_bad_shards_are_one_line_errors(text):
    with pytest.raises(AdbenchError, match=r"--shard .*expected I/N"):
        parse_shard(text)


def test_job_keys_follow_results_compat_not_the_release(plan_env, tmp_path, monkeypatch):
    from adbench import jobs, runner

    def keys() -> list[str]:
        return [j.key for j in Runner(_spec(plan_env), ResultsStore(tmp_path)).plan()]

    before = keys()
    monkeypatch.setattr(runner, "__version__", "99.0")  # what records name
    assert keys() == before
    monkeypatch.setattr(jobs, "RESULTS_COMPAT", jobs.RESULTS_COMPAT + 1)  # what keys hash
    assert set(keys()).isdisjoint(before)


def test_plan_is_plain_data_and_groups_share_a_model(plan_env, tmp_path):
    import dataclasses
    import pickle

    from adbench.jobs import job_key
    from adbench.planner import group_jobs

    runner = Runner(_spec(plan_env), ResultsStore(tmp_path))
    specs = runner.plan()
    assert pickle.loads(pickle.dumps(specs)) == specs
    assert len(group_jobs(specs)) == 6  # training-free: one group per config and category
    # a job carries everything its key is made of: the key is recomputed from the job alone, and
    # another data fingerprint (a changed file) is another job
    assert all(job_key(s) == s.key for s in specs) and len({s.fingerprint for s in specs}) == 3
    assert job_key(dataclasses.replace(specs[0], fingerprint="other")) != specs[0].key


def test_a_changed_file_invalidates_only_its_category(plan_env, tmp_path):
    def keys() -> dict[str, str]:
        return {
            j.category: j.key for j in Runner(_spec(plan_env, overrides={}), ResultsStore(tmp_path)).plan()
        }

    before = keys()
    mask = next((plan_env / "beta" / "ground_truth").rglob("*.png"))
    data = bytearray(mask.read_bytes())
    data[-20] ^= 0xFF  # same size, other content
    mask.write_bytes(bytes(data))
    after = keys()
    assert after["beta"] != before["beta"]
    assert after["alpha"] == before["alpha"] and after["gamma"] == before["gamma"]


_DRIVER = """
import signal
import sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background shell ignores it)
from adbench.runner import Runner, RunSpec
from adbench.store import ResultsStore
spec = RunSpec(methods=["sleeper"], datasets=["folder"], roots={"folder": sys.argv[1]}, executor="local",
               workers=2, seeds=(0, 1, 2, 3), progress=False)
Runner(spec, ResultsStore(sys.argv[2])).run()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def _start_driver(root: Path, results: Path):
    """A driver running 12 slow jobs on 2 local workers; returns it and its workers' pids (from their claims)."""
    import json
    import subprocess
    import sys
    import time

    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, str(root), str(results)], stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    pids: set[int] = set()
    while len(pids) < 2 and time.time() < deadline:
        for claim in (results / "claims").glob("*.claim"):
            try:
                pids.add(json.loads(claim.read_text())["pid"])
            except (OSError, ValueError):
                pass
        time.sleep(0.2)
    assert len(pids) == 2, "the workers never claimed a job"
    return driver, pids


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads /proc")
def test_interrupt_stops_workers_and_frees_claims_and_workers_outlive_no_driver(
    plan_env, tmp_path, monkeypatch
):
    import signal
    import time

    monkeypatch.setenv("ADBENCH_SLEEP_S", "3")
    results = tmp_path / "r"
    driver, workers = _start_driver(plan_env, results)
    driver.send_signal(signal.SIGINT)  # what Ctrl-C sends
    driver.wait(timeout=20)
    time.sleep(0.5)
    assert not any(_alive(p) for p in workers)
    assert not list((results / "claims").glob("*.claim"))  # claims freed, not left behind
    assert len(list((results / "records").glob("*.json"))) < 12  # dispatch stopped at once

    driver, workers = _start_driver(plan_env, tmp_path / "r2")
    driver.kill()  # kill -9: nothing in the driver runs
    driver.wait(timeout=10)
    deadline = time.time() + 15
    while any(_alive(p) for p in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers)
