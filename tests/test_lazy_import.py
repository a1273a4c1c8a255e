"""`adbench --help`, `--version` and `adbench list <kind>` never import torch, open_clip, timm or
torchvision, yet still discover every plugin through its entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Runs the CLI in a fresh interpreter, then reports which heavy modules were really executed:
# lazy_loader leaves a proxy under sys.modules["torch"], so the test looks for torch's C extension.
_PROBE = """
import json, sys
from adbench.cli import main
sys.argv = ["adbench", *ARGS]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = ["torch._C", "torch.nn", "open_clip", "timm", "torchvision"]
print("@@probe@@" + json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def _probe(args: list[str]) -> tuple[str, dict]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.replace("ARGS", repr(args))],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    text, marker, tail = out.stdout.rpartition("@@probe@@")
    assert marker, out.stderr
    return text, json.loads(tail)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["list", "methods"], ["dma_sap", "kanoclip", "vip2clip", "musc", "anomalydino", "winclip"]),
        (["list", "datasets"], ["synthetic", "mvtec", "visa"]),
        (["list", "backbones"], ["clip-vitl14-336", "tiny-clip", "dinov2-vitb14"]),
        (["datasets", "list", "--sources"], ["CC BY-NC-SA 4.0", "VisA_20220922.tar"]),
        (["--help"], ["Usage"]),
        (["--version"], ["0."]),
    ],
)
def test_cli_listing_and_help_do_not_import_torch(args, expected):
    text, result = _probe(args)
    assert result["code"] in (0, None)
    assert result["loaded"] == [], f"adbench {' '.join(args)} imported {result['loaded']}"
    for word in expected:
        assert word in text


def test_listed_methods_keep_description_supports_and_provider():
    text, result = _probe(["list", "methods"])
    assert result["loaded"] == []
    row = next(line for line in text.splitlines() if line.startswith("dma_sap "))
    assert "Dual-Modality Attention" in row and "trained; zero-shot" in row and "adbench-zsad" in row
    assert "skipped" not in text  # every entry point loaded
