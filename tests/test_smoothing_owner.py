"""One owner smooths the maps, once: a method that smooths its own maps is never smoothed again by the
evaluation protocol, and the record states the sigma that was applied."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from adbench import hookimpl
from adbench.config import setting
from adbench.evaluation import engine_sigma, resolve_evaluation
from adbench.methods import Context, Method, MethodConfig, Prediction
from adbench.runner import Runner, RunSpec
from adbench.store import ResultsStore

from .helpers import tiny_registry, write_tiny_dataset


@dataclass
class SpikeConfig(MethodConfig):
    image_size: int = setting(32, ge=14)
    sigma: float = setting(2.0, ge=0)


class SelfSmoothing(Method):
    """A one-pixel spike per image, declared as already smoothed with ``config.sigma``."""

    name = "spike_self_smoothed"
    config_cls = SpikeConfig
    backbone_fields = ()
    smooths_own_maps = True

    @classmethod
    def map_sigma(cls, config: SpikeConfig) -> float:
        return float(config.sigma)

    def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
        maps = torch.zeros(len(images), 32, 32)
        maps[:, 16, 16] = 1.0
        return Prediction(scores=images.mean(dim=(1, 2, 3)), maps=maps)


class EngineSmoothed(SelfSmoothing):
    name = "spike_engine_smoothed"
    smooths_own_maps = False


class Plugin:
    @hookimpl
    def adbench_methods(self):
        return [SelfSmoothing, EngineSmoothed]


def test_protocol_sigma_is_skipped_for_a_method_that_smooths_its_maps():
    ev = resolve_evaluation("anomalyclip", 32, 2.0, method_smooths=True)
    assert ev.smoothing_sigma == 2.0 and engine_sigma(SelfSmoothing, ev) == 0.0
    ev = resolve_evaluation("anomalyclip", 32, 2.0)
    assert ev.smoothing_sigma == 4.0 and engine_sigma(EngineSmoothed, ev) == 4.0


def test_maps_are_smoothed_once_and_the_record_states_the_applied_sigma(tmp_path):
    write_tiny_dataset(tmp_path / "data", categories=("alpha",))
    store = ResultsStore(tmp_path / "results")
    spec = RunSpec(
        methods=["spike_self_smoothed", "spike_engine_smoothed"],
        datasets=["tiny"],
        roots={"tiny": str(tmp_path / "data")},
        eval_protocol="anomalyclip",
        eval_size="input",
        progress=False,
    )
    assert Runner(spec, store, tiny_registry(Plugin())).run().failed == []
    records = {r["method"]: r for r in store.iter_records()}
    own, engine = records["spike_self_smoothed"], records["spike_engine_smoothed"]
    assert own["smoothing_sigma"] == 2.0 and engine["smoothing_sigma"] == 4.0
    own_maps = store.read_predictions(own["key"])["maps"].astype(np.float32)
    engine_maps = store.read_predictions(engine["key"])["maps"].astype(np.float32)
    assert own_maps[:, 16, 16].min() == 1.0 and own_maps.sum() == len(own_maps)  # untouched
    assert engine_maps[:, 16, 16].max() < 0.05  # the protocol's sigma 4, applied by the engine
