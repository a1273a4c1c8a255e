"""Few-shot references: every record lists the train images it used, and for one seed the sets are
nested across k (1-shot inside 2-shot inside 4-shot), so a shot curve compares like with like."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from adbench.cli import cli
from adbench.data import Category, Sample
from adbench.protocols import few_shot_references
from adbench.runner import Runner, RunSpec
from adbench.store import ResultsStore

from .helpers import tiny_registry, write_tiny_dataset


def _category(n: int) -> Category:
    train = [Sample(f"train/good/{i:03d}", Path(f"{i:03d}.png"), 0) for i in range(n)]
    return Category("bottle", train=train, test=[])


def test_reference_sets_are_nested_across_shots_for_each_seed():
    cat = _category(30)
    for seed in range(5):
        sets = [[s.id for s in few_shot_references(cat, k, seed)] for k in (1, 2, 4, 8, 16)]
        for small, large in zip(sets, sets[1:]):
            assert large[: len(small)] == small  # the k-shot set is the prefix of the 2k-shot set
        assert sets == [[s.id for s in few_shot_references(cat, k, seed)] for k in (1, 2, 4, 8, 16)]
    # seeds still draw different sets
    assert len({few_shot_references(cat, 4, s)[0].id for s in range(5)}) > 1


def test_few_shot_records_list_their_reference_ids(tmp_path):
    write_tiny_dataset(tmp_path / "data", categories=("alpha",))
    store = ResultsStore(tmp_path / "results")
    spec = RunSpec(
        methods=["median_dev"],
        datasets=["tiny"],
        roots={"tiny": str(tmp_path / "data")},
        protocol="few_shot",
        shots=(1, 2, 3),
        seeds=(0, 1),
        progress=False,
    )
    assert Runner(spec, store, tiny_registry()).run().failed == []
    shown = CliRunner().invoke(cli, ["results", "--format", "json", "--results", str(tmp_path / "results")])
    assert shown.exit_code == 0, shown.output
    records = json.loads(shown.output)
    refs = {(r["seed"], r["shots"]): r["reference_ids"] for r in records}
    assert len(refs) == 6
    train_ids = {f"train/good/{i:03d}" for i in range(3)}
    for seed in (0, 1):
        assert len(refs[(seed, 1)]) == 1 and set(refs[(seed, 3)]) == train_ids
        assert set(refs[(seed, 1)]) <= set(refs[(seed, 2)]) <= set(refs[(seed, 3)])
