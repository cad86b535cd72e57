"""Marked README sections (`<!-- devtools:<name>:start -->` ... `<!-- devtools:<name>:end -->`)."""

from __future__ import annotations

import re

from services.documentation.models import DocsError

_ANY_SECTION = re.compile(r"<!-- devtools:([a-z][a-z0-9_-]*):start -->.*?<!-- devtools:\1:end -->", re.DOTALL)


def start_marker(section: str) -> str:
    return f"<!-- devtools:{section}:start -->"


def end_marker(section: str) -> str:
    return f"<!-- devtools:{section}:end -->"


def replace_section(document: bytes, section: str, body: str) -> bytes:
    """The document with only the text between the section's markers replaced; all else byte for byte."""
    start, end = start_marker(section).encode(), end_marker(section).encode()
    if document.count(start) != 1 or document.count(end) != 1:
        raise DocsError(
            f"readme: needs exactly one {start.decode()} and one {end.decode()} marker "
            f"(found {document.count(start)} and {document.count(end)})"
        )
    head_end = document.index(start) + len(start)
    tail_start = document.index(end)
    if tail_start < head_end:
        raise DocsError(f"readme: {end.decode()} comes before {start.decode()}")
    newline = b"\r\n" if b"\r\n" in document else b"\n"
    text = body.strip("\n").replace("\n", newline.decode()).encode()
    return document[:head_end] + newline + text + newline + document[tail_start:]


def strip_generated_sections(text: str) -> str:
    """A README without the generated sections' contents, so a guide built from it does not nest itself."""
    return _ANY_SECTION.sub("", text)


def demote_headings(markdown: str) -> str:
    """Headings one level down, so embedded text sits under the host document's own; code blocks untouched."""
    out: list[str] = []
    in_fence = False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        out.append("#" + line if not in_fence and line.startswith("#") else line)
    return "\n".join(out)
