"""The report's content model: sections made of a few block kinds, rendered by every writer alike.

Section builders produce blocks; the HTML and Markdown writers only render them, so both files
always hold the same content.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from ddpm.redact import redact_text


@dataclass
class Text:
    text: str                 # one paragraph; `backticks` mark code
    note: bool = False        # an aside (e.g. why a chart is missing), rendered in italics


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    name: str                 # file stem for the Markdown image folder, e.g. "history"
    png: bytes
    caption: str


@dataclass
class Code:
    text: str
    language: str = ""
    title: str = ""           # when set, the block is folded under this title (HTML/Markdown <details>)


Block = Union[Text, Table, Figure, Code]


@dataclass
class Section:
    key: str                  # anchor id, e.g. "summary"
    title: str
    blocks: list[Block] = field(default_factory=list)


def redact(sections: list[Section], secrets: list[str]) -> None:
    """Mask every URL password and every known secret (the storage password) in the report's text, in place."""
    def clean(s: str) -> str:
        return redact_text(s, secrets)

    for sec in sections:
        sec.title = clean(sec.title)
        for b in sec.blocks:
            if isinstance(b, Text):
                b.text = clean(b.text)
            elif isinstance(b, Code):
                b.text = clean(b.text)
            elif isinstance(b, Figure):
                b.caption = clean(b.caption)
            elif isinstance(b, Table):
                b.caption = clean(b.caption)
                b.columns = [clean(c) for c in b.columns]
                b.rows = [[clean(c) for c in row] for row in b.rows]
