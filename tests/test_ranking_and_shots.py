"""Mean ranks, the critical-difference diagram and shot curves, from a store frame."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from adbench.reports.ranking import cd_diagram, rank, rank_input
from adbench.reports.shot_curves import shot_curves, shot_table
from adbench.store import ResultsStore

from .fixtures.records import job_record


def _frame(tmp_path, records):
    store = ResultsStore(tmp_path / "store")
    for rec in records:
        store.write_record(rec)
    return store.frame()


def _metric(value):
    return {"image_auroc": value, "pixel_auroc": value}


def test_ranks_over_categories_equal_scipy_friedman_and_skip_partial_blocks(tmp_path):
    rng = np.random.default_rng(0)
    recs, table = [], {}
    for method, shift in (("clip", 0.0), ("winclip", 0.05), ("patchead", 0.1)):
        for cat in ("c1", "c2", "c3", "c4", "c5"):
            v = float(np.round(0.6 + shift + rng.uniform(0, 0.08), 4))
            table[(method, cat)] = v
            recs.append(job_record(method, "mvtec", cat, metrics=_metric(v)))
    recs.append(job_record("clip", "mvtec", "c6", metrics=_metric(0.9)))  # only one column ran c6
    data = rank_input(_frame(tmp_path, recs), "image_auroc", "categories")
    assert len(data.blocks) == 5 and data.dropped_blocks == 1
    result = rank(data)
    ref = stats.friedmanchisquare(*data.values.T)
    assert result.statistic == pytest.approx(ref.statistic)
    best = data.columns[int(np.argmin(result.mean_ranks))]
    assert best.startswith("PatchEAD")
    paths = cd_diagram(result, data, tmp_path / "out" / "cd_image_auroc")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)


def test_rank_input_none_with_a_single_column(tmp_path):
    recs = [job_record("clip", "mvtec", c, metrics=_metric(0.7)) for c in ("c1", "c2")]
    assert rank_input(_frame(tmp_path, recs), "image_auroc") is None


def test_shot_table_means_over_seeds_and_shared_categories(tmp_path):
    recs = []
    for k in (1, 2, 4):
        for seed in (0, 1, 2):
            for cat in ("c1", "c2"):
                if k == 4 and cat == "c2":
                    continue  # k = 4 missing c2: the curve uses c1 only at every k
                v = 0.5 + 0.05 * k + 0.01 * seed + (0.1 if cat == "c2" else 0)
                recs.append(
                    job_record(
                        "patchead", "mvtec", cat, protocol="few_shot", shots=k, seed=seed, metrics=_metric(v)
                    )
                )
    frame = _frame(tmp_path, recs)
    table = shot_table(frame, "image_auroc", "mvtec")
    assert list(table["shots"]) == [1, 2, 4] and set(table["categories"]) == {1}
    row = table[table["shots"] == 2].iloc[0]
    assert row["mean"] == pytest.approx(0.5 + 0.1 + 0.01) and row["std"] == pytest.approx(
        np.std([0, 0.01, 0.02])
    )
    paths = shot_curves(frame, "image_auroc", tmp_path / "fig")
    assert sorted(p.name for p in paths) == ["shots_mvtec_image_auroc.pdf", "shots_mvtec_image_auroc.png"]
