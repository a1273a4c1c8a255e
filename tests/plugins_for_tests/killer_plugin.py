"""Test plugins: a job observer, and a method that kills its own worker process the first time it scores a chosen category.

It stands for a worker lost mid-job (OOM kill, preempted node): the marker file makes the second
attempt (the rerun) succeed.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import torch

from adbench import hookimpl
from adbench.methods import Context, Method, MethodConfig, Prediction


@dataclass
class KillerConfig(MethodConfig):
    image_size: int = 32


class Killer(Method):
    name = "killer"
    config_cls = KillerConfig
    supports = frozenset({"batch_zero_shot"})
    default_protocol = "batch_zero_shot"
    backbone_fields = ()

    def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
        marker = Path(os.environ["ADBENCH_KILLER_MARKER"])
        if ctx.category == os.environ.get("ADBENCH_KILLER_CATEGORY") and not marker.exists():
            marker.write_text("killed once")
            os.kill(os.getpid(), signal.SIGKILL)
        maps = (images - images.median(dim=0).values).abs().mean(dim=1)
        return Prediction(scores=maps.flatten(1).amax(dim=1), maps=maps)


class Sleeper(Killer):
    """Scores as Killer does, after ``$ADBENCH_SLEEP_S`` seconds per category (a job long enough to interrupt)."""

    name = "sleeper"

    def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
        import time

        time.sleep(float(os.environ.get("ADBENCH_SLEEP_S", "0")))
        maps = (images - images.median(dim=0).values).abs().mean(dim=1)
        return Prediction(scores=maps.flatten(1).amax(dim=1), maps=maps)


@hookimpl
def adbench_methods():
    return [Killer, Sleeper]


#: Keys of the records this process was told about (``adbench_job_finished``).
SEEN: list[str] = []


@hookimpl
def adbench_job_finished(record):
    SEEN.append(record["key"])
