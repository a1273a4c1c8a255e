"""Published numbers from the papers (package data) and the facts about those papers.

``data/published_results.csv`` holds one value per (source, method, setting, dataset, level,
metric) in percent. Several papers report the same baseline with different numbers, so a
comparison always names the one source it used. ``data/papers.json`` says, per paper, which
methods are its own, which AUPRO definition it prints and which datasets its average rows cover;
its order is the preference among papers. Records carry the CSV name of their method
(``published_name``, from the method plugin), so nothing here maps adbench names.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources

import pandas as pd

from adbench.errors import AdbenchError
from adbench.metric_catalog import METRICS
from adbench.protocol_catalog import PROTOCOLS

#: adbench metric key -> (level, metric) as spelled in the CSV.
METRIC_KEYS: dict[str, tuple[str, str]] = {k: s.published for k, s in METRICS.items() if s.published}

#: adbench protocol -> prefix of the CSV's ``setting`` values it can be compared with.
_SETTING_PREFIX = {name: p.published_label for name, p in PROTOCOLS.items()}


@dataclass(frozen=True)
class Paper:
    """One paper behind the published numbers (an entry of ``data/papers.json``)."""

    paper: str
    title: str
    own_methods: tuple[str, ...]
    aupro_definition: str  # "aupro_cflow" (AnomalyCLIP's evaluation code) or "aupro" (official)
    averages: dict[str, tuple[str, ...]]  # average row -> the datasets it covers


AUPRO_DEFINITIONS = ("aupro", "aupro_cflow")


@functools.cache
def load_papers() -> dict[str, Paper]:
    """The papers of the shipped data, in preference order (keyed by paper file name)."""
    path = resources.files("adbench.reports").joinpath("data/papers.json")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["papers"]
        papers = {
            e["paper"]: Paper(
                e["paper"],
                e["title"],
                tuple(e["own_methods"]),
                e["aupro_definition"],
                {k: tuple(v) for k, v in e["averages"].items()},
            )
            for e in entries
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise AdbenchError(f"{path}: malformed paper list ({type(exc).__name__}: {exc})") from None
    bad = [p.paper for p in papers.values() if p.aupro_definition not in AUPRO_DEFINITIONS]
    if bad:
        raise AdbenchError(
            f"{path}: {bad[0]}: aupro_definition must be one of {', '.join(AUPRO_DEFINITIONS)}"
        )
    return papers


def paper_info(paper: str) -> Paper:
    """The facts about one paper of the published CSV (a paper without an entry is a data error)."""
    papers = load_papers()
    if paper not in papers:
        raise AdbenchError(
            f"adbench.reports/data/papers.json: no entry for paper '{paper}' of the published CSV"
        )
    return papers[paper]


def own_paper(name: str) -> str | None:
    """The paper that proposes the method named ``name`` in the CSV (None for a baseline)."""
    return next((p.paper for p in load_papers().values() if name in p.own_methods), None)


def paper_of(source: str) -> str:
    """The paper file a CSV ``source`` cell names (``'vip2clip.txt (Tables 1-2)'`` -> ``'vip2clip.txt'``)."""
    return source.split(" ", 1)[0]


def source_label(source: str) -> str:
    """A readable name of a CSV source: ``'dma_sap__x.txt (Tables 1-6)'`` -> ``'DMA-SAP paper, Tables 1-6'``."""
    paper = paper_info(paper_of(source))
    where = source.split(" ", 1)[1].strip("()") if " " in source else ""
    name = f"{paper.own_methods[0]} paper" if paper.own_methods else paper.paper
    return f"{name}, {where}" if where else name


def uses_cflow_aupro(source: str) -> bool:
    """True when the paper's AUPRO is the AnomalyCLIP (``aupro_cflow``) definition."""
    return paper_info(paper_of(source)).aupro_definition == "aupro_cflow"


@functools.cache
def load_published() -> pd.DataFrame:
    """The published results table shipped with the package (values in percent)."""
    path = resources.files("adbench.reports").joinpath("data/published_results.csv")
    with resources.as_file(path) as p:
        frame = pd.read_csv(p)
    expected = {"source", "method", "setting", "dataset", "level", "metric", "value"}
    if not expected <= set(frame.columns):
        raise AdbenchError(f"{path}: expected columns {sorted(expected)}")
    frame["paper"] = frame["source"].map(paper_of)
    return frame


