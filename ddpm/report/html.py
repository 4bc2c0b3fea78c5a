"""``report.html``: one self-contained file (images as data URIs, inline CSS, no scripts; the only links out
are trials' W&B run pages, which a reader may follow and the page never fetches).

A Content-Security-Policy meta tag forbids every external fetch, so a browser proves it is offline-safe.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from ddpm.io import atomic_write_text
from ddpm.report.blocks import Block, Cell, Code, Figure, Gallery, Link, Section, Table, Text

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; margin: 0 auto;
       max-width: 1100px; padding: 24px; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 2em; }
nav ol { columns: 2; } .note { color: #555; font-style: italic; }
table { border-collapse: collapse; margin: 10px 0; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; white-space: nowrap; }
th { background: #f3f3f5; } caption { caption-side: bottom; text-align: left; color: #555; font-size: 12px; }
figure { margin: 14px 0; display: inline-block; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; }
figure.grid img { image-rendering: pixelated; }
figcaption { color: #555; font-size: 12px; max-width: 680px; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 12px; margin: 14px 0; }
.gallery figure { margin: 0; } .gallery figure img { width: 100%; height: auto; }
.gallery-caption { color: #555; font-size: 12px; }
pre { background: #f6f8fa; padding: 10px; overflow-x: auto; font-size: 12px; }
pre code { background: none; padding: 0; } details { margin: 10px 0; } summary { cursor: pointer; }
code { background: #f3f3f5; padding: 0 3px; border-radius: 3px; }
"""


def inline(text: str) -> str:
    """Escape, then turn `code` spans into <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def cell_html(c: Cell) -> str:
    if isinstance(c, Link):
        return (f'<a href="{html.escape(c.url, quote=True)}" target="_blank" rel="noopener noreferrer">'
                f"{html.escape(c.text)}</a>")
    return inline(c)


def block_html(b: Block) -> str:
    if isinstance(b, Text):
        return f'<p class="note">{inline(b.text)}</p>' if b.note else f"<p>{inline(b.text)}</p>"
    if isinstance(b, Code):
        pre = f"<pre><code>{html.escape(b.text)}</code></pre>"
        return f"<details><summary>{inline(b.title)}</summary>{pre}</details>" if b.title else pre
    if isinstance(b, Gallery):
        cap = f'<p class="gallery-caption">{inline(b.caption)}</p>' if b.caption else ""
        return '<div class="gallery">' + "".join(block_html(f) for f in b.figures) + "</div>" + cap
    if isinstance(b, Figure):
        cls, size = "", ""
        if b.name.startswith("grid"):  # small sample grids: shown 2x, pixels kept sharp
            w, h = png_size(b.png)
            cls, size = ' class="grid"', f' width="{2 * w}" height="{2 * h}"'
        return (f'<figure{cls}><img src="{data_uri(b.png)}"{size} alt="{html.escape(b.caption, quote=True)}">'
                f"<figcaption>{inline(b.caption)}</figcaption></figure>")
    if isinstance(b, Table):
        head = "" if not any(b.columns) else "<thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in b.columns) + "</tr></thead>"
        body = "".join("<tr>" + "".join(f"<td>{cell_html(c)}</td>" for c in row) + "</tr>" for row in b.rows)
        cap = f"<caption>{inline(b.caption)}</caption>" if b.caption else ""
        return f"<table>{cap}{head}<tbody>{body}</tbody></table>"
    raise TypeError(f"unknown block {type(b).__name__}")  # pragma: no cover - programming error


def render_html(title: str, subtitle: str, sections: list[Section]) -> str:
    toc = "".join(f'<li><a href="#{s.key}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "".join(f'<section id="{s.key}"><h2>{html.escape(s.title)}</h2>'
                   + "\n".join(block_html(b) for b in s.blocks) + "</section>\n" for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1><p class=\"note\">{inline(subtitle)}</p>\n"
            f"<nav><ol>{toc}</ol></nav>\n{body}</body></html>\n")


def write_html(path: Path, title: str, subtitle: str, sections: list[Section]) -> Path:
    atomic_write_text(path, render_html(title, subtitle, sections))
    return path
