"""--precision reaches every stage: backbone forward, head, similarity and training run in the precision
the record states (tested on the CPU with CPU bf16 autocast)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import adbench.plugins.backbones as builtin
import adbench.precision as precision_mod
from adbench.backbones import build_backbone
from adbench.plugins import aprilgan, backbones
from adbench.precision import BF16, FP32, active_precision, autocast, precision_scope
from adbench.registry import Registry
from adbench.runner import Runner, RunSpec
from adbench.store import ResultsStore

from .helpers import TinyPlugin, write_tiny_dataset


def _linear_dtypes(fn) -> set[torch.dtype]:
    """dtypes of every nn.Linear output while ``fn`` runs (backbone blocks, heads, projections)."""
    seen: set[torch.dtype] = set()

    def hook(module, _inputs, output):
        if isinstance(module, nn.Linear) and torch.is_tensor(output):
            seen.add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        fn()
    finally:
        handle.remove()
    return seen


@pytest.fixture(scope="module")
def clip():
    return build_backbone("tiny-clip", registry=Registry(autoload=False, plugins=[builtin]))


def test_fp32_holds_inside_an_outer_bf16_autocast(clip):
    # the old Backbone.autocast entered bf16 by itself (CUDA) and did nothing elsewhere, so an
    # enclosing autocast decided the dtype whatever the run asked for
    images = torch.rand(1, 3, 112, 112)
    with torch.autocast("cpu", dtype=torch.bfloat16), precision_scope(FP32):
        assert _linear_dtypes(lambda: clip.forward_tokens(images, [2, -1])) == {torch.float32}


def test_bf16_scope_reaches_the_backbone_on_any_device(clip):
    images = torch.rand(1, 3, 112, 112)
    with precision_scope(BF16):
        assert _linear_dtypes(lambda: clip.forward_tokens(images, [-1])) == {torch.bfloat16}
    assert _linear_dtypes(lambda: clip.forward_tokens(images, [-1])) == {torch.float32}


def test_default_outside_a_scope_is_bf16_on_cuda_only():
    assert active_precision("cpu") == FP32 and active_precision(torch.device("cuda")) == BF16
    with precision_scope(FP32):
        assert active_precision(torch.device("cuda")) == FP32
        with autocast("cpu"):
            assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="precision"):
        with precision_scope("fp16"):
            pass


@pytest.mark.parametrize("requested, expected", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_every_stage_of_a_job_runs_in_the_recorded_precision(tmp_path, monkeypatch, requested, expected):
    # CUDA's policy on the CPU (bf16 autocast unless fp32 is asked for) so both branches run here
    monkeypatch.setattr(precision_mod, "effective_precision", lambda r, d: FP32 if r == "fp32" else BF16)
    monkeypatch.setenv("ADBENCH_CACHE", str(tmp_path / "cache"))
    write_tiny_dataset(tmp_path / "data", categories=("alpha", "beta"), size=32)
    reg = Registry(autoload=False, plugins=[TinyPlugin(), backbones, aprilgan])
    spec = RunSpec(
        methods=["aprilgan"],
        datasets=["tiny"],
        roots={"tiny": str(tmp_path / "data")},
        categories=["alpha"],
        train_on=["tiny"],
        overrides={"aprilgan": {"image_size": ["56"], "epochs": ["1"]}},
        demo=True,
        precision=requested,
        progress=False,
    )
    store = ResultsStore(tmp_path / "results")
    seen = _linear_dtypes(lambda: Runner(spec, store, reg).run())
    (record,) = list(store.iter_records())
    assert record["status"] == "ok", record.get("error")
    assert record["precision"] == (FP32 if requested == "fp32" else BF16)
    assert seen == {expected}  # backbone, trained head, training and prediction alike


def test_a_fit_is_keyed_by_the_precision_it_trained_in():
    from adbench.training import fit_key

    from .test_training import _toy

    method = _toy()
    with precision_scope(FP32):
        fp32 = fit_key(method, "fp", 0)
    with precision_scope(BF16):
        bf16 = fit_key(method, "fp", 0)
    assert fp32 != bf16  # a bf16 fit is never reused by an fp32 job (its record would say fp32)
