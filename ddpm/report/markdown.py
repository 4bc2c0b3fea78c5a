"""``report.md``: the same sections as the HTML, with images as PNG files under ``img/`` beside it."""
from __future__ import annotations

import html
import re
from pathlib import Path

from ddpm.io import atomic_write_bytes, atomic_write_text
from ddpm.report.blocks import Block, Cell, Code, Figure, Gallery, Link, Section, Table, Text

IMG_DIR = "img"
LINK_SAFE = ":/?#[]@!$&'()*+,;=%-._~"   # kept as is in a link's URL; space, <, >, | and the rest percent-encoded

# What text may hold (study names, descriptions, choices, failure reasons come from users and exceptions) is
# escaped: HTML-significant characters as entities (no raw tag survives), Markdown punctuation with a
# backslash (CommonMark: any ASCII punctuation may be escaped), so a name renders as the characters it holds.
# ('_' inside a word is literal in CommonMark: model.num_feat stays readable and searchable)
_MD_PUNCT = re.compile(r"([\\`*\[\]|~#]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_CODE_SPAN = re.compile(r"`([^`]+)`")            # the blocks' own markup: `code` (as html.inline reads it)
_BLOCK_START = re.compile(r"^(\s*)([-+=>]|\d+[.)])")  # would start a list, quote or heading underline


def escape_md(text: str) -> str:
    """Plain text safe in a Markdown paragraph, heading, link text or table cell (one line)."""
    text = " ".join(str(text).splitlines())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_PUNCT.sub(r"\\\1", text)


def inline_md(text: str) -> str:
    """Escape ``text`` but keep its `code` spans as code: a plain span when its content is harmless, an
    HTML ``<code>`` element with escaped content when it holds "|" or HTML-significant characters."""
    out, pos = [], 0
    for m in _CODE_SPAN.finditer(text):
        out.append(escape_md(text[pos:m.start()]))
        code = m.group(1)
        if re.search(r"[<>&|\n]", code):  # a raw "|" would split a table cell even inside `code`
            out.append(f"<code>{escape_md(code)}</code>")
        else:
            out.append(f"`{code}`")
        pos = m.end()
    out.append(escape_md(text[pos:]))
    s = "".join(out)
    return _BLOCK_START.sub(lambda m: m.group(1) + "\\" + m.group(2) if len(m.group(2)) == 1 else
                            m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], s)


def fence_for(text: str) -> str:
    """A code fence longer than any run of backticks inside ``text`` (CommonMark: the block ends only at a
    fence at least as long as the opening one)."""
    longest = max((len(r) for r in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _cell(c: Cell) -> str:
    if isinstance(c, Link):  # the URL percent-encoded where it could end the link or split a table cell
        from urllib.parse import quote

        return f"[{escape_md(c.text)}](<{quote(c.url, safe=LINK_SAFE)}>)"
    return inline_md(c) or " "


def block_md(b: Block) -> str:
    if isinstance(b, Text):
        return f"*{inline_md(b.text)}*" if b.note else inline_md(b.text)
    if isinstance(b, Code):
        fence = fence_for(b.text)
        language = re.sub(r"[^A-Za-z0-9_+-]", "", b.language)
        block = f"{fence}{language}\n{b.text}\n{fence}"
        if b.title:
            return f"<details><summary>{html.escape(b.title)}</summary>\n\n{block}\n\n</details>"
        return block
    if isinstance(b, Figure):
        return f"{_image(b)}\n\n*{inline_md(b.caption)}*"
    if isinstance(b, Gallery):  # a table: the image, then its caption, one figure a row
        lines = ["| samples | |", "|---|---|"] + [f"| {_image(f, f.caption.split(':')[0])} | {_cell(f.caption)} |"
                                                  for f in b.figures]
        return "\n".join(lines + ([f"\n*{inline_md(b.caption)}*"] if b.caption else []))
    if isinstance(b, Table):
        cols = [_cell(c) for c in b.columns]
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in b.rows]
        if b.caption:
            lines.append(f"\n*{inline_md(b.caption)}*")
        return "\n".join(lines)
    raise TypeError(f"unknown block {type(b).__name__}")  # pragma: no cover - programming error


def _image(f: Figure, alt: str = "") -> str:
    return f"![{escape_md(alt or f.caption)}]({IMG_DIR}/{_file_stem(f.name)}.png)"


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def figures_of(sections: list[Section]) -> list[Figure]:
    """Every figure of the report, those inside galleries included."""
    return [f for s in sections for b in s.blocks
            for f in (b.figures if isinstance(b, Gallery) else [b] if isinstance(b, Figure) else [])]


def render_markdown(title: str, subtitle: str, sections: list[Section]) -> str:
    out = [f"# {inline_md(title)}", "", f"*{inline_md(subtitle)}*", ""]
    out += [f"{i}. [{escape_md(s.title)}](#{_anchor(s.key)})" for i, s in enumerate(sections, 1)] + [""]
    for s in sections:
        out += [f'<a id="{_anchor(s.key)}"></a>', "", f"## {inline_md(s.title)}", ""]
        for b in s.blocks:
            out += [block_md(b), ""]
    return "\n".join(out)


def _anchor(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", key)


def write_markdown(path: Path, title: str, subtitle: str, sections: list[Section]) -> Path:
    img = path.parent / IMG_DIR
    names = set()
    for f in figures_of(sections):
        atomic_write_bytes(img / f"{_file_stem(f.name)}.png", f.png)
        names.add(f"{_file_stem(f.name)}.png")
    if img.is_dir():  # drop images a previous report wrote that this one no longer shows
        for old in img.glob("*.png"):
            if old.name not in names:
                old.unlink()
    atomic_write_text(path, render_markdown(title, subtitle, sections))
    return path
