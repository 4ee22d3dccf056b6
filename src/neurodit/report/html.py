"""Small HTML builders for the report: every piece of text goes through ``html.escape``.

The page is self-contained (inline CSS, a tiny inline script, PNGs as base64 ``data:`` URIs) and a
Content-Security-Policy forbids any network fetch, so it can be mailed as one file.
The inline script records, on ``<body>``, whether every image decoded (``data-images-ok``,
``data-images``, ``data-images-broken``) and any JavaScript/console error (``data-js-errors``): the
headless-browser test reads these from the dumped DOM.
"""

from __future__ import annotations

import base64
import contextlib
import html
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from neurodit.errors import NeuroditError

# numbers as text are shared with the stages that write tables of their own (neurodit compare)
from neurodit.formatting import MINUS, fmt, signed  # noqa: F401  (H.fmt, H.signed)

CSS = """
:root { --ink:#1f2a36; --muted:#5d6d7e; --line:#d5dde5; --accent:#1f6f8b; --bg:#f6f8fa; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--ink);
       margin: 0; background: #fff; line-height: 1.45; }
header { background: var(--accent); color: #fff; padding: 18px 32px; }
header h1 { margin: 0; font-size: 26px; }
header p { margin: 4px 0 0; opacity: .9; font-size: 14px; }
main { max-width: 1200px; margin: 0 auto; padding: 8px 32px 48px; }
nav { font-size: 14px; margin: 14px 0; }
nav a { color: var(--accent); margin-right: 14px; text-decoration: none; }
h2 { border-bottom: 2px solid var(--line); padding-bottom: 4px; margin-top: 36px; }
h3 { margin: 22px 0 8px; color: #2c3e50; }
.summary { background: #eef6f9; border: 1px solid #b9d9e4; border-left: 6px solid var(--accent);
           border-radius: 6px; padding: 12px 20px; margin: 18px 0; }
.summary h2 { border: 0; margin: 4px 0 6px; }
.summary li { margin: 4px 0; }
.verdict-good { color: #1e7d32; font-weight: 600; }
.verdict-bad { color: #b03a2e; font-weight: 600; }
.verdict-neutral { color: #7d6608; font-weight: 600; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 5px 10px; text-align: left; vertical-align: top; }
th { background: var(--bg); }
td.num { text-align: right; font-variant-numeric: tabular-nums; font-family: ui-monospace, Menlo, monospace; }
.figs { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 8px; background: #fff;
         max-width: 100%; }
figure img { max-width: 100%; height: auto; display: block; }
figure.half img { max-width: 540px; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; }
.not-run { color: var(--muted); font-style: italic; background: var(--bg); padding: 8px 12px;
           border-radius: 4px; }
details { margin: 6px 0; border: 1px solid var(--line); border-radius: 4px; padding: 6px 10px; }
summary { cursor: pointer; font-weight: 600; }
pre { background: var(--bg); padding: 10px; overflow-x: auto; font-size: 12px; max-height: 480px; }
.muted { color: var(--muted); font-size: 13px; }
code { background: var(--bg); padding: 0 3px; border-radius: 3px; }
"""

# Runs before <body> exists: collects errors, then writes the checks onto <body> at 'load'.
SCRIPT = """
(function () {
  var errors = [];
  function record() {
    if (document.body) { document.body.setAttribute('data-js-errors', errors.join(' | ')); }
  }
  window.addEventListener('error', function (e) {
    var t = e.target;
    errors.push(t && t !== window && t.tagName ? ('failed to load <' + t.tagName.toLowerCase() + '>')
                                               : String(e.message || 'error'));
    record();
  }, true);
  var origError = console.error;
  console.error = function () {
    errors.push(Array.prototype.join.call(arguments, ' '));
    record();
    return origError.apply(console, arguments);
  };
  window.addEventListener('load', function () {
    var imgs = document.images, broken = 0;
    for (var i = 0; i < imgs.length; i++) {
      if (!imgs[i].complete || imgs[i].naturalWidth === 0) { broken++; }
    }
    document.body.setAttribute('data-images', String(imgs.length));
    document.body.setAttribute('data-images-broken', String(broken));
    document.body.setAttribute('data-images-ok', broken === 0 ? 'true' : 'false');
    record();
    document.body.setAttribute('data-loaded', 'true');
  });
})();
"""

CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'")


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def img(png: bytes, alt: str, caption: str | None = None, cls: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    klass = f' class="{esc(cls)}"' if cls else ""
    return f'<figure{klass}><img src="data:image/png;base64,{data}" alt="{esc(alt)}">{cap}</figure>'


def figs(items: Iterable[str]) -> str:
    return '<div class="figs">' + "".join(items) + "</div>"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric_from: int = 1) -> str:
    """A table; cells at column index >= ``numeric_from`` holding numbers are right-aligned."""
    out = ["<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            is_num = isinstance(cell, (int, float)) and not isinstance(cell, bool) or cell is None
            klass = ' class="num"' if is_num and i >= numeric_from else ""
            out.append(f"<td{klass}>{esc(fmt(cell))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def folder_section(anchor: str, title: str, folders: Sequence[Path], render: Callable[[Path], str]) -> str:
    """A ``<section>`` with ``render(folder)`` per folder (a heading each when there are several); "" for
    none (an optional section). ``render`` may raise NeuroditError (see :func:`bad_keys`)."""
    if not folders:
        return ""
    parts = [f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>']
    for folder in folders:
        if len(folders) > 1:
            parts.append(f"<h3>{esc(folder.name)}</h3>")
        parts.append(render(folder))
    return "".join(parts) + "</section>"


@contextlib.contextmanager
def bad_keys(path: Path) -> Iterator[None]:
    """A stage file whose content lacks what the page needs: one NeuroditError naming ``path``."""
    try:
        yield
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise NeuroditError(f"missing or bad key {exc}", path) from exc


def details(summary: str, body_html: str) -> str:
    return f"<details><summary>{esc(summary)}</summary>{body_html}</details>"


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def not_run(text: str) -> str:
    return f'<p class="not-run">{esc(text)}</p>'


def verdict_class(text: str) -> str:
    """Colour a verdict by its words: helped/passed → good, hurt/failed/memoriz → bad, else neutral."""
    low = text.lower()
    if any(w in low for w in ("no sign of", "no copies", "could not tell", "close to real")):
        return "verdict-good"
    if any(w in low for w in ("did not", "no clear", "not significant", "inconclusive")):
        return "verdict-neutral"
    if any(w in low for w in ("hurt", "worse", "fail", "memoriz", "copied", "copies", "easy to tell",
                              "distinguishable", "zero diversity", "unlike")):
        return "verdict-bad"
    if any(w in low for w in ("helped", "improv", "pass", "better", "no copies", "ok")):
        return "verdict-good"
    return "verdict-neutral"


class Summary:
    """The summary box: plain-words lines, ordered by priority (downstream 0, metric families 1,
    cohort 4, training 5), in insertion order within one priority."""

    def __init__(self) -> None:
        self.items: list[tuple[float, str]] = []

    def say(self, text: str, cls: str | None = None, prio: float = 5) -> None:
        """Add one line (escaped here; coloured by ``cls`` or by its words)."""
        self.items.append((prio, f'<span class="{cls or verdict_class(text)}">{esc(text)}</span>'))

    def raw(self, fragment: str, prio: float = 5) -> None:
        """Add one already-escaped HTML fragment (e.g. the calibration panel's table)."""
        self.items.append((prio, fragment))

    def html_items(self) -> list[str]:
        return [h for _, h in sorted(self.items, key=lambda x: x[0])]


def page(title: str, subtitle: str, nav: list[tuple[str, str]], summary_items: list[str],
         sections: list[str]) -> str:
    """The whole document. ``summary_items`` and ``sections`` are already-escaped HTML fragments."""
    nav_html = "".join(f'<a href="#{esc(anchor)}">{esc(label)}</a>' for anchor, label in nav)
    if summary_items:
        summary_body = "<ul>" + "".join(f"<li>{item}</li>" for item in summary_items) + "</ul>"
    else:
        summary_body = not_run("No verdicts: no evaluation or downstream folder was given.")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style><script>{SCRIPT}</script></head>\n<body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><main>"
        f"<nav>{nav_html}</nav>"
        f'<section class="summary" id="summary"><h2>Summary</h2>{summary_body}</section>\n'
        + "\n".join(sections)
        + "</main></body></html>\n"
    )
