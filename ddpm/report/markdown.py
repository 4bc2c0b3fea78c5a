"""``report.md``: the same sections as the HTML, with images as PNG files under ``img/`` beside it."""
from __future__ import annotations

from pathlib import Path

from ddpm.io import atomic_write_bytes, atomic_write_text
from ddpm.report.blocks import Block, Code, Figure, Section, Table, Text

IMG_DIR = "img"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or " "


def block_md(b: Block) -> str:
    if isinstance(b, Text):
        return f"*{b.text}*" if b.note else b.text
    if isinstance(b, Code):
        fence = f"```{b.language}\n{b.text}\n```"
        return f"<details><summary>{b.title}</summary>\n\n{fence}\n\n</details>" if b.title else fence
    if isinstance(b, Figure):
        alt = b.caption.replace("[", "(").replace("]", ")").replace("\n", " ")
        return f"![{alt}]({IMG_DIR}/{b.name}.png)\n\n*{b.caption}*"
    if isinstance(b, Table):
        cols = [_cell(c) for c in b.columns]
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in b.rows]
        if b.caption:
            lines.append(f"\n*{b.caption}*")
        return "\n".join(lines)
    raise TypeError(f"unknown block {type(b).__name__}")  # pragma: no cover - programming error


def render_markdown(title: str, subtitle: str, sections: list[Section]) -> str:
    out = [f"# {title}", "", f"*{subtitle}*", ""]
    out += [f"{i}. [{s.title}](#{s.key})" for i, s in enumerate(sections, 1)] + [""]
    for s in sections:
        out += [f'<a id="{s.key}"></a>', "", f"## {s.title}", ""]
        for b in s.blocks:
            out += [block_md(b), ""]
    return "\n".join(out)


def write_markdown(path: Path, title: str, subtitle: str, sections: list[Section]) -> Path:
    img = path.parent / IMG_DIR
    names = set()
    for s in sections:
        for b in s.blocks:
            if isinstance(b, Figure):
                atomic_write_bytes(img / f"{b.name}.png", b.png)
                names.add(f"{b.name}.png")
    if img.is_dir():  # drop images a previous report wrote that this one no longer shows
        for old in img.glob("*.png"):
            if old.name not in names:
                old.unlink()
    atomic_write_text(path, render_markdown(title, subtitle, sections))
    return path
