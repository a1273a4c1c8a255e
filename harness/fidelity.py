"""What each method computes against its official code or paper: declared once, on the plugin.

A method class lists its recorded choices in ``choices`` (a tuple of :class:`Choice`) and names the
code or paper its defaults follow in ``official_source``. ``docs/fidelity.md`` is generated from these
declarations (``python -m adbench.fidelity --write``); a test keeps the file up to date.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .methods import Method
    from .registry import Registry

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "fidelity.md"

HEADER = """\
# Fidelity: what each method computes against its official code or paper

Generated from the method plugins' declarations by `python -m adbench.fidelity --write`; do not edit
by hand (a test fails when this file and the plugins disagree).

Every default follows the official code at the named commit (the paper where no code exists). Each
row below is a recorded **choice**: where adbench's default differs from that source, or where the
source was ambiguous and adbench decided. The option column switches it; every record stores the
config it ran with, so a table column states which way each choice went.

## Declaring choices (plugin authors)

On the method class (``adbench.methods.Method``):

```python
from adbench.fidelity import Choice


class MyMethod(Method):
    official_source = "github.com/owner/repo @ <commit> (train.py, test.py)"  # or the paper
    choices = (
        Choice(
            topic="feature taps",
            default="layer 24 only (train.sh: --features_list 24)",
            deviation="none",  # or how the default differs from the source
            effect="the published rows",  # expected effect on the numbers
            option="--set my_method.feature_layers=6,12,18,24",  # '' when nothing switches it
        ),
    )
```

Smoothing a method applies inside `predict` is declared with `smooths_own_maps = True` (and
`map_sigma` returning that sigma): the engine then skips the evaluation protocol's Gaussian and the
record's `smoothing_sigma` states the method's.
"""


@dataclass(frozen=True)
class Choice:
    """One recorded decision: what runs by default (and the source line it follows), how that differs
    from the official code or paper, the expected effect, and the ``--set`` that switches it."""

    topic: str
    default: str
    deviation: str = "none"
    effect: str = ""
    option: str = ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "-"


def method_section(method_cls: type[Method]) -> str:
    """Markdown for one method: its source and a table of its choices."""
    title = method_cls.display_name or method_cls.name
    lines = [f"## {title} (`{method_cls.name}`)", ""]
    lines.append(f"Source: {method_cls.official_source or 'not declared'}")
    lines.append("")
    if not method_cls.choices:
        lines += ["No choices declared yet.", ""]
        return "\n".join(lines)
    lines += [
        "| topic | default (follows) | deviation from the source | expected effect | option |",
        "|---|---|---|---|---|",
    ]
    for c in method_cls.choices:
        cells = (c.topic, c.default, c.deviation, c.effect, f"`{c.option}`" if c.option else "")
        lines.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    lines.append("")
    return "\n".join(lines)


def render_fidelity(methods: Sequence[type[Method]]) -> str:
    """The whole ``docs/fidelity.md``: the header, then one section per method in name order."""
    sections = [method_section(m) for m in sorted(methods, key=lambda m: m.name)]
    return HEADER + "\n" + "\n".join(sections)


def builtin_methods(registry: Registry | None = None) -> list[type[Method]]:
    """The method classes the registry knows (built-in plugins, and any installed)."""
    from .registry import get_registry

    registry = registry or get_registry()
    return [registry.method(name) for name in registry.names("method")]


def main(argv: Sequence[str] = ()) -> int:
    """``python -m adbench.fidelity [--write]``: print the document, or write docs/fidelity.md."""
    text = render_fidelity(builtin_methods())
    if "--write" in argv:
        DOC_PATH.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
