"""Crafted files that cost far more to extract than their size suggests, unless extraction is linear, and a
normal file of the same size to compare them with (`python -m eval bench-hostile`, tests/test_hostile_input.py).

Each case writes a file of about `size` bytes: the patterns that made regular expressions backtrack
(runs of `[`, `![`, `<!--`, `<http:` and `<br`, a heading padded with spaces, runs of `*` and `_`), the ones a
parser could choke on (deep nesting, many `<`, one line without a break, long tables), and pages of nothing but
`<meta`. Generated, never committed: a megabyte of `[` says nothing a reader needs to see.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_ARTICLE = PROJECT_ROOT / "data" / "smartcity_alliance_launch.txt"
_PROSE = "정부는 오늘 새로운 스마트시티 정책을 발표했다. 이 정책은 도시 문제 해결을 목표로 한다."


@dataclass(frozen=True)
class HostileCase:
    name: str
    suffix: str  # the file type it is written as
    make: Callable[[int], str | bytes]  # size in bytes (about) → content
    what: str
    refused_for: str | None = None  # a word of the reason it fails with; None: it loads, prose kept


def _repeat(unit: str, size: int) -> str:
    return unit * max(1, size // len(unit.encode("utf-8")))


def _page(body: str) -> str:
    """A page with a real paragraph around the crafted body, so extraction has an article to find."""
    return f"<html><head><title>정책 발표</title></head><body><p>{_PROSE}</p>{body}<p>{_PROSE}</p></body></html>"


def _markdown(body: str) -> str:
    return f"# 정책 발표\n\n{_PROSE}\n\n{body}\n\n{_PROSE}\n"


HOSTILE_CASES: tuple[HostileCase, ...] = (
    HostileCase("md-brackets", ".md", lambda n: _markdown(_repeat("[", n)), "one line of `[`"),
    HostileCase("md-image-openers", ".md", lambda n: _markdown(_repeat("![", n)), "one line of `![`"),
    HostileCase("md-link-openers", ".md", lambda n: _markdown(_repeat("[a](", n)), "`[a](` never closed"),
    HostileCase("md-padded-heading", ".md", lambda n: _markdown("# x" + " " * n + "y"), "a heading padded with spaces"),
    HostileCase("md-stars", ".md", lambda n: _markdown(_repeat("*", n)), "one line of `*`"),
    HostileCase("md-underscores", ".md", lambda n: _markdown(_repeat("_", n)), "one line of `_`"),
    HostileCase("md-emphasis-openers", ".md", lambda n: _markdown(_repeat("**a ", n)), "`**a ` never closed"),
    HostileCase("md-strong-underscores", ".md", lambda n: _markdown(_repeat("__a ", n)), "`__a ` never closed"),
    HostileCase("md-comment-openers", ".md", lambda n: _markdown(_repeat("<!--", n)), "`<!--` never closed"),
    HostileCase("md-autolink-openers", ".md", lambda n: _markdown(_repeat("<http:", n)), "`<http:` never closed"),
    HostileCase("md-tag-openers", ".md", lambda n: _markdown(_repeat("<br", n)), "`<br` never closed"),
    HostileCase("md-less-than", ".md", lambda n: _markdown(_repeat("<", n)), "one line of `<`"),
    HostileCase("md-spaces", ".md", lambda n: _markdown(" " * n + "이 자료는"), "a run of spaces"),
    HostileCase("md-long-line", ".md", lambda n: _markdown(_repeat("word ", n)), "words without a line break"),
    HostileCase("md-nested-quotes", ".md", lambda n: _markdown(_repeat(">", n) + " a"), "`>` nested"),
    HostileCase(
        "md-nested-lists",
        ".md",
        lambda n: _markdown("".join("  " * (i % 400) + "- a\n" for i in range(n // 400))),
        "lists nested hundreds deep",
    ),
    HostileCase(
        "md-table-rows", ".md", lambda n: _markdown("| a | b |\n|---|---|\n" + _repeat("| x |\n", n)), "a long table"
    ),
    HostileCase(
        "txt-bylines", ".txt", lambda n: _PROSE + "\n\n" + _repeat("By A\n\n", n), "bylines between blank lines"
    ),
    HostileCase(
        "html-meta", ".html", lambda n: "<html><head>" + _repeat("<meta", n) + "</head>" + _page(""), "`<meta`"
    ),
    HostileCase("html-less-than", ".html", lambda n: _page(_repeat("<", n)), "`<` everywhere"),
    HostileCase("html-tag-openers", ".html", lambda n: _page(_repeat("<a", n)), "`<a` never closed"),
    HostileCase("html-deep", ".html", lambda n: _page(_repeat("<div>", n)), "`<div>` nested, never closed"),
    HostileCase("html-long-line", ".html", lambda n: _page("<p>" + _repeat("word ", n) + "</p>"), "one long line"),
    # no article text: these reach the fallback that flattens deep pages
    HostileCase(
        "html-bare-tag-openers",
        ".html",
        lambda n: "<html><body>" + _repeat("<a ", n),
        "`<a ` never closed, no text",
        refused_for="no main text",
    ),
    HostileCase(
        "html-bare-comment-openers",
        ".html",
        lambda n: "<html><body>" + _repeat("<!--", n),
        "`<!--` never closed, no text",
        refused_for="no main text",
    ),
    HostileCase(
        "html-bare-deep",
        ".html",
        lambda n: "<html><body>" + _repeat("<div><span>", n),
        "tags nested far past lxml's limit, no text",
        refused_for="no main text",
    ),
    HostileCase(
        "pdf-text-bomb",
        ".pdf",
        lambda n: pdf_file(_text_operators(20 * n), pages=50, compress=True),
        "50 pages drawing one compressed stream of text 20x the size",
        refused_for="RAG_INGEST_MAX_DOCUMENT_CHARS",
    ),
)
_ENGLISH = (
    "The Committee decided to maintain the target range for the federal funds rate. "
    "Recent indicators suggest that economic activity has continued to expand at a solid pace. "
    "Job gains have remained strong, and the unemployment rate has remained low. "
)


def normal_text(size: int) -> str:
    """Real news prose (the sample article's paragraphs, repeated) of about `size` bytes in UTF-8."""
    paragraphs = [line for line in SAMPLE_ARTICLE.read_text(encoding="utf-8").split("\n") if len(line) > 40]
    out: list[str] = []
    total = 0
    while total < size:
        for paragraph in paragraphs:
            out.append(paragraph)
            total += len(paragraph.encode("utf-8")) + 2
            if total >= size:
                break
    return "\n\n".join(out)


def normal_case(suffix: str) -> HostileCase:
    """A normal file of the given type, to time the crafted ones against."""
    if suffix == ".html":
        return HostileCase("html-normal", suffix, lambda n: _page(_paragraphs(n)), "prose")
    if suffix == ".pdf":
        return HostileCase("pdf-normal", suffix, lambda n: pdf_file(_text_operators(n), pages=1), "prose")
    return HostileCase(f"{suffix.lstrip('.')}-normal", suffix, lambda n: _markdown(normal_text(n)), "prose")


def _paragraphs(size: int) -> str:
    return "".join(f"<p>{paragraph}</p>" for paragraph in normal_text(size).split("\n\n"))


def write_case(case: HostileCase, folder: Path, size: int) -> Path:
    path = folder / f"{case.name}{case.suffix}"
    content = case.make(size)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _text_operators(size: int) -> bytes:
    """A page's content stream of about `size` bytes that shows English text, a line at a time."""
    line = b"(" + _ENGLISH.encode("latin-1") + b") '\n"
    return b"BT /F1 11 Tf 72 720 Td 14 TL\n" + line * max(1, size // len(line)) + b"ET\n"


def pdf_file(content: bytes, *, pages: int, compress: bool = False) -> bytes:
    """A PDF whose `pages` pages all draw the one content stream `content` (Helvetica)."""
    stream = zlib.compress(content, 9) if compress else content
    flate = b" /Filter /FlateDecode" if compress else b""
    kids = b" ".join(b"%d 0 R" % (5 + page) for page in range(pages))
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
        b" /Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"
    )
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(stream), flate, stream),
        *[page] * pages,
    ]
    return assemble_pdf(objects)


def assemble_pdf(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """PDF bytes holding `objects` numbered from 1 (1 is the catalog), with their cross-reference table;
    `trailer` adds entries to the trailer dictionary (e.g. b" /Info 6 0 R")."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, trailer, xref)
    return bytes(out)
