"""``wgpt report``: one self-contained HTML page to see and hear runs and benches (docs/report.md)."""

from wgpt.report.page import ReportOptions, build_report, write_report
from wgpt.report.samples import SampleOptions

__all__ = ["ReportOptions", "SampleOptions", "build_report", "write_report"]
