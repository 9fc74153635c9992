"""The character set an HTML page declares in a `<meta>` tag, found in bounded time.

A single pattern such as `<meta[^>]+charset...` rescans the rest of the page from every `<meta` that has no
`>` after it, and a page of nothing but `<meta` took seconds per 64 KB. Here a tag is a `<meta` with a `>` at
most _TAG_WINDOW bytes on, so the work is at most the window times the number of `<meta` in the sniffed head.
"""

from __future__ import annotations

import re

from ingest.loaders.decoding import SNIFF_BYTES

_TAG_WINDOW = 1024  # a real meta tag is far shorter
_CHARSET = re.compile(rb"""charset\s*=\s*(?:["']\s*)?([a-z0-9_.:-]+)""")


def declared_charset(data: bytes) -> str | None:
    """The lower-cased name after `charset=` in the first `<meta>` tag that has one, or None."""
    head = data[:SNIFF_BYTES].lower()
    start = head.find(b"<meta")
    while start != -1:
        tag_end = head.find(b">", start, start + _TAG_WINDOW)  # no `>` that close: not a tag
        found = _CHARSET.search(head, start, tag_end) if tag_end != -1 else None
        if found:
            return found.group(1).decode("ascii")
        start = head.find(b"<meta", start + 5)
    return None
