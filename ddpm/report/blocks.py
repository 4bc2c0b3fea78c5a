"""The report's content model: sections made of a few block kinds, rendered by every writer alike.

Section builders produce blocks; the HTML and Markdown writers only render them, so both files
always hold the same content.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass
class Text:
    text: str                 # one paragraph; `backticks` mark code
    note: bool = False        # an aside (e.g. why a chart is missing), rendered in italics


@dataclass
class Link:
    """A table cell that links out (a trial's W&B run): HTML ``<a>``, Markdown ``[text](url)``. Only http(s)
    URLs are ever made links (``ddpm.formatting.web_url``); builders give plain text otherwise."""

    text: str
    url: str


Cell = Union[str, Link]


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""


@dataclass
class Figure:
    name: str                 # file stem for the Markdown image folder, e.g. "history"
    png: bytes
    caption: str


@dataclass
class Gallery:
    figures: list[Figure]     # shown side by side (HTML: a CSS grid; Markdown: a table, one row per figure)
    caption: str = ""


@dataclass
class Code:
    text: str
    language: str = ""
    title: str = ""           # when set, the block is folded under this title (HTML/Markdown <details>)


Block = Union[Text, Table, Figure, Gallery, Code]


@dataclass
class Section:
    key: str                  # anchor id, e.g. "summary"
    title: str
    blocks: list[Block] = field(default_factory=list)
