"""MLflow tracker: logs each run's settings, every job's metrics and the rendered report to MLflow.

Enabled per run with ``adbench run --tracker mlflow`` (``pip install "adbench-zsad[mlflow]"``). The
tracking URI is ``$MLFLOW_TRACKING_URI`` when set, else ``file:<results>/mlruns`` beside the store, so
a run is tracked with no server. One MLflow run per adbench run, in the experiment
``$MLFLOW_EXPERIMENT_NAME`` (default ``adbench``).

**Choice:** MLflow 3 keeps the ``file:`` backend in maintenance mode and refuses it unless
``MLFLOW_ALLOW_FILE_STORE=true``; this tracker sets that flag for ``file:`` URIs only, since a
server-less local store is what the default promises. Point ``MLFLOW_TRACKING_URI`` at a server or a
``sqlite:///`` database (full ``mlflow`` package) to use those instead.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import warnings
from pathlib import Path
from typing import Any

from adbench import hookimpl
from adbench.protocol_catalog import takes_references
from adbench.trackers import Tracker

NAME = "mlflow"


def _flatten(prefix: str, obj: Any, out: dict[str, str]) -> dict[str, str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = str(obj)[:6000]  # MLflow's parameter value limit
    return out


def tracking_uri(store_root: str) -> str:
    """``$MLFLOW_TRACKING_URI``, else a file store beside the results."""
    return os.environ.get("MLFLOW_TRACKING_URI") or Path(store_root, "mlruns").resolve().as_uri()


#: MLflow accepts letters, digits, ``_ - . space /`` in metric names; '/' separates our parts.
_BAD_METRIC_CHARS = re.compile(r"[^A-Za-z0-9_.\- ]+")
#: Seconds to wait for a tracking server before the run goes on untracked (MLflow retries for minutes).
CONNECT_TIMEOUT_S = 3.0


def _part(value: object) -> str:
    """One metric-name part: settings such as ``layers=-2,-1`` or ``(-2, -1)`` made valid, no '..'."""
    text = _BAD_METRIC_CHARS.sub("_", str(value).replace("=", "-").replace(",", "_"))
    return re.sub(r"\.{2,}", ".", text).strip(" ") or "_"


def metric_key(record: dict[str, Any], metric: str) -> str:
    """One MLflow metric per job and metric: ``method/dataset/category[/kshot-seed]/metric``."""
    parts = [record["method"], record["dataset"], record["category"]]
    if takes_references(record.get("protocol", "")):
        parts.append(f"{record['shots']}shot-seed{record['seed']}")
    if record.get("variant"):
        parts.insert(1, record["variant"])
    return "/".join(_part(p) for p in [*parts, metric])


def check_reachable(uri: str) -> None:
    """A one-line ConnectionError within seconds when an http(s) tracking server does not answer."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "localhost", port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConnectionError(f"MLflow server {uri} unreachable ({exc}); this run is not tracked") from None


class MLflowTracker(Tracker):
    """Holds the MLflow run of the current adbench run (one per process)."""

    name = NAME
    description = "MLflow: run settings as params, every job's metrics, the report as artifacts"

    def __init__(self) -> None:
        self.client: Any = None
        self.run_id: str | None = None
        #: Jobs whose metrics could not be logged (the MLflow run is then marked FAILED).
        self.errors = 0

    @hookimpl
    def adbench_run_started(self, spec: Any, jobs: list[dict], store_root: str) -> None:
        """Open an MLflow run and log the resolved settings as parameters."""
        if not self.enabled(spec):
            return
        uri = tracking_uri(store_root)
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        check_reachable(uri)
        self.errors = 0
        from mlflow.tracking import MlflowClient

        from adbench.suite import suite_of

        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "adbench")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        run = self.client.create_run(experiment_id, run_name=f"adbench {'+'.join(spec.methods)}")
        self.run_id = run.info.run_id
        params = _flatten("", suite_of(spec, store_root), {})
        params["jobs"] = str(len(jobs))
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in sorted(params.items())]
        for start in range(0, len(items), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    @hookimpl
    def adbench_job_finished(self, record: dict) -> None:
        """Log one job's metrics (NaN metrics are skipped: MLflow stores them but charts cannot)."""
        if self.run_id is None or record.get("status") != "ok":
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(metric_key(record, m), float(v), now, 0)
            for m, v in (record.get("metrics") or {}).items()
            if v is not None and v == v
        ]
        if metrics:
            try:
                self.client.log_batch(self.run_id, metrics=metrics)
            except Exception:
                self.errors += 1  # counted so the run is not marked FINISHED; the caller warns
                raise

    @hookimpl
    def adbench_run_finished(self, spec: Any, summary: Any, store_root: str) -> None:
        """Log the run's counts and the rendered report (HTML, Markdown, CSV) as artifacts; close the run."""
        if self.run_id is None:
            return
        run_id, self.run_id = self.run_id, None
        try:
            for name in ("done", "skipped"):
                self.client.log_metric(run_id, f"jobs_{name}", float(getattr(summary, name, 0)))
            self.client.log_metric(run_id, "jobs_failed", float(len(getattr(summary, "failed", []))))
            from adbench.registry import get_registry
            from adbench.reports import render_report
            from adbench.store import ResultsStore

            with tempfile.TemporaryDirectory() as tmp:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    render_report(
                        ResultsStore(store_root),
                        Path(tmp),
                        ["html", "markdown", "csv"],
                        registry=get_registry(),
                    )
                self.client.log_artifacts(run_id, tmp, artifact_path="report")
        finally:
            status = "FAILED" if getattr(summary, "failed", None) or self.errors else "FINISHED"
            self.client.set_terminated(run_id, status=status)

    @hookimpl
    def adbench_trackers(self) -> list[MLflowTracker]:
        """This tracker (``adbench run --tracker mlflow``)."""
        return [self]


#: The plugin object the ``adbench`` entry point registers (its methods are the hook implementations).
TRACKER = MLflowTracker()
