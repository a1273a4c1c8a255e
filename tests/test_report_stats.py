"""Statistics inside the report: dagger marks from paired tests, the CD diagram, shot curves, --no-stats."""

from __future__ import annotations

import numpy as np
import pytest

from adbench import metrics
from adbench.reports import render_report
from adbench.reports.render import build_report
from adbench.store import ResultsStore

from .fixtures.records import job_record


def _store(
    tmp_path,
    strengths,
    categories=("c1", "c2", "c3"),
    protocol="zero_shot",
    shots=(0,),
    seeds=(0,),
    sizes=None,
):
    """Records whose metrics are computed from the predictions stored beside them."""
    store = ResultsStore(tmp_path / "store")
    rng = np.random.default_rng(0)
    labels = np.array([0] * 25 + [1] * 25)
    masks = np.zeros((50, 16, 16), np.uint8)
    masks[25:, 3:9, 5:11] = 1
    for method, strength in strengths.items():
        for cat in categories:
            for k in shots:
                for seed in seeds:
                    s = strength + 0.05 * k
                    scores = (rng.normal(size=50) + s * labels).astype(np.float32)
                    maps = (rng.random(masks.shape) + 0.5 * s * masks).astype(np.float16)
                    values, _ = metrics.compute_metrics(labels, scores, masks, maps.astype(np.float32))
                    rec = job_record(
                        method,
                        "mvtec",
                        cat,
                        metrics=values,
                        protocol=protocol,
                        shots=k,
                        seed=seed,
                        n_test=50,
                        n_anomalous=25,
                        n_categories=len(categories),
                        eval_size=(sizes or {}).get(method, 64),
                    )
                    store.write_record(rec)
                    store.write_predictions(
                        rec.key, scores=scores, labels=labels, ids=np.arange(50), maps=maps, masks=masks
                    )
    return store


def _cells(report, table_id):
    table = next(t for t in report.tables if t.id == table_id)
    row = next(r for r in table.rows if r.label.startswith("MVTec"))
    return table, [c for c in row.cells if c.kind == "value"]


def test_dagger_marks_the_column_not_significantly_worse_than_the_best(tmp_path):
    store = _store(tmp_path, {"clip": 2.5, "winclip": 2.45, "patchead": 0.2})
    report = build_report(store, tmp_path / "out", resamples=200, plots=False, categories=False)
    table, cells = _cells(report, "metric-image_auroc")
    best = [c for c in cells if c.parts[0].rank == 1]
    assert len(best) == 1 and not best[0].tied
    tied = [c for c in cells if c.tied]
    worst = min(cells, key=lambda c: c.parts[0].value)
    assert len(tied) == 1 and not worst.tied  # the near-equal column is marked, the weak one is not
    assert any("Holm" in r and "DeLong" in r for r in table.remarks)


def test_no_stats_turns_marks_and_figures_off(tmp_path):
    store = _store(tmp_path, {"clip": 2.5, "winclip": 2.45, "patchead": 0.2})
    report = build_report(store, tmp_path / "out", stats=False, plots=False, categories=False)
    _, cells = _cells(report, "metric-image_auroc")
    assert not any(c.tied for c in cells) and not report.analysis


def test_report_shows_critical_difference_diagram_in_every_format(tmp_path):
    store = _store(tmp_path, {"clip": 2.5, "winclip": 1.5, "patchead": 0.2})
    out = tmp_path / "out"
    paths = render_report(store, out, ["html", "markdown", "latex"], resamples=100, plots=False)
    assert (out / "figures" / "cd_zero_shot_image_auroc.pdf").exists()
    html = next(p for p in paths if p.suffix == ".html").read_text()
    assert "Statistical comparison" in html and "Critical-difference diagram" in html and "†" in html
    tex = next(p for p in paths if p.name == "report.tex").read_text()
    assert "figures/cd_zero_shot_image_auroc.pdf" in tex
    md = next(p for p in paths if p.suffix == ".md").read_text()
    assert "cd_zero_shot_image_auroc" in md


def test_shot_curves_for_few_shot_columns(tmp_path):
    store = _store(
        tmp_path, {"patchead": 1.0, "anomalydino": 0.8}, protocol="few_shot", shots=(1, 2, 4), seeds=(0, 1)
    )
    report = build_report(store, tmp_path / "out", resamples=50, plots=False, categories=False)
    names = [p.name for p in report.analysis]
    assert "shots_mvtec_image_auroc.png" in names
    caption = report.figure_captions["shots_mvtec_image_auroc"]
    assert "std over seeds" in caption


@pytest.mark.parametrize("fmt", ["latex"])
def test_dagger_renders_in_latex_cells(tmp_path, fmt):
    from adbench.reports.formats import latex_cell
    from adbench.reports.model import Cell, Part

    assert r"\textsuperscript{\dag}" in str(latex_cell(Cell([Part("71.2", 71.2)], tied=True)))


def test_published_cells_note_whether_the_paper_lies_inside_the_reproduced_interval(tmp_path):
    store = _store(tmp_path, {"clip": 2.5, "winclip": 1.5})
    report = build_report(
        store, tmp_path / "out", published=True, resamples=100, plots=False, categories=False
    )
    table = next(t for t in report.tables if t.id == "metric-image_auroc")
    notes = [n for n in table.footnotes if "reproduced 95 % interval" in n]
    assert notes and all(("inside" in n) or ("above" in n) or ("below" in n) for n in notes)
    published = [
        c for r in table.rows for c in r.cells if c.kind == "published" and c.parts[0].value is not None
    ]
    assert any(c.marks for c in published)


def test_critical_difference_ranks_only_columns_a_table_would_rank_together(tmp_path, monkeypatch):
    """Columns evaluated at another size are another comparable group: never in the same diagram."""
    from adbench.reports import analysis_figures

    seen = []
    monkeypatch.setattr(
        analysis_figures, "cd_diagram", lambda result, data, out: seen.append(data.columns) or [out, out]
    )
    store = _store(
        tmp_path,
        {"clip": 2.5, "winclip": 1.5, "patchead": 0.2, "musc": 1.0},
        sizes={"patchead": 128, "musc": 128},
    )
    build_report(store, tmp_path / "out", resamples=50, plots=False, categories=False)
    assert seen and all(len(cols) == 2 for cols in seen)
    assert {frozenset(c) for c in seen} == {frozenset(seen[0]), frozenset(seen[-1])} and len(
        {frozenset(c) for c in seen}
    ) == 2


def test_unreadable_predictions_are_named_not_shown_as_a_missing_dagger(tmp_path):
    store = _store(tmp_path, {"clip": 2.5, "winclip": 2.45})
    victim = next(store.predictions_dir.iterdir())
    victim.write_bytes(victim.read_bytes()[:200])  # truncated: a damaged copy
    with pytest.warns(UserWarning, match="unreadable"):
        report = build_report(store, tmp_path / "out", resamples=50, plots=False, categories=False)
    assert any("No significance test" in n and "cannot be read (1)" in n for n in report.notes)
