"""Reports compare only like with like: each test builds a store where the old report misled."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adbench.datasets import btad, mvtec_style, visa
from adbench.errors import AdbenchError
from adbench.record import SCHEMA_VERSION, JobRecord
from adbench.registry import Registry
from adbench.reports import formats, render_report
from adbench.reports.figures import most_disagreeing
from adbench.reports.tables import ReproducedGrid

from .fixtures.records import job_record, write_store

#: The report formats and the dataset plugins a published-only report takes titles and order from.
REGISTRY = Registry(autoload=False, plugins=[formats, mvtec_style, visa, btad])
CATS = [f"c{i}" for i in range(6)]


def auroc(value: float) -> dict[str, float]:
    return {"image_auroc": value}


def render(tmp_path: Path, records, **options) -> tuple[str, Path]:
    store = write_store(tmp_path / "store", records)
    out = tmp_path / "out"
    render_report(store, out, ["html", "csv"], registry=REGISTRY, categories=False, plots=False, **options)
    return (out / "report.html").read_text(), out


def table(html: str, table_id: str) -> str:
    match = re.search(rf'<table id="{re.escape(table_id)}">(.*?)(?=<table|</body>)', html, re.S)
    assert match, table_id
    return match.group(1)


def row(html_table: str, label: str) -> list[str]:
    match = re.search(rf"<tr[^>]*><th>{re.escape(label)}</th>(.*?)</tr>", html_table, re.S)
    assert match, label
    return re.findall(r'<td class="(?!info)[^"]*">(.*?)</td>', match.group(1), re.S)


def plain(cell: str) -> str:
    return re.sub(r"<sup>.*?</sup>", "", re.sub(r"<(?!/?sup)[^>]+>", "", cell)).strip()


def headers(html_table: str) -> list[str]:
    head = html_table.split("</thead>", 1)[0]
    return [re.sub("<[^>]+>", " ", h) for h in re.findall(r'<th class="col"[^>]*>(.*?)</th>', head, re.S)]


def batch_vs_few_shot() -> list[JobRecord]:
    """Batch zero-shot on 6 categories (99.7 overall, 99.2 on c0, c1); few-shot on 2 only (94.1)."""
    recs = [
        job_record(
            "patchead", "mvtec", c, metrics=auroc(0.992 if i < 2 else 0.9995), protocol="batch_zero_shot"
        )
        for i, c in enumerate(CATS)
    ]
    recs += [
        job_record("patchead", "mvtec", c, metrics=auroc(0.941), protocol="few_shot", shots=1, seed=s)
        for c in CATS[:2]
        for s in (0, 1, 2)
    ]
    return recs


def test_columns_over_their_own_categories_and_shared_subset_on_request(tmp_path):
    html, out = render(tmp_path, batch_vs_few_shot())
    # zero-shot and few-shot are separate tables; each cell over its own categories, marked
    assert plain(row(table(html, "metric-image_auroc-zero_shot"), "MVTec AD")[0]) == "99.7"
    assert plain(row(table(html, "metric-image_auroc-few_shot"), "MVTec AD")[0]) == "94.1 ± 0.0 (2/6)"
    assert "shared-metric" not in html
    shared, _ = render(tmp_path / "shared", batch_vs_few_shot(), coverage="shared")
    t = table(shared, "shared-metric-image_auroc-zero_shot")
    # the explicit subset table says so in the row label and |C|
    assert (
        plain(row(t, "MVTec AD (shared: c0, c1)")[0]) == "99.2"
        and '<td class="info">2/6 (paper 15)</td>' in t
    )
    assert plain(row(table(shared, "metric-image_auroc-zero_shot"), "MVTec AD")[0]) == "99.7"
    csv = pd.read_csv(out / "report.csv")
    few = csv[(csv.level == "dataset") & (csv.protocol == "few_shot")]
    assert few["coverage"].iloc[0] == "2/6" and few["n_seeds"].iloc[0] == 3


def test_failed_categories_mark_the_cell_and_leave_the_ranking(tmp_path):
    """A method that failed on one category used to be bolded over methods that ran all six."""
    recs = [job_record("winclip", "mvtec", c, metrics=auroc(0.99)) for c in CATS[:5]]
    recs.append(job_record("winclip", "mvtec", "c5", status="failed", error="CUDA out of memory\ntrace"))
    recs += [job_record("patchead", "mvtec", c, metrics=auroc(0.95)) for c in CATS]
    recs += [job_record("dma_sap", "mvtec", c, metrics=auroc(0.90)) for c in CATS]
    html, _ = render(tmp_path, recs, coverage="all")
    t = table(html, "metric-image_auroc")
    cells = dict(zip(["dma_sap", "patchead", "winclip"], row(t, "MVTec AD")))
    assert plain(cells["winclip"]) == "99.0 (5/6)" and "<strong>" not in cells["winclip"]
    assert "<strong>" in cells["patchead"]
    assert "mvtec/c5: job failed: CUDA out of memory" in t.replace("MVTec AD/", "mvtec/")
    default, _ = render(tmp_path / "default", recs)
    assert "<strong>" not in row(table(default, "metric-image_auroc"), "MVTec AD")[2]


def test_a_store_half_filled_by_a_kill_marks_the_cell(tmp_path):
    recs = [job_record("patchead", "mvtec", c, metrics=auroc(0.9), n_categories=6) for c in CATS]
    recs += [job_record("winclip", "mvtec", c, metrics=auroc(0.99), n_categories=6) for c in CATS[:3]]
    recs += [job_record("dma_sap", "mvtec", c, metrics=auroc(0.8), n_categories=6) for c in CATS]
    html, _ = render(tmp_path, recs, coverage="all")
    cells = row(table(html, "metric-image_auroc"), "MVTec AD")
    assert plain(cells[2]) == "99.0 (3/6)" and "<strong>" not in cells[2] and "<u>" not in cells[2]
    assert "<strong>" in cells[1]  # the best of the two complete columns (no underline with two)
    # a killed single-method run still says how much of the dataset it covers
    alone, _ = render(tmp_path / "alone", recs[6:9])
    assert plain(row(table(alone, "metric-image_auroc"), "MVTec AD")[0]) == "99.0 (3/6)"


def test_each_failed_cell_quotes_its_own_error(tmp_path):
    recs = [job_record("patchead", d, "c0", metrics=auroc(0.9)) for d in ("mvtec", "visa")]
    recs += [
        job_record("winclip", "mvtec", "c0", status="failed", error="CUDA out of memory"),
        job_record("winclip", "visa", "c0", status="failed", error="image file truncated: 012.png"),
    ]
    store = write_store(tmp_path / "store", recs)
    render_report(store, tmp_path / "out", ["html"], registry=REGISTRY, plots=False)
    html = (tmp_path / "out" / "report.html").read_text()
    t = table(html, "metric-image_auroc")
    assert "CUDA out of memory" in t and "image file truncated: 012.png" in t
    for dataset, error in (("mvtec", "CUDA out of memory"), ("visa", "image file truncated: 012.png")):
        cat = table(html, f"category-image_auroc-{dataset}")
        notes = re.findall(r"<li>(.*?)</li>", cat)
        cells = row(cat, "c0")
        marks = [int(m) for m in re.findall(r"<sup>(\d+)</sup>", cells[1])]
        assert [notes[m - 1] for m in marks] == [f"job failed: {error}"]


def ablation_records(epochs_a: int = 2) -> list[JobRecord]:
    """D on 6 categories (0.99 on c2-c5, 0.80 on c0, c1); A-C on c0, c1 only (0.85-0.89)."""
    recs = [
        job_record(
            "dma_sap",
            "mvtec",
            c,
            metrics=auroc(0.80 if i < 2 else 0.99),
            config={"variant": "D", "epochs": 2},
        )
        for i, c in enumerate(CATS)
    ]
    for v, score, epochs in (("A", 0.85, epochs_a), ("B", 0.87, 2), ("C", 0.89, 2)):
        recs += [
            job_record("dma_sap", "mvtec", c, metrics=auroc(score), config={"variant": v, "epochs": epochs})
            for c in CATS[:2]
        ]
    return recs


def test_ablation_rows_say_setting_and_value_and_partial_rows_are_not_ranked(tmp_path):
    html, _ = render(tmp_path, ablation_records(), ablation="dma_sap.variant")
    t = table(html, "ablation-dma_sap.variant")
    values = {v: plain(row(t, f"variant = {v}")[0]) for v in "ABCD"}
    # D over its 6 categories; A-C over 2 of 6, marked and never ranked against D
    assert values["D"].startswith("92.7") and values["C"].startswith("89.0 (partial)")
    assert "<strong>" not in t.split("</table>", 1)[0]
    # the settings held fixed are in the note, in words (epochs an integer, not 2.0)
    assert "Held fixed: epochs 2, zero-shot, eval size 64." in t


def test_ablation_refuses_records_that_differ_in_another_setting(tmp_path):
    with pytest.raises(AdbenchError, match=r"also differ in epochs \(2, 5\)"):
        render(tmp_path, ablation_records(epochs_a=5), ablation="dma_sap.variant")


def test_records_that_differ_in_any_setting_are_separate_columns(tmp_path):
    """eval size, train-on policy and a field this schema does not know each split columns."""
    base = {"metrics": auroc(0.9), "created": "2026-01-01T00:00:00Z"}
    recs = [
        job_record("dma_sap", "mvtec", "c0", **base, config={"variant": "D"}),
        job_record(
            "dma_sap",
            "mvtec",
            "c0",
            metrics=auroc(0.5),
            created="2026-02-01T00:00:00Z",
            config={"variant": "D"},
            eval_size=256,
        ),
        job_record("patchead", "mvtec", "c0", **base, extra={"tiling": "none"}),
        job_record(
            "patchead",
            "mvtec",
            "c0",
            metrics=auroc(0.6),
            created="2026-02-01T00:00:00Z",
            extra={"tiling": "sliding"},
        ),
    ]
    html, _ = render(tmp_path, recs)
    t = table(html, "metric-image_auroc")
    assert sorted(plain(c) for c in row(t, "MVTec AD")) == ["50.0", "60.0", "90.0", "90.0"]
    assert "eval size 256" in html and "tiling sliding" in html
    grid = ReproducedGrid(write_store(tmp_path / "s2", recs).frame())
    assert grid.n_duplicates == 0 and len(grid.keys) == 4


def test_same_job_rerun_is_superseded_only_when_every_setting_matches(tmp_path):
    old = job_record("patchead", "mvtec", "c0", metrics=auroc(0.5), created="2026-01-01T00:00:00Z")
    new = job_record("patchead", "mvtec", "c0", metrics=auroc(0.9), created="2026-03-01T00:00:00Z")
    grid = ReproducedGrid(write_store(tmp_path / "s", [old, new]).frame())
    assert grid.n_duplicates == 1 and grid.stat(0, "mvtec", "image_auroc").mean == pytest.approx(90.0)


def test_record_schema_round_trip_old_records_and_unknown_fields(tmp_path):
    rec = job_record("patchead", "mvtec", "c0", metrics=auroc(0.9), provenance={"git": "abc"})
    data = rec.to_dict()
    assert data["schema_version"] == SCHEMA_VERSION and data["provenance"] == {"git": "abc"}
    # provenance never splits a column; an unknown field does (it might change the numbers)
    other = job_record("patchead", "mvtec", "c1", metrics=auroc(0.9), provenance={"git": "def"})
    assert len(ReproducedGrid(write_store(tmp_path / "p", [rec, other]).frame()).keys) == 1
    assert JobRecord.from_dict(json.loads(json.dumps(data))) == rec
    old = {k: v for k, v in data.items() if k not in ("schema_version", "provenance", "params_total")}
    old["future_field"] = 3
    loaded = JobRecord.from_dict(old)
    assert loaded.schema_version == 0 and loaded.extra == {"future_field": 3}
    store = write_store(tmp_path / "s", [loaded])
    assert json.loads(store.record_path(rec.key).read_text())["future_field"] == 3
    frame = store.frame()
    assert frame["future_field"].iloc[0] == 3 and "future_field" in frame.attrs["settings"]


def test_paper_applies_to_csv_and_efficiency(tmp_path):
    recs = [job_record("winclip", "mvtec", c, metrics=auroc(0.9), method_title="WinCLIP") for c in CATS[:2]]
    html, out = render(tmp_path, recs, published=True, paper="vip2clip")
    csv = pd.read_csv(out / "report.csv")
    notes = " ".join(csv["published_note"].dropna())
    assert "ViP2-CLIP (Tables 1-2)" in notes and "DMA-SAP" not in notes and ".txt" not in notes
    eff = table(html, "pub-efficiency")
    assert "ViP2-CLIP (Table 3)" in eff and "DMA-SAP" not in eff and ".txt" not in eff
    assert "WinCLIP" in table(html, "efficiency")


def test_published_table7_has_the_paper_orientation_beside_the_reproduced_one(tmp_path):
    out = tmp_path / "pub"
    render_report(
        write_store(tmp_path / "none", []),
        out,
        ["html"],
        mode="published",
        paper="dma_sap",
        registry=REGISTRY,
    )
    t = table((out / "report.html").read_text(), "pub-dma-sap-table-7-ablation")
    assert [h.strip() for h in headers(t)] == ["MVTec AD", "BTAD", "Average"]
    assert [plain(c) for c in row(t, "A. baseline (sum of deep features)")] == [
        "(91.7, 96.4)",
        "(95.8, 95.3)",
        "(93.8, 95.9)",
    ]
    recs = [
        job_record("dma_sap", d, c, metrics={"image_auroc": 0.9, "image_ap": 0.95}, config={"variant": v})
        for v in "AD"
        for d in ("mvtec", "btad")
        for c in ("c0", "c1")
    ]
    html, _ = render(tmp_path / "rep", recs, ablation="dma_sap.variant")
    t = table(html, "ablation-dma_sap.variant-datasets")
    assert [h.strip() for h in headers(t)] == ["MVTec AD", "BTAD", "Average"]
    assert [plain(c) for c in row(t, "variant = A")] == [
        "(90.0, 95.0)",
        "(91.7, 96.4)",
        "(90.0, 95.0)",
        "(95.8, 95.3)",
        "(90.0, 95.0)",
        "(93.8, 95.9)",
    ]


def test_industrial_and_medical_get_separate_tables_with_category_counts(tmp_path):
    recs = [
        job_record(m, d, c, metrics=auroc(s))
        for m, s in (("patchead", 0.9), ("winclip", 0.8))
        for d in ("mvtec", "headct")
        for c in ("c0", "c1")
    ]
    html, _ = render(tmp_path, recs)
    ind, med = table(html, "metric-image_auroc-industrial"), table(html, "metric-image_auroc-medical")
    assert "MVTec AD" in ind and "HeadCT" not in ind and "HeadCT" in med and "MVTec AD" not in med
    assert "Average" in ind and "Average" in med
    # |C| = the categories here, and the paper's count where it differs (MVTec AD has 15)
    assert '<td class="info">2 (paper 15)</td>' in ind and "|C|" in ind
    assert "tuples-industrial" in html and "tuples-medical" in html


def test_few_shot_difference_only_where_the_paper_states_k(tmp_path):
    recs = [
        job_record(
            "patchead",
            "mvtec",
            "c0",
            metrics=auroc(0.9),
            protocol="few_shot",
            shots=k,
            config={"backbone": "dinov2-vitb14-reg"},
        )
        for k in (1, 4)
    ]
    html, out = render(tmp_path, recs, published=True)
    cells = row(table(html, "metric-image_auroc"), "MVTec AD")
    assert plain(cells[1]) != "—" and plain(cells[4]) == plain(cells[1])  # the paper's one number
    assert plain(cells[2]) == "—" and plain(cells[5]) == "—"  # but no Δ against it
    assert "does not state k" in html
    csv = pd.read_csv(out / "report.csv")
    assert csv.loc[csv.published.notna(), "difference"].isna().all()


def test_csv_has_per_category_rows_and_frame_is_sorted(tmp_path):
    recs = [
        job_record(m, "mvtec", c, metrics=auroc(0.9)) for m in ("winclip", "patchead") for c in ("c1", "c0")
    ]
    store = write_store(tmp_path / "s", recs[::-1])
    frame = store.frame()
    assert list(zip(frame.method, frame.category)) == [
        ("patchead", "c0"),
        ("patchead", "c1"),
        ("winclip", "c0"),
        ("winclip", "c1"),
    ]
    _, out = render(tmp_path, recs)
    csv = pd.read_csv(out / "report.csv")
    cats = csv[csv.level == "category"]
    assert set(cats.category) == {"c0", "c1"} and (cats.value == 90.0).all()


def predictions_store(tmp_path: Path) -> tuple:
    rng = np.random.default_rng(0)
    labels = np.array([0] * 6 + [1] * 6)
    masks = np.zeros((12, 16, 16), np.uint8)
    masks[6:, 4:8, 4:8] = 1
    recs = []
    store = write_store(tmp_path / "s", [])
    for m in ("patchead", "winclip"):
        rec = job_record(m, "mvtec", "c0", metrics=auroc(0.9))
        maps = rng.random((12, 16, 16)).astype(np.float16)
        maps[6:, 4:8, 4:8] += 2 if m == "patchead" else 0
        scores = labels + rng.normal(0, 0.8, 12)
        store.write_predictions(
            rec.key,
            scores=scores.astype(np.float32),
            labels=labels,
            maps=maps,
            masks=masks,
            ids=np.array([f"img{i}" for i in range(12)]),
        )
        store.write_record(rec)
        recs.append(rec)
    return store, recs


def test_bootstrap_interval_from_stored_predictions(tmp_path):
    from sklearn.metrics import roc_auc_score

    from adbench.reports.stats import auroc_rows

    store, _ = predictions_store(tmp_path)
    scores = np.random.default_rng(1).random((5, 12))
    labels = np.tile(np.array([0] * 6 + [1] * 6), (5, 1))
    assert np.allclose(auroc_rows(labels, scores), [roc_auc_score(labels[0], s) for s in scores])
    render_report(store, tmp_path / "o", ["html"], registry=REGISTRY, plots=False, categories=False, ci=True)
    t = table((tmp_path / "o" / "report.html").read_text(), "ci-image_auroc")
    lo, hi = map(float, re.search(r"\[([\d.]+), ([\d.]+)\]", t).groups())
    assert lo < hi and lo <= 100 and hi <= 100


def test_qualitative_figures_pick_disagreeing_images_and_embed(tmp_path):
    maps = [np.zeros((4, 2, 2)), np.zeros((4, 2, 2))]
    maps[1][2] = 1.0  # image 2 differs most; images 0, 1 normal
    assert most_disagreeing(maps, np.array([0, 0, 1, 1]), 2) == [2, 3]
    store, _ = predictions_store(tmp_path)
    out = tmp_path / "o"
    loader = lambda d, c, ids, size: {i: np.full((size, size, 3), 120, np.uint8) for i in ids}  # noqa: E731
    paths = render_report(store, out, ["html", "latex"], registry=REGISTRY, figures=3, images=loader)
    png = out / "figures" / "qualitative_mvtec_c0.png"
    assert png in paths and png.with_suffix(".pdf").exists() and png.stat().st_size > 0
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and 'src="averages_' not in html  # one self-contained file
    assert "figures/qualitative_mvtec_c0.pdf" in (out / "report.tex").read_text()
    if shutil.which("pdflatex"):
        proc = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
            cwd=out,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stdout[-2000:]


def test_banner_once_at_the_top_of_the_html(tmp_path):
    recs = [job_record("patchead", "mvtec", "c0", metrics=auroc(0.9), random_weights=True)]
    html, _ = render(tmp_path, recs)
    assert html.count("randomly initialised backbone weights") == 1


def test_choose_methods_datasets_metrics_and_column_labels(tmp_path):
    recs = [
        job_record(m, d, "c0", metrics={"image_auroc": 0.9, "pixel_auroc": 0.8}, method_title=t)
        for m, t in (("patchead", "PatchEAD"), ("winclip", "WinCLIP"))
        for d in ("mvtec", "visa")
    ]
    html, _ = render(
        tmp_path,
        recs,
        methods=["patchead"],
        datasets=["visa"],
        metrics=["image_auroc"],
        labels={"PatchEAD zero-shot": "Ours"},
    )
    t = table(html, "metric-image_auroc")
    assert [h.split()[0] for h in headers(t)] == ["Ours"] and "WinCLIP" not in html
    assert "VisA" in t and "MVTec AD" not in t and 'id="metric-pixel_auroc"' not in html
    for option, value, message in (
        ("methods", ["clip"], "--methods 'clip': not in the store"),
        ("metrics", ["image_aurc"], "--metrics 'image_aurc'"),
        ("labels", {"nope": "x"}, "--label 'nope': no such column"),
    ):
        with pytest.raises(AdbenchError, match=re.escape(message)):
            render(tmp_path / option, recs, **{option: value})


def test_report_cli_options_and_one_line_errors(tmp_path, monkeypatch, capsys):
    from adbench.cli import main

    write_store(tmp_path / "store", batch_vs_few_shot())
    args = [
        "adbench",
        "report",
        "--results",
        str(tmp_path / "store"),
        "--format",
        "csv",
        "--out",
        str(tmp_path / "o"),
    ]
    monkeypatch.setattr("sys.argv", [*args, "--coverage", "all", "--ci"])
    main()  # no predictions stored: the intervals say so, the report is still written
    assert (tmp_path / "o" / "report.csv").exists()
    monkeypatch.setattr("sys.argv", [*args, "--paper", "nosuchpaper"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert (
        exit_.value.code == 2
        and err.startswith("error: --paper 'nosuchpaper'")
        and len(err.splitlines()) == 1
    )
