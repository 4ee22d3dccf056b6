"""The "Generators compared" section: what ``neurodit compare`` wrote, read through its reader
(:func:`neurodit.compare.read_comparison`, :func:`neurodit.compare.schema.comparison_figures`) and shown
with its own table (:func:`neurodit.compare.render.table_rows`) and the figure it saved (``comparison.png``),
so the report and CMP_DIR show the same thing.
"""

from __future__ import annotations

from pathlib import Path

from neurodit.compare.render import table_rows
from neurodit.compare.schema import comparison_figures, read_comparison
from neurodit.report import html as H


def compare_section(dirs: list[Path], summary: H.Summary) -> str:
    """The report section for CMP_DIRs; the summary gets each comparison's sentence (best by C2ST and by
    downstream gain)."""
    if not dirs:  # an optional stage: no section (and no nav entry) rather than a "not run" line
        return ""
    parts = ['<section id="compare"><h2>Generators compared</h2>']
    for d in dirs:
        data = read_comparison(d)
        summary.say(f"Generators compared ({Path(d).name}): {data['summary']}", prio=0.5)
        if len(dirs) > 1:
            parts.append(f"<h3>{H.esc(Path(d).name)}</h3>")
        parts.append(f'<p class="{H.verdict_class(data["summary"])}">{H.esc(data["summary"])}</p>')
        header, rows = table_rows(data)
        parts.append(H.table(header, rows, numeric_from=2))
        png = comparison_figures(d, data).get("comparison")
        if png is not None:
            parts.append(H.figs([H.img(png.read_bytes(), "generators compared",
                                       "C2ST AUC per view (dashed: real held-out vs real train) and Fréchet "
                                       "distance per generator as a ratio to the real-vs-real floor (dashed "
                                       "at 1; raw where a row has no floor, as the axis says).")]))
        parts.append("<p>Each row's full evaluation is in " + ", ".join(
            f"<code>{H.esc(r['eval'])}</code>" for r in data["rows"]) + f" under {H.esc(str(d))}.</p>")
    return "".join(parts) + "</section>"


__all__ = ["compare_section"]
