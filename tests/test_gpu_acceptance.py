"""The GPU acceptance script in its CPU form (tiny backbones), so it cannot rot between GPU days."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_acceptance.py"


def acceptance():
    spec = importlib.util.spec_from_file_location("gpu_acceptance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_method_runs_through_the_runner_on_cpu_tiny(capsys):
    from adbench.backbones import weights
    from adbench.registry import get_registry

    original = weights.resolve_weights
    assert acceptance().main(["--device", "cpu", "--tiny"]) == 0
    assert weights.resolve_weights is original  # random weights only inside the script's run
    out = capsys.readouterr().out
    assert "FAILED" not in out
    table = out.split("peak memory:")[1]
    for name in get_registry().names("method"):
        assert f"\n{name} " in table
    assert "90.72 ms" in table  # AnomalyCLIP's published figure beside its row


def test_a_failing_method_makes_it_exit_non_zero(monkeypatch, capsys):
    from adbench.registry import get_registry

    cls = get_registry().method("clip")

    def broken(self, images, ctx):
        raise RuntimeError("kernel not supported")

    monkeypatch.setattr(cls, "predict", broken)
    assert acceptance().main(["--device", "cpu", "--tiny", "--methods", "clip"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "kernel not supported" in out
