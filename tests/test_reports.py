"""Reports: paper-style tables from a store of synthetic records (no model is run)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape

from adbench.errors import AdbenchError
from adbench.metrics import METRICS
from adbench.registry import Registry
from adbench.reports import formats, published, render_report
from adbench.reports.tables import ReproducedGrid
from adbench.store import ResultsStore

from .fixtures.records import job_record, write_store

SCRIPT = "<script>alert(1)</script>"


def make_record(method, variant, dataset, category, rng, *, config=None, nan_image=False, **kw):
    """A record through the typed schema; ``variant`` is the dma_sap config value it stands for."""
    metrics = {m: float(np.round(rng.uniform(0.5, 0.99), 4)) for m in METRICS}
    if nan_image:
        metrics.update(image_auroc=None, image_ap=None, image_f1max=None)
    return job_record(
        method,
        dataset,
        category,
        metrics=metrics,
        config=config if config is not None else ({"variant": variant} if variant else {}),
        n_anomalous=8 if nan_image else 4,
        **kw,
    )


def build_records(random_weights: bool) -> list[dict]:
    """2 methods (dma_sap in two configs) × 2 datasets × 2 categories, plus patchead-only VisA."""
    rng = np.random.default_rng(0)
    recs = []
    for dataset in ("mvtec", "btad"):
        for cat in ("c1", "c2"):
            recs.append(
                make_record(
                    "patchead",
                    "",
                    dataset,
                    cat,
                    rng,
                    protocol="batch_zero_shot",
                    config={"backbone": "dinov2-vitb14-reg"},
                    nan_image=(dataset == "btad" and cat == "c2"),
                )
            )
            recs.append(make_record("dma_sap", SCRIPT, dataset, cat, rng, random_weights=random_weights))
            recs.append(make_record("dma_sap", "A", dataset, cat, rng, random_weights=random_weights))
    for cat in ("c1", "c2"):
        recs.append(
            make_record(
                "patchead",
                "",
                "visa",
                cat,
                rng,
                protocol="batch_zero_shot",
                config={"backbone": "dinov2-vitb14-reg"},
            )
        )
    return recs


REGISTRY = Registry(autoload=False, plugins=[formats])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    records = build_records(random_weights=True)
    store = write_store(root / "store", records)
    out = root / "out"
    paths = render_report(
        store,
        out,
        ["html,latex", "markdown", "csv"],
        published=True,
        ablation="dma_sap.variant",
        registry=REGISTRY,
    )
    return {
        "records": records,
        "out": out,
        "paths": paths,
        "store": store,
        "html": (out / "report.html").read_text(),
        "tex": (out / "report.tex").read_text(),
        "tables": {p.stem: p.read_text() for p in (out / "tables").glob("*.tex")},
    }


def expected_dataset_mean(records, method, variant, dataset, metric):
    vals = [
        r.metrics[metric]
        for r in records
        if (r.method, r.method_config.get("variant", ""), r.dataset) == (method, variant, dataset)
    ]
    vals = [v for v in vals if v is not None]
    return 100 * sum(vals) / len(vals) if vals else None


def html_table(html: str, table_id: str) -> str:
    """The table and the footnotes under it (up to the next table)."""
    match = re.search(rf'<table id="{re.escape(table_id)}">(.*?)(?=<table|</body>)', html, re.S)
    assert match, table_id
    return match.group(1)


def html_row(table: str, label: str) -> list[str]:
    """The value cells of a row (the |C| info cell left out)."""
    match = re.search(rf"<tr[^>]*><th>{re.escape(label)}</th>(.*?)</tr>", table, re.S)
    assert match, label
    return re.findall(r'<td class="(?!info)[^"]*">(.*?)</td>', match.group(1), re.S)


def text(cell: str) -> str:
    return re.sub("<[^>]+>", "", cell)


def tex_row(out: Path, table_id: str, label: str, info: bool = True) -> list[str]:
    """The value cells of a row of ``tables/<id>.tex`` (the |C| cell left out)."""
    tex = (out / "tables" / f"{table_id}.tex").read_text()
    body = tex.split(r"\midrule", 1)[1].split(r"\bottomrule", 1)[0]
    line = next(ln for ln in body.splitlines() if ln.startswith(label + " & "))
    return [c.strip() for c in line.rstrip("\\ ").split(" & ")[(2 if info else 1) :]]


def column_order(rendered):
    grid = ReproducedGrid(rendered["store"].frame())
    return [(grid.method(c), grid.setting(c, "config.variant", "")) for c in range(len(grid.keys))]


def test_formats_are_plugins_and_unknown_format_is_one_line_error(tmp_path, rendered):
    assert {"html", "latex", "markdown", "csv"} <= set(REGISTRY.names("report_format"))
    assert {p.name for p in rendered["paths"]} >= {
        "report.html",
        "report.tex",
        "report.md",
        "report.csv",
        "averages_image.png",
        "averages_pixel.png",
    }
    with pytest.raises(AdbenchError, match="did you mean 'html'"):
        render_report(rendered["store"], tmp_path, ["htlm"], registry=REGISTRY)


def test_best_bold_within_each_protocol_group_in_html_and_latex(rendered):
    """Batch zero-shot PatchEAD is ranked on its own; the two zero-shot DMA-SAP columns together
    (bold, and no underline with two)."""
    records, cols = rendered["records"], column_order(rendered)
    zero_shot = [i for i, (m, _) in enumerate(cols) if m == "dma_sap"]
    for dataset, label in (("mvtec", "MVTec AD"), ("btad", "BTAD")):
        means = [expected_dataset_mean(records, m, v, dataset, "image_ap") for m, v in cols]
        best = max(zero_shot, key=lambda i: means[i])
        # published=True: each method is a group of three cells (ours, paper, difference)
        ours_html = html_row(html_table(rendered["html"], "metric-image_ap"), label)[::3][: len(cols)]
        ours_tex = tex_row(rendered["out"], "metric-image_ap", label)[::3][: len(cols)]
        assert "<strong>" in ours_html[best] and ours_tex[best].startswith(r"\textbf{")
        assert sum("<strong>" in c for c in ours_html) == 1 and not any("<u>" in c for c in ours_html)
        assert f"{means[best]:.1f}" in ours_html[best]


def test_nan_and_not_run_cells_are_dashes_with_footnotes(rendered):
    records, cols = rendered["records"], column_order(rendered)
    table = html_table(rendered["html"], "metric-image_auroc")
    visa = html_row(table, "VisA")[::3]
    dma = cols.index(("dma_sap", SCRIPT))
    assert visa[dma].startswith("—") and "<sup>" in visa[dma]
    assert "not run" in table
    # BTAD patchead: one category NaN -> mean over the other category only, with a footnote
    pe = cols.index(("patchead", ""))
    btad = html_row(table, "BTAD")[::3][pe]
    c1 = next(r for r in records if (r.method, r.dataset, r.category) == ("patchead", "btad", "c1"))
    assert btad.startswith(f"{100 * c1.metrics['image_auroc']:.1f}") and "<sup>" in btad
    assert "all test images anomalous" in table and "left out c2" in table
    assert "0.0" not in "".join(visa)


def test_average_row_is_mean_over_own_datasets_by_default_and_shared_on_request(rendered, tmp_path):
    records, cols = rendered["records"], column_order(rendered)
    frame = rendered["store"].frame()
    shared, everything = ReproducedGrid(frame, coverage="shared"), ReproducedGrid(frame)
    for c, (method, variant) in enumerate(cols):
        for metric in ("image_auroc", "pixel_aupro"):
            per_ds = {
                d: expected_dataset_mean(records, method, variant, d, metric)
                for d in ("mvtec", "btad", "visa")
            }
            own = [v for v in per_ds.values() if v is not None]
            # only patchead ran VisA: the shared Average compares every column on MVTec AD and BTAD
            assert shared.average(c, metric).mean == pytest.approx((per_ds["mvtec"] + per_ds["btad"]) / 2)
            assert everything.average(c, metric).mean == pytest.approx(sum(own) / len(own))
    pe = cols.index(("patchead", ""))
    assert everything.average(pe, "pixel_aupro").rankable
    dma = cols.index(("dma_sap", "A"))
    assert everything.average(dma, "pixel_aupro").coverage == "2/3"  # marked in the cell, not ranked
    assert not everything.average(dma, "pixel_aupro").rankable
    avg_cells = html_row(html_table(rendered["html"], "metric-image_auroc"), "Average")[::3]
    expected = np.mean(
        [expected_dataset_mean(records, "dma_sap", "A", d, "image_auroc") for d in ("mvtec", "btad")]
    )
    assert text(avg_cells[dma]).startswith(f"{expected:.1f}")
    csv = pd.read_csv(rendered["out"] / "report.csv")
    row = csv[
        (csv.method == "dma_sap")
        & csv.settings.str.contains("variant=A")
        & (csv.dataset == "average")
        & (csv.metric == "image_auroc")
    ]
    assert row["value"].iloc[0] == pytest.approx(expected, abs=1e-3)


def test_random_weights_banner_iff_random_record(rendered, tmp_path):
    banner = "randomly initialised backbone weights (tiny-vit)"
    assert banner in rendered["html"] and 'class="banner"' in rendered["html"]
    assert "% WARNING: Numbers computed with randomly initialised" in rendered["tex"]
    assert banner in (rendered["out"] / "report.md").read_text()
    csv = pd.read_csv(rendered["out"] / "report.csv")
    assert csv["warning"].str.contains("randomly initialised").all()
    assert csv.loc[csv["method"] == "dma_sap", "random_weights"].all()
    assert not csv.loc[csv["method"] == "patchead", "random_weights"].any()

    store = write_store(tmp_path / "clean", build_records(random_weights=False))
    render_report(store, tmp_path / "out", ["html", "latex", "csv"], registry=REGISTRY)
    assert "randomly initialised" not in (tmp_path / "out" / "report.html").read_text()
    assert "randomly initialised" not in (tmp_path / "out" / "report.tex").read_text()
    assert pd.read_csv(tmp_path / "out" / "report.csv")["warning"].isna().all()


def test_tuple_layout(rendered):
    records, cols = rendered["records"], column_order(rendered)
    table = html_table(rendered["html"], "tuples")
    assert "Image-level (AUROC, AP, F1)" in table and "Pixel-level (AUROC, PRO, F1)" in table
    cell = text(html_row(table, "MVTec AD")[cols.index(("dma_sap", "A"))])
    want = [
        expected_dataset_mean(records, "dma_sap", "A", "mvtec", m)
        for m in ("image_auroc", "image_ap", "image_f1max")
    ]
    assert cell.startswith("(" + ", ".join(f"{v:.1f}" for v in want) + ")")


def test_ablation_table_rows_are_config_values(rendered):
    records = rendered["records"]
    table = html_table(rendered["html"], "ablation-dma_sap.variant")
    for value in ("variant = A [random weights]", f"variant = {SCRIPT} [random weights]"):
        variant = "A" if value.startswith("variant = A") else SCRIPT
        row = html_row(table, str(escape(value)))
        want = np.mean(
            [expected_dataset_mean(records, "dma_sap", variant, d, "image_auroc") for d in ("mvtec", "btad")]
        )
        assert re.sub("<[^>]+>", "", row[0]).startswith(f"{want:.1f}")
    per_ds = html_table(rendered["html"], "ablation-dma_sap.variant-datasets")
    assert "MVTec AD" in per_ds and "Average" in per_ds
    want = [expected_dataset_mean(records, "dma_sap", "A", "mvtec", m) for m in ("image_auroc", "image_ap")]
    assert text(html_row(per_ds, "variant = A [random weights]")[0]).startswith(
        f"({want[0]:.1f}, {want[1]:.1f})"
    )
    with pytest.raises(AdbenchError, match="no config field 'nope'"):
        render_report(
            rendered["store"], rendered["out"] / "x", ["csv"], ablation="dma_sap.nope", registry=REGISTRY
        )


def test_published_side_by_side_with_difference(rendered):
    records, cols = rendered["records"], column_order(rendered)
    pub = published.load_published()
    dma = cols.index(("dma_sap", "A"))
    for metric, pub_metric in (("image_auroc", "auroc"), ("pixel_aupro_cflow", "aupro")):
        theirs = pub[
            (pub.method == "DMA-SAP")
            & (pub.dataset == "mvtec")
            & (pub.metric == pub_metric)
            & (pub.level == metric.split("_")[0])
            & pub.source.str.contains("Tables 1-6")
        ]["value"].iloc[0]
        ours = expected_dataset_mean(records, "dma_sap", "A", "mvtec", metric)
        cells = html_row(html_table(rendered["html"], f"metric-{metric}"), "MVTec AD")[3 * dma : 3 * dma + 3]
        assert cells[1].startswith(f"{theirs:.1f}")
        assert cells[2] == f"{round(ours, 1) - theirs:+.1f}".replace("-", "−")
    # official AUPRO is not compared with the papers' cflow AUPRO
    aupro = html_row(html_table(rendered["html"], "metric-pixel_aupro"), "MVTec AD")[3 * dma + 1]
    assert aupro.startswith("—") and "aupro_cflow" in html_table(rendered["html"], "metric-pixel_aupro")
    # PatchEAD (batch zero-shot) is matched to the PatchEAD paper's text numbers
    pe = cols.index(("patchead", ""))
    assert html_row(html_table(rendered["html"], "metric-image_auroc"), "MVTec AD")[3 * pe + 1].startswith(
        "95.3"
    )


def test_html_is_escaped(rendered):
    assert SCRIPT not in rendered["html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered["html"]
    assert r"\textless{}script\textgreater{}" in rendered["tables"]["metric-image_auroc"]
    assert SCRIPT not in "".join(rendered["tables"].values())


def test_paper_facts_cover_every_paper_of_the_published_csv():
    """Each paper of the CSV has its facts (own methods, AUPRO definition, averages) in papers.json,
    and every dataset behind an average row is one the paper reports or a registered one."""
    papers = published.load_papers()
    data = published.load_published()
    assert set(data["paper"]) <= set(papers)
    for name in set(data["method"]):
        own = published.own_paper(name)
        assert own is None or name in set(data.loc[data["paper"] == own, "method"])
    assert published.own_paper("DMA-SAP") == "dma_sap__clip_dinov2_fusion.txt"
    assert published.own_paper("WinCLIP") is None
    assert published.uses_cflow_aupro("vip2clip.txt (Tables 1-2)")
    assert not published.uses_cflow_aupro("patchead.txt (text of Sections 1 and 4.3)")
    # the preference among papers is the file's order: WinCLIP comes from DMA-SAP's tables first
    assert published.lookup("WinCLIP", "zero_shot")[0].startswith("dma_sap__")


def test_few_shot_mean_and_std_over_seeds(tmp_path):
    rng = np.random.default_rng(1)
    recs = [
        make_record("patchead", "", "mvtec", c, rng, protocol="few_shot", shots=1, seed=s)
        for s in (0, 1, 2)
        for c in ("c1", "c2")
    ]
    store = write_store(tmp_path / "s", recs)
    per_seed = [100 * np.mean([r.metrics["image_auroc"] for r in recs if r.seed == s]) for s in (0, 1, 2)]
    render_report(store, tmp_path / "o", ["html"], registry=REGISTRY)
    cell = html_row(
        html_table((tmp_path / "o" / "report.html").read_text(), "metric-image_auroc"), "MVTec AD"
    )[0]
    assert cell == f"{np.mean(per_seed):.1f} ± {np.std(per_seed, ddof=1):.1f}"


def test_published_mode_needs_no_records(tmp_path):
    """Dataset titles and row order of a published-only report come from the registered dataset
    plugins; without them the raw names stay (the numbers are the same)."""
    from adbench.datasets import btad, mvtec_style, visa

    registry = Registry(autoload=False, plugins=[formats, mvtec_style, visa, btad])
    paths = render_report(
        ResultsStore(tmp_path / "empty"),
        tmp_path / "o",
        ["html", "csv"],
        mode="published",
        paper="dma_sap",
        registry=registry,
    )
    html = (tmp_path / "o" / "report.html").read_text()
    table = html_table(html, "pub-dma-sap-tables-1-6-image_auroc")
    row = html_row(table, "MVTec AD")
    assert "<strong>94.8</strong>" in row[-1] and "<u>93.9</u>" in row[-2]  # the paper's Table 1 ranks
    labels = re.findall(r"<tr[^>]*><th>([^<]+)</th>", table.split("<tbody>")[1])
    # described datasets first in the plugins' order, the undescribed ones after them by name
    described = ["MVTec AD", "VisA", "MPDD", "BTAD", "DTD-Synthetic"]  # mvtec_style holds three
    assert labels[:-1] == described + ["dagm", "ksdd"]
    assert labels[-1] == "Average"
    assert any(p.suffix == ".csv" for p in paths)
    render_report(
        ResultsStore(tmp_path / "empty"), tmp_path / "bare", ["html"], mode="published", registry=REGISTRY
    )
    bare = html_table((tmp_path / "bare" / "report.html").read_text(), "pub-vip2-clip-tables-1-2-image_auroc")
    assert html_row(bare, "mvtec")[0] and html_row(bare, "Average (medical)")[0]
    with pytest.raises(AdbenchError, match="no finished records"):
        render_report(ResultsStore(tmp_path / "empty"), tmp_path / "o", ["html"], registry=REGISTRY)


def test_failed_job_is_a_dash_with_its_error(tmp_path):
    rng = np.random.default_rng(2)
    recs = [make_record("winclip", "", d, "c1", rng) for d in ("mvtec", "visa")]
    recs[1] = dataclasses.replace(
        recs[1], status="failed", error="CUDA out of memory\ntraceback...", metrics={}
    )
    store = write_store(tmp_path / "s", recs)
    render_report(store, tmp_path / "o", ["html"], registry=REGISTRY)
    table = html_table((tmp_path / "o" / "report.html").read_text(), "metric-image_auroc")
    assert html_row(table, "VisA")[0].startswith("—") and "job failed: CUDA out of memory" in table
    assert "traceback" not in table


def pdflatex(cwd: Path, name: str = "report.tex") -> None:
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", name],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (CI installs it)")
def test_latex_document_and_every_table_file_compile(rendered, tmp_path):
    shutil.copytree(rendered["out"], tmp_path / "doc")
    pdflatex(tmp_path / "doc")
    assert (tmp_path / "doc" / "report.pdf").stat().st_size > 0
    # every table file compiles when \input into a one- and a two-column paper with only the
    # README's packages (booktabs, graphicx)
    for name, options in (("one", ""), ("two", "[twocolumn]")):
        inputs = "".join(
            f"\\input{{tables/{p.stem}}}\\clearpage" for p in (tmp_path / "doc" / "tables").glob("*.tex")
        )
        (tmp_path / "doc" / f"{name}.tex").write_text(
            f"\\documentclass{options}{{article}}\\usepackage{{booktabs,graphicx}}"
            f"\\begin{{document}}{inputs}\\end{{document}}"
        )
        pdflatex(tmp_path / "doc", f"{name}.tex")
    out = tmp_path / "paper"
    render_report(ResultsStore(tmp_path / "none"), out, ["latex"], mode="published", registry=REGISTRY)
    pdflatex(out)


def test_tables_for_input_use_booktabs_display_names_and_only_shrink(rendered):
    tex = rendered["tables"]["metric-image_auroc"]
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}" in tex
    header = tex.split(r"\toprule", 1)[1].split(r"\midrule", 1)[0]
    assert "DMA-SAP" in header and "dma\\_sap" not in header
    assert r"\usepackage{lmodern}" in rendered["tex"]
    assert all(f"\\input{{tables/{name}}}" in rendered["tex"] for name in rendered["tables"])


def test_headers_are_short_two_lines_with_settings_in_a_legend(rendered):
    table = html_table(rendered["html"], "metric-image_auroc")
    header = table.split("</thead>", 1)[0]
    # display name, then one small line: legend tag, protocol, flags; the settings go to the legend
    assert re.search(r'<th class="col"[^>]*>PatchEAD<br><small>batch zero-shot</small></th>', header)
    assert '<small class="rw">(b) · zero-shot · random weights</small>' in header
    assert "variant=" not in header and "dma_sap" not in header
    assert "(b) variant A" in table.split("</table>", 1)[1]
    tex = rendered["tables"]["metric-image_auroc"].split(r"\midrule", 1)[0]
    assert r"\begin{tabular}[b]{@{}c@{}}PatchEAD\\\scriptsize batch zero-shot\end{tabular}" in tex
    # over the narrow ours/paper/Δ subcolumns every tag gets its own line
    assert r"\\\scriptsize (b)\\\scriptsize zero-shot\\\scriptsize random weights\end{tabular}" in tex
    # category tables are one float per dataset, never a longtable (not in the README's packages)
    cat = rendered["tables"]["category-image_auroc-mvtec"]
    assert "longtable" not in "".join(rendered["tables"].values()) + rendered["tex"]
    assert r"\begin{table" in cat and "Mean &" in cat
    md = (rendered["out"] / "report.md").read_text()
    assert "| PatchEAD<br><sub>batch zero-shot</sub> ours |" in md


def test_every_computed_metric_has_a_paper_position_and_name():
    from adbench.reports.tables import METRIC_NAMES, METRIC_ORDER, sort_metrics

    assert sorted(METRIC_ORDER) == sorted(METRICS) and set(METRIC_NAMES) == set(METRICS)
    # the papers' order (AUPRO before AP), not adbench.metrics' order
    assert sort_metrics(list(METRICS)).index("pixel_aupro") < sort_metrics(list(METRICS)).index("pixel_ap")


def test_variant_settings_split_one_per_line():
    from adbench.reports.tables import variant_parts

    assert variant_parts("clip_backbone=tiny-clip,dino_backbone=tiny-dinov2") == [
        "clip_backbone=tiny-clip",
        "dino_backbone=tiny-dinov2",
    ]
    assert variant_parts("layers=1,2,3,k=4") == ["layers=1,2,3", "k=4"]  # commas inside a value stay
    assert variant_parts("") == []


def test_two_columns_get_bold_but_no_underline(tmp_path):
    rng = np.random.default_rng(3)
    recs = [make_record(m, "", "mvtec", "c1", rng) for m in ("winclip", "patchead")]
    store = write_store(tmp_path / "s", recs)
    render_report(store, tmp_path / "o", ["html"], registry=REGISTRY)
    row = html_row(html_table((tmp_path / "o" / "report.html").read_text(), "metric-image_auroc"), "MVTec AD")
    assert sum("<strong>" in c for c in row) == 1 and not any("<u>" in c for c in row)


def test_bar_chart_keeps_its_width_with_many_long_labels(tmp_path):
    from PIL import Image

    from adbench.reports.plots import LEGEND_WRAP, bar_charts, legend_label

    long_variant = "clip_backbone=ViT-L-14-336,dino_backbone=dinov2-vitb14-reg,prompt_depth=9,variant=D"
    rng = np.random.default_rng(4)
    sizes = {}
    for n in (1, 8):
        recs = [
            make_record(f"m{i}", long_variant, "mvtec", "c1", rng, random_weights=i == 0) for i in range(n)
        ]
        grid = ReproducedGrid(write_store(tmp_path / f"s{n}", recs).frame())
        paths = bar_charts(grid, tmp_path / f"o{n}")
        assert [p.name for p in paths] == ["averages_image.png", "averages_pixel.png"]
        sizes[n] = Image.open(paths[0]).size
    # fixed width (the legend no longer widens the figure and squashes the axes); taller legend
    assert sizes[1][0] == sizes[8][0] and sizes[8][1] > sizes[1][1]
    label = legend_label("dma_sap", ["clip_backbone=ViT-L-14-336", "dino_backbone=dinov2-vitb14-reg"], 40)
    lines = label.split("\n")
    assert len(lines) > 1 and all(len(ln) <= 40 for ln in lines)
    assert "dino_backbone=dinov2-vitb14-reg" in lines[-1]  # wrapped between settings, not inside one
    assert LEGEND_WRAP >= 60


def test_names_groups_and_order_come_from_the_records(tmp_path):
    """A method and datasets no code knows: the report shows their recorded display name, titles,
    groups and order as given (a name list in reports/ would have to be edited for this)."""
    rng = np.random.default_rng(5)
    invented = {
        "barset": {"dataset_title": "Bar Set", "dataset_group": "medical", "dataset_order": 5},
        "bazset": {"dataset_title": "Baz Set", "dataset_group": "medical", "dataset_order": 3},
        "quxset": {"dataset_title": "Qux Set", "dataset_group": "aerial", "dataset_order": 400},
    }
    recs = []
    for method, title in (("foonet", "FooNet"), ("dma_sap", "DMA-SAP")):
        for dataset in [*invented, "mvtec"]:
            recs += [
                job_record(
                    method,
                    dataset,
                    cat,
                    rng=rng,
                    method_title=title,
                    published_name=None if method == "foonet" else "DMA-SAP",
                    **invented.get(dataset, {}),
                )
                for cat in ("c1", "c2")
            ]
    store = write_store(tmp_path / "s", recs)
    render_report(store, tmp_path / "o", ["html", "latex"], published=True, registry=REGISTRY)
    html = (tmp_path / "o" / "report.html").read_text()
    medical = html_table(html, "metric-image_auroc-medical")
    labels = re.findall(r"<tr[^>]*><th>([^<]+)</th>", medical.split("<tbody>")[1])
    assert labels == ["Baz Set", "Bar Set", "Average"]  # the recorded order, within the group
    assert "FooNet" in medical and "foonet" not in medical
    assert re.search(r"<tr[^>]*><th>MVTec AD</th>", html_table(html, "metric-image_auroc-industrial"))
    assert re.search(r"<tr[^>]*><th>Qux Set</th>", html_table(html, "metric-image_auroc-aerial"))
    assert "Bar Set" not in html_table(html, "metric-image_auroc-industrial")
    # groups ordered by their first dataset: medical (3) before industrial (10) before aerial (400)
    ids = re.findall(r'id="(metric-image_auroc-[a-z]+)"', html)
    assert ids == ["metric-image_auroc-medical", "metric-image_auroc-industrial", "metric-image_auroc-aerial"]
    # the published pairing follows the recorded published_name: DMA-SAP has MVTec numbers, FooNet none
    industrial = html_table(html, "metric-image_auroc-industrial")
    heads = re.findall(r'<th class="col"[^>]*>(.*?)</th>', industrial, re.S)
    # the columns run here, then the DMA-SAP paper's other methods as paper-only columns
    assert [h.split("<")[0].strip() for h in heads][:2] == ["DMA-SAP", "FooNet"]
    assert all("paper only" in h for h in heads[2:]) and len(heads) > 2
    row = html_row(industrial, "MVTec AD")  # ours, paper, Δ per column
    assert re.fullmatch(r"\d+\.\d", text(row[1])) and text(row[4]).startswith("—")
    tex = (tmp_path / "o" / "tables" / "metric-image_auroc-medical.tex").read_text()
    assert "FooNet" in tex and "Bar Set" in tex
    assert "foonet" not in html + "".join(p.read_text() for p in (tmp_path / "o").rglob("*.tex"))


def test_records_without_names_still_render(tmp_path):
    """Records written before the names were recorded (schema 0): raw names, the ``other`` group,
    rows by name, and no published pairing (nothing says which paper name the method has)."""
    rng = np.random.default_rng(6)
    store = ResultsStore(tmp_path / "s")
    for dataset in ("zeta", "mvtec", "alpha"):
        for method in ("dma_sap", "winclip"):
            data = job_record(method, dataset, "c1", rng=rng).to_dict()
            for name in (
                "schema_version",
                "method_title",
                "published_name",
                "dataset_title",
                "dataset_group",
                "dataset_order",
            ):
                data.pop(name)
            store.records_dir.mkdir(parents=True, exist_ok=True)
            (store.records_dir / f"{data['key']}.json").write_text(json.dumps(data))
    render_report(store, tmp_path / "o", ["html", "latex"], published=True, registry=REGISTRY)
    html = (tmp_path / "o" / "report.html").read_text()
    table = html_table(html, "metric-image_auroc")
    labels = re.findall(r"<tr[^>]*><th>([^<]+)</th>", table.split("<tbody>")[1])
    assert labels == ["alpha", "mvtec", "zeta", "Average"]
    assert "dma_sap" in table and "winclip" in table
    assert html_row(table, "mvtec")[1].startswith("—")  # no published value without a published name
    assert (tmp_path / "o" / "report.tex").exists()
