"""adbench.reports: paper-style tables (HTML, LaTeX, Markdown, CSV), bar charts and published numbers.

Reports read only the results store; formats are plugins (hook ``adbench_report_formats``).
"""

from .options import ReportOptions
from .render import Report, ReportFormat, build_report, render_report

__all__ = ["Report", "ReportFormat", "ReportOptions", "build_report", "render_report"]
