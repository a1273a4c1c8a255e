"""Fault injection (SIGKILL at random points, then a rerun) and two runs sharing one store.

Runs are forked child processes executing ``Runner.run`` (what ``adbench run`` calls), so a kill is a real
SIGKILL of a process mid-write, and two runs really race for the same claims; forking after torch is
imported keeps each run well under a second.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from adbench import hookimpl
from adbench.jobs import RunSpec
from adbench.registry import Registry, set_registry
from adbench.runner import Runner
from adbench.store import ResultsStore

from .helpers import TinyPlugin, example_plugin_module, write_tiny_dataset

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
SEEDS = (0, 1, 2, 3)  # 2 categories x 4 seeds = 8 jobs


class SlowPlugin:
    """median_dev that takes a moment per job and logs each computation (category, seed, pid)."""

    log: Path | None = None

    @hookimpl
    def adbench_methods(self):
        from adbench_median import MedianDeviation

        plugin = self

        class Slow(MedianDeviation):
            name = "slow_median"

            def predict(self, images, ctx):
                time.sleep(0.05)
                if plugin.log is not None:
                    with open(plugin.log, "a") as fh:  # O_APPEND: one line per computation, atomic
                        fh.write(f"{ctx.category} {os.getpid()}\n")
                return super().predict(images, ctx)

        return [Slow]


def _spec(data: Path) -> RunSpec:
    return RunSpec(
        methods=["slow_median"],
        datasets=["tiny"],
        roots={"tiny": str(data)},
        seeds=SEEDS,
        overrides={"slow_median": {"image_size": ["32"]}},
        progress=False,
    )


def _child(data: Path, results: Path, log: Path | None, out: Path | None) -> None:
    plugin = SlowPlugin()
    plugin.log = log
    registry = Registry(autoload=False, plugins=[TinyPlugin(), example_plugin_module(), plugin])
    set_registry(registry)
    summary = Runner(_spec(data), ResultsStore(results, claim_expiry_s=30), registry).run()
    if out is not None:
        out.write_text(json.dumps({"done": summary.done, "skipped": summary.skipped}))
    os._exit(0)


def _start(*args) -> mp.Process:
    proc = mp.get_context("fork").Process(target=_child, args=args)
    proc.start()
    return proc


def _snapshot(store: ResultsStore) -> dict[tuple, tuple]:
    """(category, seed) -> (metrics, every stored array) of each record."""
    out = {}
    for rec in store.iter_records():
        assert rec["status"] == "ok"
        pred = store.read_predictions(rec["key"])
        out[(rec["category"], rec["seed"])] = (
            rec["key"],
            rec["metrics"],
            {k: v.tolist() for k, v in pred.items()},
        )
    return out


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    write_tiny_dataset(tmp_path / "data", n_normal=3, n_anom=3)
    return tmp_path / "data"


def test_sigkill_at_random_points_then_rerun_equals_uninterrupted_run(tmp_path: Path, data: Path) -> None:
    clean = tmp_path / "clean"
    t0 = time.perf_counter()
    proc = _start(data, clean, None, None)
    proc.join(60)
    duration = time.perf_counter() - t0
    expected = _snapshot(ResultsStore(clean))
    assert proc.exitcode == 0 and len(expected) == 2 * len(SEEDS)

    killed = tmp_path / "killed"
    rng = random.Random(7)
    for _ in range(4):  # each kill lands somewhere in a run that resumes the previous one's leftovers
        proc = _start(data, killed, None, None)
        time.sleep(rng.uniform(0.05, 0.9) * duration)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)  # reaped, as a shell reaps a killed command
    proc = _start(data, killed, None, None)
    proc.join(60)
    assert proc.exitcode == 0
    store = ResultsStore(killed)
    assert _snapshot(store) == expected
    assert not list(store.claims_dir.glob("*.claim"))  # claims of killed runs were broken and released
    keys = {p.stem for p in store.records_dir.glob("*.json")}
    assert keys == {p.stem for p in store.predictions_dir.glob("*.npz")}


def test_two_runs_sharing_a_store_compute_each_job_once(tmp_path: Path, data: Path) -> None:
    results, log = tmp_path / "results", tmp_path / "computed.log"
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    procs = [_start(data, results, log, out) for out in outs]
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    lines = log.read_text().splitlines()
    assert len(lines) == 2 * len(SEEDS)  # 8 jobs, each computed exactly once across both runs
    assert len({ln.split()[1] for ln in lines}) == 2  # and both runs did part of the work
    summaries = [json.loads(o.read_text()) for o in outs]
    assert sum(s["done"] for s in summaries) == 2 * len(SEEDS)
    assert all(s["done"] + s["skipped"] == 2 * len(SEEDS) for s in summaries)  # each waited for the rest
    assert len(_snapshot(ResultsStore(results))) == 2 * len(SEEDS)


def test_claims_are_exclusive_and_stale_ones_expire(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path, claim_expiry_s=5)
    with store.claim("k") as first, store.claim("k") as second:
        assert first and not second  # O_EXCL: one holder
    assert not store.claim_path("k").exists()  # released on completion

    dead = mp.get_context("fork").Process(target=os._exit, args=(0,))
    dead.start()
    dead.join()
    store.claims_dir.mkdir(exist_ok=True)
    path = store.claim_path("k")
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "time": time.time()}))
    with store.claim("k") as got:
        assert got  # its process is gone on this host: stale

    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "time": time.time()}))
    with store.claim("k") as got:
        assert not got  # another host, fresh heartbeat: live
    old = time.time() - 60
    os.utime(path, (old, old))
    with store.claim("k") as got:
        assert got  # heartbeat older than the expiry: stale
    np.testing.assert_equal(path.exists(), False)
