"""Built-in report formats (a plugin like any other): html, latex, markdown and csv.

HTML uses a jinja2 environment with autoescape; LaTeX a separate environment whose variables
are LaTeX-escaped by default (``finalize``) and whose delimiters (``<< >>``, ``<% %>``) do not
clash with TeX braces. Best values are bold and second-best underlined in every format.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from adbench import hookimpl

from .render import Report, ReportFormat
from .tables import Cell, Table

_LOADER = jinja2.PackageLoader("adbench.reports", "templates")


# --------------------------------------------------------------------------- HTML


def html_cell(cell: Cell) -> Markup:
    """A cell as escaped HTML: <strong> for rank 1, <u> for rank 2, footnote marks as <sup>."""
    parts = []
    for part in cell.parts:
        text = escape(part.text)
        if part.rank == 1:
            text = Markup("<strong>{}</strong>").format(text)
        elif part.rank == 2:
            text = Markup("<u>{}</u>").format(text)
        parts.append(text)
    out = Markup(", ").join(parts)
    if cell.is_tuple:
        out = Markup("({})").format(out)
    if cell.tied:
        out += Markup('<span class="tied" title="not significantly worse than the best">†</span>')
    if cell.suffix:
        out += Markup(' <span class="cov">{}</span>').format(cell.suffix)
    if cell.marks:
        out += Markup("<sup>{}</sup>").format(",".join(map(str, cell.marks)))
    return out


def html_environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=_LOADER, autoescape=jinja2.select_autoescape(["html", "html.j2"]))
    env.filters["cell"] = html_cell
    env.filters["datauri"] = data_uri
    return env


def data_uri(path: Path) -> str:
    """A PNG embedded as a data: URI, so the HTML is one self-contained file."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_html(report: Report, out_dir: Path) -> list[Path]:
    path = Path(out_dir) / "report.html"
    path.write_text(html_environment().get_template("report.html.j2").render(report=report), encoding="utf-8")
    return [path]


# --------------------------------------------------------------------------- LaTeX


class Tex(str):
    """A string that is already LaTeX (the finalize step leaves it alone)."""


_TEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "—": "---",
    "−": "$-$",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "×": r"$\times$",
    "·": r"\textperiodcentered{}",
    "…": r"\ldots{}",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "α": r"$\alpha$",
    "†": r"\textsuperscript{\dag}",
    "\r\n": " ",  # a line break inside a name would end the paragraph (a table row, a caption)
    "\n": " ",
    "\r": " ",
    "\x00": "",
}
_TEX_RE = re.compile("|".join(re.escape(k) for k in _TEX_SPECIALS))


def escape_latex(value: object) -> str:
    """Escape LaTeX specials (``_ % & # $ { } \\ ~ ^ < >``) and map the few non-ASCII signs used."""
    if isinstance(value, Tex):
        return value
    return _TEX_RE.sub(lambda m: _TEX_SPECIALS[m.group(0)], "" if value is None else str(value))


def latex_cell(cell: Cell) -> Tex:
    parts = []
    for part in cell.parts:
        text = escape_latex(part.text)
        if part.rank == 1:
            text = rf"\textbf{{{text}}}"
        elif part.rank == 2:
            text = rf"\underline{{{text}}}"
        parts.append(text)
    out = ", ".join(parts)
    if cell.is_tuple:
        out = f"({out})"
    if cell.tied:
        out += r"\textsuperscript{\dag}"
    if cell.suffix:
        out += rf" {{\footnotesize {escape_latex(cell.suffix)}}}"
    if cell.marks:
        out += f"$^{{{','.join(map(str, cell.marks))}}}$"
    return Tex(out)


def latex_header(table: Table, col: int, size: str = "scriptsize") -> Tex:
    """A column header: the short name, then its detail lines in \\scriptsize (a nested tabular,
    so no extra package is needed) to keep long variant strings from widening the table."""
    name = escape_latex(table.columns[col])
    lines = table.details(col)
    if table.subcolumns:
        # a header spanning narrow ours/paper/Δ columns: one tag per line, or its width would
        # spread the extra space into the last subcolumn
        lines = [part for line in lines for part in line.split(" · ")]
    if not lines:
        return Tex(name)
    small = "".join(rf"\\\{size} {escape_latex(line)}" for line in lines)
    return Tex(rf"\begin{{tabular}}[b]{{@{{}}c@{{}}}}{name}{small}\end{{tabular}}")


