"""The leaderboard site: stores merged by key, conflicts flagged, tables read from a real browser's DOM."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from click.testing import CliRunner

from adbench.cli import cli
from adbench.reports.leaderboard import build_site, merge_stores, merged_frame
from adbench.store import ResultsStore

from .fixtures.records import job_record

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _metrics(v):
    return {"image_auroc": v, "image_ap": v, "pixel_auroc": v - 0.05, "pixel_ap": v - 0.3}


def _two_stores(tmp_path):
    """Store A: clip and winclip on c1, c2. Store B: a copy of A's clip/c1 (same key, same numbers),
    patchead on c1, c2, and A's winclip/c2 key with different numbers (a planted conflict)."""
    a, b = ResultsStore(tmp_path / "a"), ResultsStore(tmp_path / "b")
    shared = job_record("clip", "mvtec", "c1", metrics=_metrics(0.7), n_categories=2)
    clash = job_record("winclip", "mvtec", "c2", metrics=_metrics(0.8), n_categories=2)
    for rec in (shared, clash, job_record("clip", "mvtec", "c2", metrics=_metrics(0.6), n_categories=2)):
        a.write_record(rec)
    a.write_record(job_record("winclip", "mvtec", "c1", metrics=_metrics(0.75), n_categories=2))
    b.write_record(shared)
    for cat, v in (("c1", 0.9), ("c2", 0.95)):
        b.write_record(job_record("patchead", "mvtec", cat, metrics=_metrics(v), n_categories=2))
    changed = job_record("winclip", "mvtec", "c2", metrics=_metrics(0.5), n_categories=2)
    b.write_record(type(changed)(**{**changed.__dict__, "key": clash.key}))
    # predictions for one job: its page gets a score histogram
    rng = np.random.default_rng(0)
    b.write_predictions(
        shared.key,
        scores=rng.random(8).astype(np.float32),
        labels=np.array([0, 1] * 4),
        ids=np.arange(8),
        maps=np.zeros(0, np.float16),
        masks=np.zeros(0, np.uint8),
    )
    return a, b, shared, clash


def test_merge_deduplicates_identical_keys_and_flags_conflicts(tmp_path):
    a, b, shared, clash = _two_stores(tmp_path)
    merged = merge_stores([a.root, b.root])
    assert merged.sources[shared.key] == [str(a.root), str(b.root)]
    assert clash.key in merged.conflicts and clash.key not in merged.records
    assert len(merged.records) == 5  # clip c1, c2; winclip c1; patchead c1, c2


class _Tables(HTMLParser):
    """Rows of every <table class="sortable"> as lists of cell texts."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell, self._in_body = [], None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "sortable" in (attrs.get("class") or ""):
            self.tables.append([])
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self.tables:
            self.tables[-1].append([])
        elif tag == "td" and self._in_body and self.tables:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _dom(url: str) -> str:
    """The page's DOM after its scripts ran, from headless Chromium."""
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed")
def test_site_in_headless_chromium_has_no_duplicates_sorts_and_flags_the_conflict(tmp_path):
    a, b, _, clash = _two_stores(tmp_path)
    site = tmp_path / "site"
    result = CliRunner().invoke(cli, ["leaderboard", str(a.root), str(b.root), "--out", str(site)])
    assert result.exit_code == 0, result.output
    assert "1 duplicates merged, 1 conflicts" in result.output
    parser = _Tables()
    dom = _dom((site / "index.html").as_uri() + "#sort=0:1")
    parser.feed(dom)
    # the sorted body column's own header carries the mark (the row-label header spans both rows)
    assert re.search(r'<th[^>]*aria-sort="descending"[^>]*>Image-AUROC</th>', dom)
    (rows,) = parser.tables
    names = [r[0] for r in rows]
    assert len(names) == len(set(names)) == 3  # CLIP, WinCLIP, PatchEAD+ once each
    # sorted by the first metric column, descending, by the page's own script
    firsts = [float(r[1].split()[0].rstrip("12/")) if r[1] != "—" else -1 for r in rows]
    assert names[0].startswith("PatchEAD") and firsts == sorted(firsts, reverse=True)
    # winclip ran c1 only once the conflicting c2 is left out: its cell is marked partial
    winclip = next(r for r in rows if r[0].startswith("WinCLIP"))
    assert winclip[1] == "75.01/2"  # 75.0 and the coverage mark "1/2"
    conflicts = (site / "conflicts.html").read_text()
    assert clash.key in conflicts and "80.0" in conflicts and "50.0" in conflicts
    assert not re.search(r"(src|href)=\"https?://", "".join(p.read_text() for p in site.glob("*.html")))
    method_pages = [p.read_text() for p in site.glob("method-*.html")]
    assert any("data:image/png;base64," in page for page in method_pages)


def test_leaderboard_refuses_a_missing_store(tmp_path):
    result = CliRunner().invoke(cli, ["leaderboard", str(tmp_path / "nope"), "--out", str(tmp_path / "s")])
    assert result.exit_code != 0
    with pytest.raises(Exception, match="not a results store folder"):
        build_site([tmp_path / "nope"], tmp_path / "s")


def test_jobs_under_different_settings_never_share_a_column(tmp_path):
    """The same method at two eval sizes (two stores) is two columns, each averaging its own jobs."""
    a, b = ResultsStore(tmp_path / "a"), ResultsStore(tmp_path / "b")
    a.write_record(job_record("clip", "mvtec", "c1", metrics=_metrics(0.6), eval_size=240))
    b.write_record(job_record("clip", "mvtec", "c1", metrics=_metrics(0.8), eval_size=336))
    frame = merged_frame(merge_stores([a.root, b.root]))
    cols = sorted(frame["_col"].unique())
    assert (
        len(cols) == 2 and any("eval_size=240" in c for c in cols) and any("eval_size=336" in c for c in cols)
    )


def test_random_weight_columns_are_marked(tmp_path):
    a = ResultsStore(tmp_path / "a")
    a.write_record(job_record("clip", "mvtec", "c1", metrics=_metrics(0.6), random_weights=True))
    a.write_record(job_record("winclip", "mvtec", "c1", metrics=_metrics(0.7)))
    build_site([a.root], tmp_path / "site")
    index = (tmp_path / "site" / "index.html").read_text()
    assert "1 column(s) ran on randomly initialised backbone weights" in index
    assert index.count("RANDOM WEIGHTS</a>") == 1


def test_leaderboard_refuses_a_folder_without_records_and_an_empty_out(tmp_path):
    from adbench.errors import AdbenchError

    (tmp_path / "plain").mkdir()
    with pytest.raises(AdbenchError, match="no records/"):
        build_site([tmp_path / "plain"], tmp_path / "site")
    store = ResultsStore(tmp_path / "a")
    store.write_record(job_record("clip", "mvtec", "c1", metrics=_metrics(0.6)))
    result = CliRunner().invoke(cli, ["leaderboard", str(store.root), "--out", ""])
    assert result.exit_code != 0 and "--out: empty" in str(result.exception)
