"""HTML report: ``build_report(dirs, out_html)`` turns stage output folders into one page.

It renders saved artifacts only, each read through its owner's reader. See
:mod:`neurodit.report.build` for the sections and :mod:`neurodit.report.discover` for how each
folder's kind is detected from its files.
"""

from neurodit.report.build import build_report
from neurodit.report.discover import Found, detect_kind, discover

__all__ = ["Found", "build_report", "detect_kind", "discover"]
