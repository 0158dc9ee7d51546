"""HTML building blocks for reports: escaping, tables, embedded images and the page shell.

Every string that could come from a user (run names, dataset names, config values, command lines)
goes through :func:`esc`; sections compose fragments with these helpers instead of formatting raw
HTML, so escaping is not something each section has to remember. The page has inline CSS only and no
scripts, so it reads the same offline, in any browser, with JavaScript off.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from typing import Any

CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d8dce4; --accent: #1f5fbf; --pub: #f4f1e8; --meas: #eaf2fd; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: var(--fg); margin: 0; background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; border-bottom: 2px solid var(--line); padding-bottom: 4px; margin-top: 36px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
p.meta, .muted { color: var(--muted); }
nav ul { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 6px 18px; }
nav a { color: var(--accent); text-decoration: none; }
table { border-collapse: collapse; margin: 8px 0 14px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: 4px 9px; text-align: right; }
th:first-child, td:first-child, td.text, th.text { text-align: left; }
thead th { background: #f2f4f8; }
tr.published td { background: var(--pub); }
tr.measured td { background: var(--meas); }
tr.group th { background: #e4e7ee; text-align: left; font-size: 13px; letter-spacing: .02em; }
td.best { font-weight: 700; text-decoration: underline; }
.badge { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 8px; margin-left: 6px;
         border: 1px solid currentColor; vertical-align: 1px; }
.badge.published { color: #8a6d1d; } .badge.measured { color: var(--accent); } .badge.check { color: #b3261e; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 16px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px; }
.card dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0 0 8px; }
.card dt { color: var(--muted); } .card dd { margin: 0; overflow-wrap: anywhere; }
.figs { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 8px 16px; }
figure { margin: 10px 0 18px; } figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; }
pre { background: #f6f7f9; border: 1px solid var(--line); padding: 8px 10px; overflow-x: auto; font-size: 12px; }
details { margin: 6px 0 12px; } summary { cursor: pointer; }
"""


def esc(value: Any) -> str:
    """Text for HTML element content or a quoted attribute value (quotes escaped too)."""
    return html.escape("" if value is None else str(value), quote=True)


def data_uri(data: bytes, mime: str | None = None) -> str:
    """An inline ``data:`` URI; the type is read from the bytes' magic number when not given."""
    if mime is None:
        if data.startswith(b"\x89PNG"):
            mime = "image/png"
        elif data.startswith(b"\xff\xd8"):
            mime = "image/jpeg"
        else:
            raise ValueError("not a PNG or JPEG image")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image(data: bytes, alt: str, caption: str | None = None) -> str:
    img = f'<img src="{data_uri(data)}" alt="{esc(alt)}">'
    if caption is None:
        return f"<figure>{img}</figure>"
    return f"<figure>{img}<figcaption>{esc(caption)}</figcaption></figure>"


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    row_classes: Sequence[str] | None = None,
    cell_classes: Sequence[Sequence[str]] | None = None,
    caption: str | None = None,
    raw_first: bool = False,
) -> str:
    """A table of escaped text; ``raw_first`` lets the first cell hold already-escaped HTML (a badge)."""
    out = ["<table>"]
    if caption:
        out.append(f"<caption class=\"muted\">{esc(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead><tbody>")
    for i, row in enumerate(rows):
        cls = f' class="{esc(row_classes[i])}"' if row_classes and row_classes[i] else ""
        cells = []
        for j, cell in enumerate(row):
            classes = list(cell_classes[i][j].split()) if cell_classes and cell_classes[i][j] else []
            if j == 0:
                classes.append("text")
            attr = f' class="{" ".join(classes)}"' if classes else ""
            text = cell if (raw_first and j == 0) else esc(cell)
            cells.append(f"<td{attr}>{text}</td>")
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def definition_list(items: Iterable[tuple[str, Any]]) -> str:
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items) + "</dl>"


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole document: ``sections`` are (anchor id, title, body HTML) triples."""
    nav = "".join(f'<li><a href="#{esc(sid)}">{esc(stitle)}</a></li>' for sid, stitle, _ in sections)
    body = "".join(
        f'<section id="{esc(sid)}"><h2>{esc(stitle)}</h2>{content}</section>' for sid, stitle, content in sections
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><main><h1>{esc(title)}</h1><p class=\"meta\">{esc(subtitle)}</p>"
        f"<nav><ul>{nav}</ul></nav>{body}</main></body></html>\n"
    )
