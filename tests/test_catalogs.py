"""Each protocol and metric is declared once (protocol_catalog, metric_catalog); the rest of adbench
reads the declarations instead of spelling names, titles or definitions again."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from adbench.metric_catalog import METRICS, table_order
from adbench.protocol_catalog import PROTOCOLS

REPO = Path(__file__).resolve().parents[1]
CORE = [p for d in ("harness", "reports") for p in sorted((REPO / d).rglob("*.py"))]


def _literals(path: Path) -> set[str]:
    """Every string constant of a module that is not a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    }


@pytest.mark.parametrize(
    ("catalog", "words"),
    [
        (
            "protocol_catalog.py",
            {w for p in PROTOCOLS.values() for w in (p.name, p.title, p.published_label)},
        ),
        ("metric_catalog.py", {w for m in METRICS.values() for w in (m.title, m.definition)}),
    ],
)
def test_names_titles_and_definitions_are_written_once(catalog, words):
    spelled = {str(p.relative_to(REPO)): sorted(words & _literals(p)) for p in CORE if p.name != catalog}
    assert {p: w for p, w in spelled.items() if w} == {}


def test_readers_follow_the_catalogs():
    from adbench import metrics
    from adbench.cli import cli
    from adbench.reports import catalog, published, tables

    assert metrics.METRICS == tuple(METRICS)
    assert metrics.METRIC_DEFINITIONS == {k: m.definition for k, m in METRICS.items()}
    assert published.METRIC_KEYS == {k: m.published for k, m in METRICS.items() if m.published}
    assert tables.METRIC_ORDER == table_order()
    assert all(catalog.protocol_title(name) == p.title for name, p in PROTOCOLS.items())
    protocol = next(o for o in cli.commands["run"].params if o.name == "protocol")
    assert list(protocol.type.choices) == list(PROTOCOLS)
