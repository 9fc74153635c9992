"""Sentence-aware chunking with budgets in the embedding model's own tokens.

docs/architecture.md, trap 1: llama-index's default splitter counts tiktoken tokens, so a fifth of chunks on long
documents overflowed e5's 512-token window and their tails were never embedded. Here every chunk is
packed from whole sentences (kiwipiepy boundaries, which handle Korean and English) until the model's
own token count of `prefix + title + text` would pass the budget, and every chunk and sentence keeps its
character offsets into the article text, which citations rely on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from rag.text.analyzer import get_kiwi
from rag.text.hangul import contains_syllable
from rag.types import Article, Chunk, Span

CHUNKER_VERSION = "kiwi-sent-pack-2"

TokenCounter = Callable[[str], int]

_LINE = re.compile(r"[^\n]+")
MAX_KIWI_CHARS = 5_000  # longer lines reach kiwi in windows (see split_sentences)
MAX_UNBROKEN_KIWI_CHARS = 1_000  # the window for a run without a space (kiwi's cost grows with its square)
# kiwi leaves English runs unsplit; break after . ! ? before a capital, digit or opening quote
_LATIN_BOUNDARY = re.compile(r"(?<=[.!?])([\"'”’)]?)\s+(?=[A-Z0-9\"“‘(\[])")
_ABBREVIATION = re.compile(r"(?:\b[A-Z]|\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Inc|Co|Corp|Ltd|No|vs|etc|U\.S|e\.g|i\.e))\.$")
_OPENING_BRACKETS, _CLOSING_BRACKETS = "([（［", ")]）］"
_BRACKET = re.compile(f"[{re.escape(_OPENING_BRACKETS + _CLOSING_BRACKETS)}]")
# a bracket left open is closed within this many characters in real text; past it, the "(" was a stray
MAX_BRACKETED_SENTENCE_CHARS = 400
MAX_BRACKETED_SENTENCES = 8  # ... and within this many of kiwi's sentences (a caption or aside splits into a few)
_CHARS_PER_TOKEN_GUESS = 8  # generous for Korean and English (≈1.5 and ≈4); the search widens if not


@dataclass(frozen=True)
class ChunkingPlan:
    max_tokens: int
    overlap_sentences: int


def chunk_header(article: Article) -> str:
    """What is embedded in front of every chunk: the title makes a chunk findable by its headline."""
    return f"{article.title}\n" if article.title else ""


def split_sentences(text: str) -> list[Span]:
    """Sentence spans of `text`: kiwi's sentence boundaries within each line (headlines, captions and list
    items often lack final punctuation, so a line break always ends a sentence), whitespace trimmed, empty
    spans dropped. Kiwi gets one line at a time, and a very long line in windows: its cost grows with the
    square of an unbroken run (200,000 characters without a space took 24 s)."""
    kiwi = get_kiwi()
    spans: list[Span] = []
    for line in _LINE.finditer(text):
        for start, end in _windows(text, line.start(), line.end()):
            for sentence in kiwi.split_into_sents(text[start:end]):
                spans.extend(_split_latin_sentences(text, start + sentence.start, start + sentence.end))
    return _join_open_brackets(text, _cover_gaps(text, spans))


def _windows(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) cut into pieces of at most MAX_KIWI_CHARS, each cut after a space where there is one; a run
    without one is cut every MAX_UNBROKEN_KIWI_CHARS (kiwi took 0.1-0.5 s for 5,000 characters without a space)."""
    pieces = []
    while end - start > MAX_KIWI_CHARS:
        cut = text.rfind(" ", start + MAX_KIWI_CHARS // 2, start + MAX_KIWI_CHARS)
        cut = cut + 1 if cut != -1 else start + MAX_UNBROKEN_KIWI_CHARS
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def _split_latin_sentences(text: str, start: int, end: int) -> list[Span]:
    spans: list[Span] = []
    cursor = start
    for boundary in _LATIN_BOUNDARY.finditer(text, start, end):
        split_at = boundary.start() + len(boundary.group(1))
        before = text[cursor : boundary.start()]
        # where the text is Korean, kiwi has already placed the boundaries: a "." before a digit there is a
        # dotted date ("2026. 7. 1.") or a list number, not a sentence end
        if _ABBREVIATION.search(before) or contains_syllable(before):
            continue
        span = _trimmed(text, cursor, split_at)
        if span is not None:
            spans.append(span)
        cursor = split_at
    span = _trimmed(text, cursor, end)
    if span is not None:
        spans.append(span)
    return spans


def _trimmed(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Span(start=start, end=end) if end > start else None


def _cover_gaps(text: str, spans: list[Span]) -> list[Span]:
    """Kiwi occasionally skips characters between sentences; keep any non-blank gap as its own span so
    no text is lost from the index."""
    covered: list[Span] = []
    cursor = 0
    for span in sorted(spans, key=lambda s: s.start):
        if span.start < cursor:
            continue
        gap = _trimmed(text, cursor, span.start)
        if gap is not None:
            covered.append(gap)
        covered.append(span)
        cursor = span.end
    tail = _trimmed(text, cursor, len(text))
    if tail is not None:
        covered.append(tail)
    return covered


def _join_open_brackets(text: str, spans: list[Span]) -> list[Span]:
    """Re-join sentences split inside brackets on one line: "(사진. 벤처기업협회)" and "(Federal Reserve.
    Board)" are one caption or aside, and a citation of half of it reads as garbage. Joined only when the
    bracket closes within `MAX_BRACKETED_SENTENCE_CHARS` on the same line; a stray "(" changes nothing."""
    joined: list[Span] = []
    i = 0
    while i < len(spans):
        last = _closing_span(text, spans, i)
        joined.append(Span(start=spans[i].start, end=spans[last].end))
        i = last + 1
    return joined


def _closing_span(text: str, spans: list[Span], first: int) -> int:
    """Index of the span that closes the brackets left open in spans[first] (`first` when none are open).
    The depth is carried from span to span, so each character is read once per `first`, not once per span
    (a line of `![![![` is thousands of tiny spans)."""
    start = scanned = spans[first].start
    depth = 0
    for last in range(first, min(len(spans), first + MAX_BRACKETED_SENTENCES)):
        end = spans[last].end
        if end - start > MAX_BRACKETED_SENTENCE_CHARS or "\n" in text[scanned:end]:
            break
        depth = _bracket_depth(text[scanned:end], depth)
        scanned = end
        if depth == 0:
            return last
    return first


def _bracket_depth(part: str, depth: int = 0) -> int:
    """Brackets left open after `part`, given `depth` open before it (a stray closing bracket is ignored)."""
    for bracket in _BRACKET.findall(part):
        if bracket in _OPENING_BRACKETS:
            depth += 1
        elif depth > 0:
            depth -= 1
    return depth


def chunk_article(article: Article, count_tokens: TokenCounter, plan: ChunkingPlan) -> list[Chunk]:
    """Pack sentences into chunks that fit `plan.max_tokens` (header included), with sentence overlap."""
    header = chunk_header(article)
    budget = plan.max_tokens - count_tokens(header) if header else plan.max_tokens
    budget = max(budget, plan.max_tokens // 4)  # an absurdly long title must not leave no room for text
    sentences = _fit_sentences(article.text, split_sentences(article.text), count_tokens, budget)
    groups = _pack(article.text, sentences, count_tokens, budget, plan.overlap_sentences)
    return [_make_chunk(article, index, group) for index, group in enumerate(groups)]


def _fit_sentences(text: str, spans: list[Span], count_tokens: TokenCounter, budget: int) -> list[Span]:
    """Cut any single sentence longer than the budget into pieces that fit (tables, run-on lists)."""
    fitted: list[Span] = []
    for span in spans:
        if count_tokens(text[span.start : span.end]) <= budget:
            fitted.append(span)
        else:
            fitted.extend(_split_long_span(text, span, count_tokens, budget))
    return fitted


def _split_long_span(text: str, span: Span, count_tokens: TokenCounter, budget: int) -> list[Span]:
    pieces: list[Span] = []
    start = span.start
    while start < span.end:
        end = _longest_fitting_end(text, start, span.end, count_tokens, budget)
        piece = _trimmed(text, start, end)
        if piece is not None:
            pieces.append(piece)
        start = end
    return pieces


def _longest_fitting_end(text: str, start: int, limit: int, count_tokens: TokenCounter, budget: int) -> int:
    """Binary search for the furthest end (preferring a space) whose slice still fits the budget.

    The search window starts at a few characters per token and doubles only while the whole window fits:
    searching up to `limit` every time re-counted the entire rest of a megabyte-long run of text (base64,
    a table flattened to one line) at every step, and such a file took hours to chunk."""
    window = budget * _CHARS_PER_TOKEN_GUESS
    while True:
        upper = min(limit, start + window)
        low, high = start + 1, upper
        while low < high:
            middle = (low + high + 1) // 2
            if count_tokens(text[start:middle]) <= budget:
                low = middle
            else:
                high = middle - 1
        if low < upper or upper == limit:
            break
        window *= 2  # all of it fitted: the text has more characters per token than guessed
    space = text.rfind(" ", start + 1, low)
    return space if low < limit and space > start + (low - start) // 2 else low


def _pack(text: str, sentences: list[Span], count_tokens: TokenCounter, budget: int, overlap: int) -> list[list[Span]]:
    groups: list[list[Span]] = []
    current: list[Span] = []
    for sentence in sentences:
        candidate = [*current, sentence]
        if current and count_tokens(text[candidate[0].start : sentence.end]) > budget:
            groups.append(current)
            carried = current[-overlap:] if overlap else []
            current = [*carried, sentence]
            while len(current) > 1 and count_tokens(text[current[0].start : sentence.end]) > budget:
                current = current[1:]
        else:
            current = candidate
    if current:
        groups.append(current)
    return groups


def _make_chunk(article: Article, index: int, sentences: list[Span]) -> Chunk:
    start, end = sentences[0].start, sentences[-1].end
    return Chunk(
        article_id=article.id,
        index=index,
        text=article.text[start:end],
        start=start,
        end=end,
        sentences=sentences,
        title=article.title,
        date=article.date,
        url=article.url,
        source=article.source,
    )


def embedding_text(chunk: Chunk) -> str:
    """The text embedded and keyword-indexed for a chunk: its title line, then the chunk."""
    return f"{chunk.title}\n{chunk.text}" if chunk.title else chunk.text
