"""Markdown → plain text through a real parser (markdown-it-py, CommonMark plus tables and strikethrough).

The words stay and the markup goes: headings, emphasis, links (their text stays, their URL goes), images
(dropped whole, alt text and URL alike), reference definitions, HTML tags and comments. List items keep their
marker ("- item", "1. item") and code keeps its content. Blocks are separated by a blank line.

A parser rather than regular expressions because its cost is linear in the input: the substitutions this
replaced backtracked on crafted input (a line of 64,000 `[`, runs of `<!--` or `<http:`) and one 64 KB file
took minutes. Everything here is a pure function of the text, like the rest of the cleaning.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from markdown_it import MarkdownIt
from markdown_it.token import Token

# Leading `---` block of `key: value` lines (Jekyll/Hugo). Anchored at the start, and the lazy body stops at
# the first closing line, so the scan is one pass.
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(?P<body>.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_MATTER_FIELD = re.compile(r"(?P<key>[A-Za-z_][\w-]*)[ \t]*:(?P<value>.*)")
_RAW_HTML_BLOCKS = ("<script", "<style", "<!--", "<?", "<![cdata[")


@functools.lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # html on: tags become tokens that are dropped, instead of text that would stay
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """Split a leading YAML-style `---` block of `key: value` lines (Jekyll/Hugo) from the Markdown body."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    fields: dict[str, str] = {}
    for line in match.group("body").split("\n"):
        field = _FRONT_MATTER_FIELD.match(line)
        if field:
            fields[field.group("key").lower()] = field.group("value").strip().strip("'\"")
    return fields, text[match.end() :]


class MarkdownText(NamedTuple):
    text: str
    heading: str | None  # the first level-1 heading (`# Title`, or a title underlined with `===`)


def read_markdown(markdown: str) -> MarkdownText:
    """Plain text from Markdown, markup removed and words kept (see the module docstring), and its first
    level-1 heading. The items of a tight list and the rows of a table stay on consecutive lines; other blocks
    are separated by a blank line."""
    tokens = _parser().parse(markdown)
    parts: list[str] = []
    previous_run: str | None = None
    for block, run in _blocks(tokens):
        if not block.strip():
            continue
        if parts:
            parts.append("\n" if run is not None and run == previous_run else "\n\n")
        parts.append(block)
        previous_run = run
    return MarkdownText("".join(parts), _first_heading(tokens))


def _first_heading(tokens: Sequence[Token]) -> str | None:
    for index, token in enumerate(tokens[:-1]):
        if token.type == "heading_open" and token.tag == "h1":
            return _inline_text(tokens[index + 1].children or []).strip() or None
    return None


def _blocks(tokens: Sequence[Token]) -> Iterator[tuple[str, str | None]]:
    """(text, run) per leaf block (paragraph, heading, code, table row...), list markers in front. Blocks of one
    run ("list": the items of a tight list; "table": its rows) need no blank line between them."""
    markers: list[str] = []  # the marker of each list item we are inside, innermost last, until it is used
    cells: list[str] | None = None  # inside a table row
    tight = False  # the current paragraph is an item of a tight list (markdown-it hides its paragraph)
    for token in tokens:
        kind = token.type
        if kind == "list_item_open":
            markers.append(f"{token.info}{token.markup} " if token.info else f"{token.markup} ")
        elif kind == "list_item_close":
            markers.pop()
        elif kind == "paragraph_open":
            tight = token.hidden
        elif kind == "inline" and cells is not None:
            cells.append(_inline_text(token.children or []).strip())
        elif kind == "inline":
            yield _take_marker(markers) + _inline_text(token.children or []), "list" if tight and markers else None
        elif kind in ("code_block", "fence"):
            yield _take_marker(markers) + token.content.rstrip("\n"), None
        elif kind == "html_block":
            yield _take_marker(markers) + _html_block_text(token.content), None
        elif kind == "tr_open":
            cells = []
        elif kind == "tr_close" and cells is not None:
            yield "| " + " | ".join(cells) + " |", "table"
            cells = None


def _take_marker(markers: list[str]) -> str:
    """A list item's marker goes in front of its first block only."""
    if not markers or not markers[-1]:
        return ""
    marker, markers[-1] = markers[-1], ""
    return marker


def _inline_text(children: Sequence[Token]) -> str:
    parts: list[str] = []
    for child in children:
        if child.type in ("text", "text_special", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        # images (alt text and URL), raw inline HTML and the open/close marks of emphasis and links add nothing
    return "".join(parts)


def _html_block_text(html: str) -> str:
    """The text of a raw HTML block with its tags removed; scripts, styles and comments go whole."""
    if html.lstrip().lower().startswith(_RAW_HTML_BLOCKS):
        return ""
    return strip_tags(html)


def strip_tags(html: str) -> str:
    """`html` without its `<...>` tags, in one pass: a `<` with no `>` after it is text, not a tag, and a
    pattern such as `<[^>]*>` would rescan the rest of the text from every such `<`."""
    parts: list[str] = []
    position = 0
    while True:
        start = html.find("<", position)
        end = html.find(">", start + 1) if start != -1 else -1
        if end == -1:
            parts.append(html[position:])
            return "".join(parts)
        parts.append(html[position:start])
        position = end + 1
