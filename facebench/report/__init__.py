"""Comparison reports: one self-contained HTML file from run directories (``facebench report``)."""

from __future__ import annotations

from .loading import RunData, load_run, load_runs
from .render import build_report, render_html, report_once, write_report

__all__ = ["RunData", "build_report", "load_run", "load_runs", "render_html", "report_once", "write_report"]
