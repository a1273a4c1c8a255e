"""Efficiency tables: speed, memory and size per column from the records (DMA-SAP Sec 4.1.3,
ViP2-CLIP Table 3), beside the published figures (as printed; GPUs differ between papers)."""

from __future__ import annotations

import pandas as pd

from . import published as pub
from .grids import ReproducedGrid
from .model import DASH, Cell, Part, Row, Table


def _num(value: float | None, digits: int = 1) -> str:
    """A figure with ``digits`` decimals (small values in two significant digits), or the dash."""
    if value is None or pd.isna(value):
        return DASH
    return f"{value:.{digits}f}" if abs(value) >= 10**-digits or value == 0 else f"{value:.2g}"


def reproduced_efficiency(grid: ReproducedGrid) -> Table:
    """Speed, memory and size per column from what the records store (DMA-SAP Sec 4.1.3, ViP2-CLIP Table 3).

    ms/image and images/s pool every job (total predict time / total test images); peak memory is the
    largest per-job peak (each job measured on its own: models of earlier jobs are freed first).
    """
    fields = [
        "device",
        "ms / image",
        "images / s",
        "peak mem (GB)",
        "trainable params (M)",
        "total params (M)",
        "training (h)",
    ]
    rows = []
    kinds = set()
    for c in range(len(grid.keys)):
        recs = grid.rows_of(c)
        predict = pd.to_numeric(recs.get("timing.predict_s"), errors="coerce")
        n = pd.to_numeric(recs.get("n_test"), errors="coerce")
        ok = predict.notna() & n.notna()
        total_s, total_n = float(predict[ok].sum()), float(n[ok].sum())
        mem = pd.to_numeric(recs.get("timing.peak_mem_mb"), errors="coerce")
        kind = recs.get("timing.peak_mem_kind", pd.Series(dtype=object)).dropna()
        kinds |= set(kind)
        train = pd.to_numeric(recs.get("timing.train_s"), errors="coerce").dropna().unique()
        devices = ", ".join(sorted({str(d) for d in recs.get("device", pd.Series(dtype=object)).dropna()}))
        values = [
            devices or DASH,
            _num(1000 * total_s / total_n if total_n and total_s else None),
            _num(total_n / total_s if total_s else None),
            _num(mem.max() / 1024 if mem.notna().any() else None, 2),
            _num(pd.to_numeric(recs.get("params_trainable"), errors="coerce").max() / 1e6, 2),
            _num(pd.to_numeric(recs.get("params_total"), errors="coerce").max() / 1e6, 2),
            _num(float(train.mean()) / 3600 if len(train) else None, 3),
        ]
        rows.append(Row(grid.columns[c], [Cell([Part(v)]) for v in values]))
    memory = {
        "cuda_max_allocated": "GPU: peak CUDA allocation of the job",
        "job_max_rss": "CPU: peak resident set size of the process during the job (reset per job)",
        "process_max_rss": "CPU: peak resident set size of the whole process (includes earlier jobs)",
    }
    remarks = [memory.get(k, k) for k in sorted(kinds)] + [
        "Training time = mean over the column's fits (a reused cached fit reports its original time)."
    ]
    return Table(
        "efficiency",
        "Reproduced efficiency (from the records)",
        "Column",
        fields,
        rows,
        remarks=list(grid.legend) + remarks,
        section="efficiency",
    )


def efficiency_tables(grid: ReproducedGrid, paper: str | None = None) -> list[Table]:
    """The reproduced efficiency table beside the published one (``paper`` filters the latter)."""
    published = published_efficiency_table(paper)
    published.section = "efficiency"
    return [reproduced_efficiency(grid)] + ([published] if published.rows else [])


def published_efficiency_table(paper: str | None = None) -> Table:
    """Published speed/memory figures (as printed; GPUs differ between papers)."""
    eff = pub.load_efficiency()
    eff = eff[eff["source"].map(lambda s: pub.matches_paper(s, paper))]
    fields = [
        ("gpu", "GPU"),
        ("input_px", "input px"),
        ("infer_ms_per_image", "ms / image"),
        ("gpu_mem_gb", "GPU mem (GB)"),
        ("trainable_params_m", "trainable params (M)"),
        ("total_params_m", "total params (M)"),
        ("train_hours", "training (h)"),
    ]
    rows = []
    for rec in eff.to_dict("records"):
        cells = [Cell([Part(DASH if pd.isna(rec[f]) else str(rec[f]))]) for f, _ in fields]
        rows.append(Row(f"{rec['method']} ({pub.source_title(rec['source'])})", cells))
    remarks = [f"{r['method']}: {r['note']}" for r in eff.to_dict("records") if isinstance(r["note"], str)]
    return Table(
        "pub-efficiency",
        "Published efficiency",
        "Method (source)",
        [label for _, label in fields],
        rows,
        remarks=remarks,
        section="published",
    )
