"""Issue 22: no row that silently changes meaning, like compared with like, LaTeX that compiles in
one- and two-column articles, published mode with paper titles. Each test failed on the old report."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest

from adbench.datasets import btad, medical, mvtec_style, visa
from adbench.errors import AdbenchError
from adbench.registry import Registry
from adbench.reports import formats, render_report
from adbench.reports.breakdown import breakdown_tables
from adbench.reports.grids import ReproducedGrid
from adbench.reports.model import Part, rank_parts
from adbench.store import ResultsStore

from .fixtures.records import job_record, write_store
from .test_report_comparability import auroc, headers, plain, render, row, table
from .test_reports import pdflatex

REGISTRY = Registry(autoload=False, plugins=[formats, mvtec_style, visa, btad, medical])
TEN = [f"c{i}" for i in range(10)]


def partial_store() -> list:
    """Three complete zero-shot columns over 10 categories and one over 3 (the old report restricted
    the whole row to those 3 and ranked a lower complete column second)."""
    recs = []
    for method, base in (("patchead", 0.80), ("winclip", 0.70), ("dma_sap", 0.75)):
        recs += [
            job_record(method, "synthetic", c, metrics=auroc(base + 0.01 * i)) for i, c in enumerate(TEN)
        ]
    recs += [job_record("clip", "synthetic", c, metrics=auroc(0.99)) for c in TEN[:3]]
    return recs


def test_default_row_is_each_column_over_its_own_categories(tmp_path):
    html, out = render(tmp_path, partial_store())
    t = table(html, "metric-image_auroc")
    cells = dict(zip(["CLIP", "DMA-SAP", "PatchEAD", "WinCLIP"], row(t, "Synthetic")))
    # the complete columns keep their full-dataset means (patchead 84.5, not its 3-category 81.0)
    assert plain(cells["PatchEAD"]) == "84.5" and plain(cells["DMA-SAP"]) == "79.5"
    assert plain(cells["CLIP"]) == "99.0 (3/10)" and "<strong>" not in cells["CLIP"]
    assert "<strong>" in cells["PatchEAD"] and "<u>" in cells["DMA-SAP"] and "<u>" not in cells["WinCLIP"]
    assert "mean over the 3 of 10 categories this column ran (c0, c1, c2); not ranked" in t
    assert '<td class="info">10</td>' in t
    csv = pd.read_csv(out / "report.csv")
    pe = csv[(csv.level == "dataset") & (csv.method == "patchead") & (csv.metric == "image_auroc")]
    assert pe["value"].iloc[0] == pytest.approx(84.5) and pe["coverage"].isna().all()


def test_shared_subset_is_an_explicit_labelled_table(tmp_path):
    html, _ = render(tmp_path, partial_store(), coverage="shared")
    t = table(html, "shared-metric-image_auroc")
    assert "Image-AUROC (shared categories)" in t
    cells = row(t, "Synthetic (shared: c0, c1, c2)")
    assert [plain(c) for c in cells] == ["99.0", "76.0", "81.0", "71.0"]
    assert '<td class="info">3/10</td>' in t and "Shared-subset comparison" in html


def test_no_difference_against_a_paper_over_other_categories(tmp_path):
    """A 2-category MVTec root: the paper averages 15; the cell says why there is no Δ."""
    recs = [
        job_record("winclip", "mvtec", c, metrics=auroc(0.531), n_categories=2) for c in ("bottle", "cable")
    ]
    html, out = render(tmp_path, recs, published=True)
    t = table(html, "metric-image_auroc")
    ours, paper, diff = row(t, "MVTec AD")[:3]
    assert plain(ours) == "53.1" and plain(paper) == "91.8" and plain(diff) == "—"
    notes = re.findall(r"<li>(.*?)</li>", t)
    mark = int(re.search(r"<sup>(\d+)</sup>", diff).group(1))
    assert notes[mark - 1] == "MVTec AD: ours over 2 categories, the paper over 15; no Δ"
    assert '<td class="info">2 (paper 15)</td>' in t
    csv = pd.read_csv(out / "report.csv")
    assert csv["difference"].isna().all() and csv["published_note"].str.contains("the paper over 15").any()


def test_ranked_only_within_protocol_k_and_eval_size(tmp_path):
    recs = [job_record("patchead", "mvtec", "c0", metrics=auroc(0.95), eval_size=518)]
    recs += [job_record(m, "mvtec", "c0", metrics=auroc(s)) for m, s in (("winclip", 0.90), ("clip", 0.80))]
    recs += [job_record("dma_sap", "mvtec", "c0", metrics=auroc(0.70))]
    recs += [
        job_record("patchead", "mvtec", "c0", metrics=auroc(0.99), protocol="few_shot", shots=1, seed=s)
        for s in (0, 1)
    ]
    html, _ = render(tmp_path, recs)
    # few-shot is its own table
    zero, few = table(html, "metric-image_auroc-zero_shot"), table(html, "metric-image_auroc-few_shot")
    assert "few-shot" not in zero.split("</thead>")[0] and "k=1" in few
    cells = dict(zip(["CLIP", "DMA-SAP", "PatchEAD", "WinCLIP"], row(zero, "MVTec AD")))
    # PatchEAD at eval size 518 is not ranked against the 64 px columns
    assert "<strong>" not in cells["PatchEAD"] and "<u>" not in cells["PatchEAD"]
    assert "<strong>" in cells["WinCLIP"] and "<u>" in cells["CLIP"]
    assert "only among columns with the same protocol, k and eval size" in zero
    assert re.search(r"\(PatchEAD \(\w\) · few-shot, k=1: 2 seeds\)", few)  # seeds, never read as k


def test_second_is_not_marked_after_a_tie_for_first():
    parts = [Part("", v) for v in (90.0, 90.0, 90.0, 80.0)]
    rank_parts(parts)
    assert [p.rank for p in parts] == [1, 1, 1, None]
    parts = [Part("", v) for v in (90.0, 85.0, 85.0, 80.0)]
    rank_parts(parts)
    assert [p.rank for p in parts] == [1, 2, 2, None]


def test_breakdown_respects_coverage_and_prints_category_counts(tmp_path):
    recs = [
        job_record("patchead", "mvtec", c, metrics=auroc(0.8), image_auroc_by_anomaly_type={"scratch": 0.80})
        for c in ("c0", "c1", "c2")
    ]
    recs.append(
        job_record(
            "winclip", "mvtec", "c0", metrics=auroc(0.9), image_auroc_by_anomaly_type={"scratch": 0.95}
        )
    )
    grid = ReproducedGrid(write_store(tmp_path / "s", recs).frame())
    t = breakdown_tables(grid)[0]
    r = t.rows[0]
    assert r.label == "scratch (3)"
    pe, wc = r.cells
    assert wc.suffix == "(1/3)" and wc.parts[0].rank is None and pe.parts[0].rank is None


def test_trained_columns_say_what_they_were_trained_on(tmp_path):
    recs = [
        job_record("anomalyclip", "mvtec", c, metrics=auroc(0.9), train_on=["visa/candle", "visa/pcb1"])
        for c in ("c0", "c1")
    ]
    html, _ = render(tmp_path, recs)
    assert "AnomalyCLIP zero-shot: trained on VisA, tested on MVTec AD." in table(html, "metric-image_auroc")


def wide_store() -> list:
    methods = ("patchead", "winclip", "clip", "dma_sap", "anomalyclip", "aprilgan")
    return [
        job_record(m, d, c, rng=np.random.default_rng(i))
        for i, m in enumerate(methods)
        for d in ("mvtec", "headct")
        for c in (("bottle", "cable") if d == "mvtec" else ("headct",))
    ]


def test_latex_wide_tables_span_two_columns_and_every_file_compiles(tmp_path):
    store = write_store(tmp_path / "s", wide_store())
    for columns in (1, 2):
        out = tmp_path / f"o{columns}"
        render_report(
            store, out, ["latex"], registry=REGISTRY, plots=False, published=True, latex_columns=columns
        )
        files = sorted((out / "tables").glob("*.tex"))
        text = "".join(p.read_text() for p in files)
        assert "longtable" not in text + (out / "report.tex").read_text()
        assert ("table*" in text) == (columns == 2)
        if shutil.which("pdflatex") is None:
            continue
        options = "[twocolumn]" if columns == 2 else ""
        inputs = "".join(f"\\input{{tables/{p.stem}}}\\clearpage" for p in files)
        (out / "paper.tex").write_text(
            f"\\documentclass{options}{{article}}\\usepackage{{booktabs,graphicx}}"
            f"\\begin{{document}}{inputs}\\end{{document}}"
        )
        pdflatex(out, "paper.tex")
        pdflatex(out, "report.tex")
    with pytest.raises(AdbenchError, match="--latex-columns 3"):
        render_report(store, tmp_path / "x", ["latex"], registry=REGISTRY, latex_columns=3)


def test_per_category_tables_in_dataset_order_with_mean_and_paired_cells(tmp_path):
    cats = ("zipper", "bottle", "screw")  # MVTec AD's own order: bottle ... screw ... zipper
    recs = [
        job_record(m, "mvtec", c, metrics={"image_auroc": s, "image_ap": s - 0.05})
        for m, s in (("patchead", 0.9), ("winclip", 0.8))
        for c in cats
    ]
    store = write_store(tmp_path / "s", recs)
    out = tmp_path / "o"
    render_report(store, out, ["html"], registry=REGISTRY, plots=False, paired_cells=True)
    t = table((out / "report.html").read_text(), "category-image_auroc-image_ap-mvtec")
    labels = re.findall(r"<tr[^>]*><th>([^<]+)</th>", t.split("<tbody>")[1])
    assert labels == ["bottle", "screw", "zipper", "Mean"]
    assert plain(row(t, "Mean")[0]) == "(90.0, 85.0)" and "(Image-AUROC, Image-AP) per category" in t


def test_legend_spells_only_differing_settings_in_words_and_integers_stay_integers(tmp_path):
    recs = [
        job_record(
            "dma_sap",
            "mvtec",
            "c0",
            metrics=auroc(0.9),
            config={"variant": v, "epochs": 2, "image_size": 336},
        )
        for v in ("A", "D")
    ]
    recs.append(job_record("patchead", "mvtec", "c0", metrics=auroc(0.9)))  # no epochs: NaN in the frame
    html, out = render(tmp_path, recs)
    remarks = re.findall(r'<p class="remark">(.*?)</p>', table(html, "metric-image_auroc"))
    assert "(a) variant A" in remarks and "(b) variant D" in remarks
    assert not any("epochs" in r or "image size" in r for r in remarks)
    settings = pd.read_csv(out / "report.csv")["settings"]
    assert not settings.str.contains(r"epochs=2\.0|image_size=336\.0").any()


def test_published_mode_names_papers_and_drops_empty_rows_columns_and_marks(tmp_path):
    out = tmp_path / "o"
    paths = render_report(
        ResultsStore(tmp_path / "none"), out, ["html", "latex"], mode="published", registry=REGISTRY
    )
    names = [p.name for p in paths]
    assert not any(".txt" in n for n in names) and "pub-vip2-clip-tables-1-2-image_auroc.tex" in names
    html = (out / "report.html").read_text()
    assert "<caption>ViP2-CLIP (Tables 1-2): Image-AUROC</caption>" in html and "vip2clip.txt" not in html
    for t in re.findall(r'<table id="pub-[^"]*">(.*?)(?=<table|</body>)', html, re.S):
        notes = re.findall(r"<li>(.*?)</li>", t)
        marks = {int(m) for s in re.findall(r"<sup>([\d,]+)</sup>", t) for m in s.split(",")}
        assert marks == set(range(1, len(notes) + 1))  # every mark has its note and every note a mark
        body = t.split("<tbody>")[1].split("</tbody>")[0]
        for i in range(len(headers(t))):
            rows = [r for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body) if "<td" in r]
            column = [re.findall(r"<td[^>]*>(.*?)</td>", r)[i] for r in rows]
            assert any(plain(c) != "—" for c in column)
    vip = (out / "tables" / "pub-vip2-clip-tables-1-2-image_auroc.tex").read_text()
    assert r"\label{tab:pub-vip2-clip-tables-1-2-image_auroc}" in vip
    lines = vip.split(r"\midrule", 1)[1].splitlines()
    # industrial then medical rows, a rule between the groups
    first_medical = next(i for i, ln in enumerate(lines) if ln.startswith(("HeadCT", "BrainMRI", "ISIC")))
    assert lines[first_medical - 1] == r"\midrule" and lines.index(r"\midrule") == first_medical - 1


def test_published_columns_for_methods_of_the_paper_not_run_here(tmp_path):
    recs = [
        job_record("winclip", "mvtec", c, metrics=auroc(0.9), n_categories=15)
        for c in mvtec_style.MVTecAD.object_names
    ]
    html, _ = render(tmp_path, recs, published=True, paper="dma_sap")
    t = table(html, "metric-image_auroc")
    heads = [h.split() for h in headers(t)]
    assert heads[0][0] == "WinCLIP" and ["AnomalyCLIP", "paper", "only"] in heads
    i = heads.index(["AnomalyCLIP", "paper", "only"])
    cells = row(t, "MVTec AD")[3 * i : 3 * i + 3]
    assert plain(cells[0]) == "" and re.fullmatch(r"\d+\.\d", plain(cells[1]))
    assert plain(row(t, "MVTec AD")[2]) == "−1.8"  # 90.0 - 91.8: all 15 categories, so a Δ


def test_where_filters_records_and_says_which_values_exist(tmp_path):
    recs = [
        job_record("patchead", "mvtec", "c0", metrics=auroc(0.9), config={"backbone": b}) for b in ("a", "b")
    ]
    recs.append(
        job_record(
            "patchead",
            "mvtec",
            "c0",
            metrics=auroc(0.8),
            protocol="few_shot",
            shots=1,
            config={"backbone": "a"},
        )
    )
    html, _ = render(tmp_path, recs, where=["protocol=zero_shot", "config.backbone=b"])
    t = table(html, "metric-image_auroc")
    assert [plain(c) for c in row(t, "MVTec AD")] == ["90.0"] and "few-shot" not in html
    with pytest.raises(AdbenchError, match=r"--where 'config.backbone=c': no record has .* \(values: a, b\)"):
        render(tmp_path / "x", recs, where=["config.backbone=c"])


def test_bar_chart_title_says_what_it_averages(tmp_path):
    from adbench.reports.plots import chart_title

    grid = ReproducedGrid(write_store(tmp_path / "s", partial_store()).frame())
    assert chart_title(grid, "image") == "Image-level results on Synthetic (mean over 10 categories)"


def test_dry_run_of_the_demo_with_two_methods_plans_both(tmp_path, monkeypatch, capsys):
    from .test_reliability import cli

    code, out = cli(
        monkeypatch,
        capsys,
        "run",
        "--dry-run",
        "--demo",
        "--methods",
        "clip,winclip",
        "--results",
        str(tmp_path / "r"),
    )
    assert "plan error" not in out and code == 0


def test_figures_default_to_categories_most_columns_ran_and_caption_their_columns(tmp_path):
    from adbench.reports.figures import qualitative_figures

    rng = np.random.default_rng(0)
    labels = np.array([0] * 4 + [1] * 4)
    masks = np.zeros((8, 8, 8), np.uint8)
    masks[4:, 2:5, 2:5] = 1
    store = write_store(tmp_path / "s", [])
    for method, cat, random in (
        ("patchead", "a_cat", False),
        ("patchead", "z_cat", False),
        ("winclip", "z_cat", True),
    ):
        rec = job_record(method, "mvtec", cat, metrics=auroc(0.9), random_weights=random)
        store.write_predictions(
            rec.key,
            scores=rng.random(8).astype(np.float32),
            labels=labels,
            maps=rng.random((8, 8, 8)).astype(np.float16),
            masks=masks,
            ids=np.array([f"img{i}" for i in range(8)]),
        )
        store.write_record(rec)
    grid = ReproducedGrid(store.frame())
    paths, captions = qualitative_figures(grid, store, tmp_path / "o", 2)
    assert [p.stem for p in paths] == ["qualitative_mvtec_z_cat", "qualitative_mvtec_a_cat"]
    assert "WinCLIP zero-shot · random weights" in captions["qualitative_mvtec_z_cat"]
    alone = captions["qualitative_mvtec_a_cat"]
    assert "WinCLIP" not in alone and "PatchEAD" in alone
    assert "min-max normalised" in alone and "colour bar" in alone and "differ most" in alone


def test_bar_charts_mark_partial_columns_and_show_paper_values(tmp_path):
    from adbench.reports.options import ReportOptions
    from adbench.reports.plots import bar_charts, chart_labels

    grid = ReproducedGrid(write_store(tmp_path / "s", partial_store()).frame())
    stats = [[grid.average(c, "image_auroc")] for c in range(len(grid.keys))]
    labels = chart_labels(grid.columns, stats)
    assert [lab.endswith("[partial: not all categories]") for lab in labels] == [True, False, False, False]
    plain_png = bar_charts(grid, tmp_path / "a")[0].read_bytes()
    with_paper = bar_charts(grid, tmp_path / "b", ReportOptions(published=True))[0].read_bytes()
    assert plain_png != with_paper  # the paper's ticks and their legend entry are drawn