def latex_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=_LOADER,
        autoescape=False,  # LaTeX, not HTML: escaping is done by finalize below
        block_start_string="<%",
        block_end_string="%>",
        variable_start_string="<<",
        variable_end_string=">>",
        comment_start_string="<#",
        comment_end_string="#>",
        finalize=escape_latex,
        keep_trailing_newline=True,
    )
    env.filters["cell"] = latex_cell
    env.filters["head"] = latex_header
    env.filters["tex"] = Tex  # a block already rendered (and escaped) by the template itself
    env.filters["label"] = lambda s: Tex(re.sub(r"[^A-Za-z0-9:._-]+", "-", str(s)))
    env.filters["file"] = lambda t: Tex(table_file(t))
    return env


def table_file(t: Table) -> str:
    """The file name stem of a table: its id, kept to characters safe in file names and labels."""
    return re.sub(r"[^A-Za-z0-9:._-]+", "-", t.file or t.id)


def render_latex(report: Report, out_dir: Path) -> list[Path]:
    """One ``tables/<id>.tex`` per table (booktabs and graphicx only, a float ready to ``\\input``;
    ``table*`` for a wide table in a two-column article) and ``report.tex``, which inputs them all."""
    env = latex_environment()
    table_dir = Path(out_dir) / "tables"
    table_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    template = env.get_template("table.tex.j2")
    for t in report.tables:
        path = table_dir / f"{table_file(t)}.tex"
        star = report.latex_columns == 2 and t.wide
        path.write_text(template.render(report=report, t=t, star=star), encoding="utf-8")
        paths.append(path)
    main = Path(out_dir) / "report.tex"
    main.write_text(env.get_template("report.tex.j2").render(report=report), encoding="utf-8")
    return [main, *paths]


# --------------------------------------------------------------------------- Markdown and CSV


def escape_markdown(value: object) -> str:
    """Markdown specials and HTML brackets escaped; line breaks (which would end a table row) as spaces."""
    text = re.sub(r"[\r\n\x00]+", " ", "" if value is None else str(value))
    return re.sub(r"([\\|*_`\[\]<>])", r"\\\1", text)


def markdown_cell(cell: Cell) -> str:
    parts = []
    for part in cell.parts:
        text = escape_markdown(part.text)
        parts.append(f"**{text}**" if part.rank == 1 else f"<u>{text}</u>" if part.rank == 2 else text)
    out = ", ".join(parts)
    out = f"({out})" if cell.is_tuple else out
    out += "†" if cell.tied else ""
    out += f" {escape_markdown(cell.suffix)}" if cell.suffix else ""
    return out + (f"<sup>{','.join(map(str, cell.marks))}</sup>" if cell.marks else "")


def render_markdown(report: Report, out_dir: Path) -> list[Path]:
    env = jinja2.Environment(loader=_LOADER, autoescape=False, keep_trailing_newline=True)
    env.filters["cell"] = markdown_cell
    env.filters["md"] = escape_markdown
    path = Path(out_dir) / "report.md"
    path.write_text(env.get_template("report.md.j2").render(report=report), encoding="utf-8")
    return [path]


def render_csv(report: Report, out_dir: Path) -> list[Path]:
    """The long-form numbers (one row per column × dataset × metric), with notes and warning."""
    path = Path(out_dir) / "report.csv"
    report.long.to_csv(path, index=False)
    return [path]


@hookimpl
def adbench_report_formats() -> list[ReportFormat]:
    return [
        ReportFormat("html", ".html", render_html, "HTML page: tables, footnotes, bar charts"),
        ReportFormat("latex", ".tex", render_latex, "LaTeX document with booktabs tables"),
        ReportFormat("markdown", ".md", render_markdown, "Markdown pipe tables"),
        ReportFormat("csv", ".csv", render_csv, "long-form numbers with notes and warnings"),
    ]
