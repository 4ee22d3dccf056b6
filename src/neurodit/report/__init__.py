"""HTML report (issue 6): ``build_report(dirs, out_html)`` turns stage output folders into one page.

See :mod:`neurodit.report.build` for the sections and :mod:`neurodit.report.discover` for how each
folder's kind is detected from its files.
"""

from neurodit.report.build import build_report, plain_difference
from neurodit.report.discover import Found, detect_kind, discover

__all__ = ["Found", "build_report", "detect_kind", "discover", "plain_difference"]
