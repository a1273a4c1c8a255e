"""musc and anomalydino end to end through the runner on tiny random backbones (records, names, protocols)."""

from __future__ import annotations

from adbench.jobs import RunSpec
from adbench.plugins import anomalydino, backbones, musc, patchead
from adbench.registry import Registry
from adbench.runner import Runner
from adbench.store import ResultsStore

from .helpers import TinyPlugin, write_tiny_dataset


def test_musc_and_anomalydino_run_beside_patchead(tmp_path):
    write_tiny_dataset(tmp_path / "data", categories=("alpha",))
    reg = Registry(autoload=False, plugins=[TinyPlugin(), backbones, patchead, musc, anomalydino])
    store = ResultsStore(tmp_path / "results")
    common = dict(datasets=["tiny"], roots={"tiny": str(tmp_path / "data")}, progress=False, demo=True)
    size = {"image_size": ["56"]}
    batch = RunSpec(
        methods=["patchead", "musc"],
        protocol="batch_zero_shot",
        overrides={"musc": size, "patchead": size},
        **common,
    )
    few = RunSpec(
        methods=["anomalydino"],
        protocol="few_shot",
        shots=(1,),
        seeds=(0,),
        overrides={"anomalydino": size},
        **common,
    )
    assert Runner(batch, store, reg).run().failed == []
    assert Runner(few, store, reg).run().failed == []
    records = {r["method"]: r for r in store.iter_records()}
    assert set(records) == {"patchead", "musc", "anomalydino"}
    for name, display in (("musc", "MuSc"), ("anomalydino", "AnomalyDINO")):
        rec = records[name]
        assert rec["status"] == "ok" and rec["method_title"] == display
        assert rec["published_name"] is None and rec["random_weights"] is True
        assert 0.0 <= rec["metrics"]["image_auroc"] <= 1.0
    assert records["musc"]["backbones"] == {"backbone": "tiny-clip"} or "tiny-clip" in str(
        records["musc"]["backbones"]
    )
    assert records["anomalydino"]["shots"] == 1
