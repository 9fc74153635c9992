"""Deep HTML made shallow enough for lxml, in one pass whose cost is linear in the page.

lxml refuses trees deeper than 255 levels, and trafilatura then sees an empty page; so a page without main text
is re-written keeping only tags up to a depth, their text kept (scripts and styles go whole). Python 3.11's
`html.parser` did this before, but it rescans the rest of the page from every tag left open (a page of
128 KB of `<a ` took 5 minutes). Here every search for a tag's end starts where the last one stopped, and a
tag that never ends ends the page.
"""

from __future__ import annotations

import re
from collections import Counter

VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)
RAW_TEXT_TAGS = frozenset({"script", "style", "template", "noscript"})
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9:-]*")


def flatten_html(html: str, limit: int) -> tuple[str, int]:
    """The page with tags deeper than `limit` levels dropped (their text kept; comments, void tags, scripts and
    styles dropped), and how deep its tags nested."""
    lowered = html.lower()  # for finding the end of a script or style whatever its case
    out: list[str] = []
    open_tags: list[tuple[str, bool]] = []  # (name, written)
    open_names: Counter[str] = Counter()
    deepest = 0
    position = 0
    while position < len(html):
        start = html.find("<", position)
        if start == -1:
            out.append(html[position:])
            break
        out.append(html[position:start])
        if html.startswith("<!--", start):
            end = html.find("-->", start + 4)
            position = len(html) if end == -1 else end + 3
            continue
        closing = html.startswith("</", start)
        name = _TAG_NAME.match(html, start + (2 if closing else 1))
        if name is None:  # a "<" that opens no tag is text
            out.append("&lt;")
            position = start + 1
            continue
        end = html.find(">", name.end())
        if end == -1:  # a tag that never ends: the page ends here
            break
        tag = name.group().lower()
        position = end + 1
        if closing:
            _close(tag, open_tags, open_names, out)
        elif tag in RAW_TEXT_TAGS:
            position = _after_raw_text(lowered, tag, position)
        elif tag not in VOID_TAGS:
            written = len(open_tags) < limit
            open_tags.append((tag, written))
            open_names[tag] += 1
            deepest = max(deepest, len(open_tags))
            if written:
                out.append(html[start:position])
    return "".join(out), deepest


def _after_raw_text(lowered: str, tag: str, position: int) -> int:
    """Where the page goes on after a script or style body: after its end tag, or nowhere if it has none."""
    close = lowered.find(f"</{tag}", position)
    end = lowered.find(">", close) if close != -1 else -1
    return len(lowered) if end == -1 else end + 1


def _close(tag: str, open_tags: list[tuple[str, bool]], open_names: Counter[str], out: list[str]) -> None:
    """Close `tag` and every tag opened inside it; an end tag that closes nothing open is dropped."""
    if not open_names[tag]:
        return
    while open_tags:
        name, written = open_tags.pop()
        open_names[name] -= 1
        if written:
            out.append(f"</{name}>")
        if name == tag:
            return
