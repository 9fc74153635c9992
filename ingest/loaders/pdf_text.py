"""The text layer of a PDF's pages, read within a budget of characters.

A small PDF can hold a content stream that inflates to tens of megabytes of text (a decompression bomb), and
pypdf's text extraction grows faster than the text it returns (8 MB of text on one page took 9 s, 20 MB 38 s).
So before a page is extracted its text is estimated from the string operands of its content stream and of the
forms it draws (a cheap, linear scan), and reading stops as soon as the document is known to be over budget.
pypdf's own limits (75 MB per decompressed stream, in the versions the project requires) bound the scan.
"""

from __future__ import annotations

import re
from typing import Any

# Literal strings `( ... )` (escapes included; nested parentheses, rare in text, end a match early) and hex
# strings `< ... >`. Possessive quantifiers: what a run has matched is never given back, so a scan is linear.
_LITERAL_STRING = re.compile(rb"\((?:[^()\\]++|\\.)*+\)", re.DOTALL)
_HEX_STRING = re.compile(rb"<[0-9A-Fa-f\s]*+>")
# an estimate may run above the real text (2-byte codes, escapes): reading stops only when it is well over
ESTIMATE_SLACK = 2


class OverBudget(Exception):
    """Reading stopped: the document has (or, `estimated`, would have) `chars` characters by page `page`."""

    def __init__(self, chars: int, page: int, pages: int, *, estimated: bool) -> None:
        super().__init__(f"{chars} characters by page {page} of {pages}")
        self.chars, self.page, self.pages, self.estimated = chars, page, pages, estimated


def read_pages(reader: Any, max_chars: int) -> list[str]:
    """Each page's extracted text. Raises OverBudget as soon as the pages read so far, or the estimate of the
    next one, put the document over `max_chars`."""
    texts: list[str] = []
    total = 0
    pages = reader.pages
    for number, page in enumerate(pages, start=1):
        estimate = estimate_page_text(page)
        if total + estimate > ESTIMATE_SLACK * max_chars:
            raise OverBudget(total + estimate, number, len(pages), estimated=True)
        text = page.extract_text() or ""
        total += len(text)
        if total > max_chars:
            raise OverBudget(total, number, len(pages), estimated=False)
        texts.append(text)
    return texts


def estimate_page_text(page: Any) -> int:
    """About how many characters of text a page shows: the bytes of its content's string operands, plus those of
    each form (an XObject drawn with `Do`) times the times the content names it."""
    content = _content_bytes(page.get_contents())
    total = _string_bytes(content)
    for name, form in _forms(page.get("/Resources")).items():
        uses = content.count(name.encode("latin-1"))
        if uses:
            total += uses * _string_bytes(_content_bytes(form))
    return total


def _string_bytes(content: bytes) -> int:
    literal = sum(len(match) - 2 for match in _LITERAL_STRING.findall(content))
    hex_digits = sum(len(match) - 2 for match in _HEX_STRING.findall(content)) // 2
    return literal + hex_digits


def _content_bytes(stream: Any) -> bytes:
    if stream is None:
        return b""
    data = stream.get_data()
    return data if isinstance(data, bytes) else b""


def _forms(resources: Any) -> dict[str, Any]:
    """The form XObjects a page's resources name, by name ("/Fm1")."""
    if resources is None:
        return {}
    xobjects = resources.get_object().get("/XObject")
    if xobjects is None:
        return {}
    forms = {}
    for name, reference in xobjects.get_object().items():
        xobject = reference.get_object()
        if xobject.get("/Subtype") == "/Form":
            forms[str(name)] = xobject
    return forms
