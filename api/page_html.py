"""The chat page's HTML: conversation, answers with numbered source cards, refusals, the article view.

Every string that comes from a document or a reader (title, url, source, quote, article text, answer,
question, error text) goes through `html.escape` here and nowhere becomes markup: a stored
`<img onerror=…>` or `![p](http://…)` shows as those characters. Links are made only for http(s) urls,
open in a new tab and send no referrer. Numbers the page itself chose (turn, citation number) are the only
values in attributes that scripts read. Nothing here goes through Markdown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape
from urllib.parse import urlsplit

from api.page_text import text
from rag.types import Answer, Article, Citation

CONTEXT_CHARS = 300  # at most this much of a long paragraph is shown on each side of a quote on its card
ARTICLE_WINDOW_CHARS = 50_000  # the article view shows at most this much on each side of the quote
_MARKER = re.compile(r"\[(\d{1,3})\]")


@dataclass
class Turn:
    """One question and what became of it, as the page shows it."""

    question: str
    answer: Answer | None = None
    partial: str = ""  # text streamed so far, before the checked answer replaces it
    error: str | None = None
    articles: dict[str, Article | None] = field(default_factory=dict)  # the cited articles, by doc_id
    settings: dict[str, object] = field(default_factory=dict)  # what produced the answer (for feedback)
    rating: int | None = None
    feedback_id: int | None = None


def safe_link_target(url: str | None) -> str | None:
    """`url` when it is an absolute http(s) url a browser may follow, else None (javascript:, data:,
    relative paths and the like are shown as text, never as links)."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url.strip()):
        return None
    return url.strip()


def render_conversation(turns: list[Turn], language: str) -> str:
    if not turns:
        return f'<div class="empty-conversation">{escape(text(language, "nothing_yet"))}</div>'
    return "".join(render_turn(index, turn, language) for index, turn in enumerate(turns))


def render_turn(index: int, turn: Turn, language: str) -> str:
    question = (
        f'<div class="question"><span class="who">{escape(text(language, "you"))}</span>'
        f"<p>{escape(turn.question)}</p></div>"
    )
    return f'<section class="turn" id="turn-{index}">{question}{_render_reply(index, turn, language)}</section>'


def _render_reply(index: int, turn: Turn, language: str) -> str:
    if turn.error is not None:
        message = escape(text(language, "error", message=turn.error))
        return f'<div class="reply error" role="alert">{message}</div>'
    answer = turn.answer
    if answer is None:
        writing = escape(text(language, "writing"))
        partial = f'<p class="answer-text">{escape(turn.partial)}</p>' if turn.partial else ""
        return f'<div class="reply pending" aria-busy="true"><p class="writing">{writing}</p>{partial}</div>'
    if answer.refused:
        body = (
            f'<p class="refusal-title">{escape(text(language, "refusal_title"))}</p>'
            f"<p>{escape(text(language, 'refusal'))}</p>"
        )
        return f'<div class="reply refusal" role="status">{body}{_render_rating(index, turn, language)}</div>'
    cards = "".join(
        render_card(index, citation, turn.articles.get(citation.doc_id), language) for citation in answer.citations
    )
    heading = f'<p class="sources-heading">{escape(text(language, "sources"))}</p>' if cards else ""
    return (
        f'<div class="reply answer"><p class="answer-text">{render_answer_text(index, answer)}</p>'
        f'{heading}<ol class="sources">{cards}</ol>{_render_rating(index, turn, language)}</div>'
    )


