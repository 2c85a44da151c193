"""Dataset statistics report: `compute_stats` → `DatasetReport` → `write_report` (json, md, html).

Example:
    >>> from vhrdata.stats import compute_stats, write_report      # doctest: +SKIP
    >>> write_report(compute_stats("runs/records"), "runs/report")  # doctest: +SKIP
"""

from vhrdata.stats.compute import (
    REPORT_SCHEMA_VERSION,
    DatasetReport,
    quarantine_summary,
    records_stats,
    thumbnail_png,
)
from vhrdata.stats.report import compute_stats, detect_input
from vhrdata.stats.render import render_html, render_markdown, write_report
from vhrdata.stats.store import padding_fraction, store_stats

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "DatasetReport",
    "compute_stats",
    "detect_input",
    "padding_fraction",
    "quarantine_summary",
    "records_stats",
    "render_html",
    "render_markdown",
    "store_stats",
    "thumbnail_png",
    "write_report",
]
