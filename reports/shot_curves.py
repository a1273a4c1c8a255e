"""Shot curves (the PatchEAD paper's Fig. 4 form): a metric against k, one line per method, the
spread over seeds as a band; read from a store frame's few-shot records."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from adbench.metric_catalog import metric_spec  # noqa: E402
from adbench.protocol_catalog import takes_references  # noqa: E402
from adbench.safe_names import safe_path  # noqa: E402

from .ranking import column_label  # noqa: E402


def shot_table(frame: pd.DataFrame, metric: str, dataset: str) -> pd.DataFrame:
    """Rows (column, shots): mean and std over seeds of the category mean, and the categories used.

    Per seed the value is the mean over the categories that every k of that column ran, so a curve
    never mixes category subsets along k.
    """
    refs = frame["protocol"].map(takes_references).astype(bool)
    few = frame[refs & (frame["status"] == "ok") & (frame["dataset"] == dataset)]
    few = few[few[metric].notna()] if metric in few else few.iloc[0:0]
    if few.empty:
        return pd.DataFrame(columns=["column", "shots", "mean", "std", "seeds", "categories"])
    if "_label" in few:  # the report's column names (one per k): drop the k part
        labels = few["_label"].str.replace(r",? ?k ?= ?\d+", "", regex=True)
    else:
        labels = few.drop(columns=["shots"]).assign(protocol="").apply(column_label, axis=1)
    few = few.assign(column=labels)
    out = []
    for column, rows in few.groupby("column", sort=True):
        cats_per_k = rows.groupby("shots")["category"].apply(set)
        shared = set.intersection(*cats_per_k) if len(cats_per_k) else set()
        rows = rows[rows["category"].isin(shared)]
        per_seed = rows.groupby(["shots", "seed"])[metric].mean().reset_index()
        for k, vals in per_seed.groupby("shots"):
            out.append(
                {
                    "column": column,
                    "shots": int(k),
                    "mean": float(vals[metric].mean()),
                    "std": float(vals[metric].std(ddof=0)),
                    "seeds": int(len(vals)),
                    "categories": len(shared),
                }
            )
    return pd.DataFrame(out)


def shot_curves(frame: pd.DataFrame, metric: str, out_dir: Path) -> list[Path]:
    """One figure per dataset with few-shot runs at two or more k (PNG and PDF)."""
    paths: list[Path] = []
    if "protocol" not in frame:
        return paths
    spec = metric_spec(metric)
    for dataset in sorted(
        frame.loc[frame["protocol"].map(takes_references).astype(bool), "dataset"].unique()
    ):
        table = shot_table(frame, metric, dataset)
        curves = [(c, t.sort_values("shots")) for c, t in table.groupby("column", sort=True)]
        curves = [(c, t) for c, t in curves if len(t) >= 2]
        if not curves:
            continue
        fig, ax = plt.subplots(figsize=(4.8, 3.4))
        for column, t in curves:
            ax.plot(
                t["shots"], 100 * t["mean"], marker="o", label=f"{column} ({t['categories'].iloc[0]} cat.)"
            )
            ax.fill_between(t["shots"], 100 * (t["mean"] - t["std"]), 100 * (t["mean"] + t["std"]), alpha=0.2)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(table["shots"].unique()), [str(k) for k in sorted(table["shots"].unique())])
        ax.set_xlabel("shots k")
        ax.set_ylabel(f"{spec.title} (%)")
        title = frame.loc[frame["dataset"] == dataset, "dataset_title"].iloc[0] or dataset
        ax.set_title(f"{title}: {spec.title} vs k (band: ±1 std over seeds)", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        for ext in ("png", "pdf"):
            path = safe_path(out_dir, f"shots_{dataset}_{metric}", suffix=f".{ext}")
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=150)
            paths.append(path)
        plt.close(fig)
    return paths