def render_answer_text(index: int, answer: Answer) -> str:
    """The answer escaped, each `[n]` that names one of its citations turned into a link to that card."""
    numbers = {citation.n for citation in answer.citations}

    def link(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if n not in numbers:
            return match.group(0)
        return f'<a class="cite" href="#cite-{index}-{n}">[{n}]</a>'

    return _MARKER.sub(link, escape(answer.answer))


def render_card(index: int, citation: Citation, article: Article | None, language: str) -> str:
    """One numbered source: title, date, source, link (http/https only), and the quote marked inside its
    paragraph of the stored article."""
    title = citation.title or (article.title if article else None) or citation.doc_id
    source = article.source if article and article.source else None
    meta = [
        f'<span class="date">{escape(citation.date or text(language, "no_date"))}</span>',
        f'<span class="source">{escape(source or text(language, "no_source"))}</span>',
    ]
    if citation.url:
        meta.append(_render_url(citation.url))
    button = (
        f'<button type="button" class="show-article" data-action="article" data-turn="{index}" '
        f'data-n="{citation.n}">{escape(text(language, "show_article"))}</button>'
    )
    return (
        f'<li class="card" id="cite-{index}-{citation.n}"><div class="card-head">'
        f'<span class="num">[{citation.n}]</span> <span class="title">{escape(title)}</span></div>'
        f'<div class="meta">{" · ".join(meta)}</div>'
        f'<blockquote class="context">{render_quote_in_paragraph(citation, article)}</blockquote>{button}</li>'
    )


def _render_url(url: str) -> str:
    target = safe_link_target(url)
    if target is None:
        return f'<span class="url">{escape(url)}</span>'
    return (
        f'<a class="url" href="{escape(target, quote=True)}" target="_blank" '
        f'rel="noopener noreferrer nofollow">{escape(target)}</a>'
    )


def render_quote_in_paragraph(citation: Citation, article: Article | None) -> str:
    """The paragraph of the stored article around the quote, the quote itself marked. Without the article,
    or when its text no longer holds the quote at those offsets (re-ingested since), the quote alone."""
    if article is None or article.text[citation.start : citation.end] != citation.quote:
        return f'<mark class="quote">{escape(citation.quote)}</mark>'
    start, end = paragraph_bounds(article.text, citation.start, citation.end)
    before = article.text[start : citation.start]
    after = article.text[citation.end : end]
    if len(before) > CONTEXT_CHARS:
        before = "…" + before[-CONTEXT_CHARS:]
    if len(after) > CONTEXT_CHARS:
        after = after[:CONTEXT_CHARS] + "…"
    return f'{escape(before)}<mark class="quote">{escape(citation.quote)}</mark>{escape(after)}'


def paragraph_bounds(article_text: str, start: int, end: int) -> tuple[int, int]:
    """[start, end) of the paragraph holding text[start:end]: from the line break before the quote to the
    line break after it (a quote that spans lines keeps them all)."""
    before = article_text.rfind("\n", 0, start)
    after = article_text.find("\n", end)
    return before + 1, len(article_text) if after < 0 else after


def render_article(citation: Citation, article: Article | None, language: str) -> str:
    """The article view: its heading and the stored text with the quote marked (`mark#article-quote`, which
    the page scrolls into view); the article's line breaks are kept by CSS, not turned into markup."""
    title = (article.title if article else None) or citation.title or citation.doc_id
    source = article.source if article and article.source else text(language, "no_source")
    meta = [escape(citation.date or text(language, "no_date")), escape(source)]
    if citation.url:
        meta.append(_render_url(citation.url))
    heading = (
        f'<header><h3 class="article-title">{escape(title)}</h3><div class="meta">{" · ".join(meta)}</div></header>'
    )
    if article is None or article.text[citation.start : citation.end] != citation.quote:
        note = f'<p class="note">{escape(text(language, "article_missing"))}</p>'
        body = f'<mark id="article-quote" class="quote">{escape(citation.quote)}</mark>'
        return f'<article class="article-view">{heading}{note}<div class="article-text">{body}</div></article>'
    full = article.text
    start = max(0, citation.start - ARTICLE_WINDOW_CHARS)
    end = min(len(full), citation.end + ARTICLE_WINDOW_CHARS)
    note = ""
    if start > 0 or end < len(full):
        note = f'<p class="note">{escape(text(language, "article_clipped"))}</p>'
    body = (
        f"{'…' if start > 0 else ''}{escape(full[start : citation.start])}"
        f'<mark id="article-quote" class="quote">{escape(citation.quote)}</mark>'
        f"{escape(full[citation.end : end])}{'…' if end < len(full) else ''}"
    )
    return f'<article class="article-view">{heading}{note}<div class="article-text">{body}</div></article>'


# a thumb drawn inline (the page loads no icon font or image); thumbs down is the same thumb turned over
_THUMB = (
    '<svg class="thumb" viewBox="0 0 24 24" width="16" height="16" aria-hidden="true"><path fill="currentColor" '
    'd="M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L14.17 1 7.59 7.59C7.22 '
    '7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.21l3.02-7.05c.09-.23.14-.47.14-.73v-2z"/></svg>'
)


def _render_rating(index: int, turn: Turn, language: str) -> str:
    buttons = []
    for rating, key in ((1, "rate_up"), (-1, "rate_down")):
        pressed = "true" if turn.rating == rating else "false"
        direction = "up" if rating == 1 else "down"
        buttons.append(
            f'<button type="button" class="rate {direction}" data-action="rate" data-turn="{index}" '
            f'data-rating="{rating}" aria-pressed="{pressed}">{_THUMB}<span>{escape(text(language, key))}</span>'
            "</button>"
        )
    note = f'<span class="rated">{escape(text(language, "rated"))}</span>' if turn.rating is not None else ""
    return f'<div class="rating">{"".join(buttons)}{note}</div>'


def render_notice(message: str, kind: str = "info") -> str:
    """A one-line message under the question box (`kind` is the page's own word: info or error)."""
    role = "alert" if kind == "error" else "status"
    return f'<p class="notice {kind}" role="{role}">{escape(message)}</p>'


def render_header(language: str) -> str:
    return f"<h1>{escape(text(language, 'title'))}</h1><p>{escape(text(language, 'intro'))}</p>"


def render_article_placeholder(language: str) -> str:
    return f'<p class="article-empty">{escape(text(language, "article_empty"))}</p>'