@functools.cache
def load_efficiency() -> pd.DataFrame:
    """Published speed and memory figures shipped with the package."""
    path = resources.files("adbench.reports").joinpath("data/published_efficiency.csv")
    with resources.as_file(path) as p:
        return pd.read_csv(p)


def setting_matches(protocol: str, setting: str) -> bool:
    """Whether a CSV ``setting`` describes the same protocol as an adbench ``protocol``."""
    prefix = _SETTING_PREFIX.get(protocol)
    return prefix is not None and setting.startswith(prefix)


def matches_paper(source: str, paper: str | None) -> bool:
    """Whether a CSV source belongs to the paper named by ``--paper`` (a substring, any case)."""
    return paper is None or paper.lower() in source.lower()


@functools.cache
def lookup(name: str, protocol: str, paper: str | None = None) -> tuple[str | None, pd.DataFrame]:
    """The one source used for a method under a protocol, and its rows (empty when none).

    The method's own paper wins; otherwise the first paper of ``data/papers.json`` reporting it;
    ``paper`` restricts the sources to one paper. Cached: treat the returned frame as read-only.
    """
    table = load_published()
    table = table[table["source"].map(lambda s: matches_paper(s, paper))]
    rows = table[(table["method"] == name) & table["setting"].map(lambda s: setting_matches(protocol, s))]
    if rows.empty:
        return None, rows
    order = [own_paper(name), *load_papers()]
    papers = set(rows["paper"])
    paper = next((p for p in order if p in papers), sorted(papers)[0])
    rows = rows[rows["paper"] == paper]
    source = rows["source"].iloc[0]
    return source, rows[rows["source"] == source]


def value_of(rows: pd.DataFrame, dataset: str, metric_key: str) -> float | None:
    """The published value (percent) for one dataset and adbench metric key, or None."""
    if metric_key not in METRIC_KEYS or rows.empty:
        return None
    level, metric = METRIC_KEYS[metric_key]
    hit = rows[(rows["dataset"] == dataset) & (rows["level"] == level) & (rows["metric"] == metric)]
    return None if hit.empty else float(hit["value"].iloc[0])


def average_row_for(rows: pd.DataFrame, metric_key: str, datasets: set[str]) -> str | None:
    """The average row of one source's ``rows`` comparable with an average over ``datasets``: the
    paper prints it for this metric and it covers exactly these datasets (``data/papers.json``)."""
    if metric_key not in METRIC_KEYS or rows.empty:
        return None
    level, metric = METRIC_KEYS[metric_key]
    printed = set(rows[(rows["level"] == level) & (rows["metric"] == metric)]["dataset"])
    averages = paper_info(paper_of(rows["source"].iloc[0])).averages
    return next((avg for avg, group in averages.items() if avg in printed and set(group) == datasets), None)


def published_shots(setting: str) -> int | None:
    """The k of a few-shot setting (``few-shot (k=4)``, ``4-shot``), or None when the paper does not say."""
    match = re.search(r"\bk\s*=\s*(\d+)|(\d+)-shot", setting)
    return int(match.group(1) or match.group(2)) if match else None


def ablation_value(method: str, value: str, dataset: str, metric_key: str) -> float | None:
    """A published ablation number: rows named ``<method> ablation <value>. ...`` in an ablation source."""
    table = load_published()
    rows = table[
        table["source"].str.contains("ablation")
        & table["method"].str.startswith(f"{method} ablation {value}.")
    ]
    if dataset.startswith("__average__"):
        # "__average__:mvtec,btad": the paper's Average, only when it covers exactly these datasets
        ours = set(dataset.partition(":")[2].split(","))
        if rows.empty or set(rows["dataset"]) != ours:
            return None
        vals = [value_of(rows, d, metric_key) for d in sorted(ours)]
        return mean_as_printed(vals) if all(v is not None for v in vals) else None
    return value_of(rows, dataset, metric_key)


def mean_as_printed(values: list[float]) -> float:
    """The mean of one-decimal numbers rounded half up to one decimal, as papers print averages
    (95.85 -> 95.9; binary floats would give 95.8)."""
    total = sum(Decimal(str(v)) for v in values) / len(values)
    return float(total.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))
