"""The chat page at `/` (Gradio Blocks) over the one RagService: ask, watch the answer stream in, read its
numbered sources, open an article at the quoted sentence, filter by date, source and passages, rate answers,
and add articles.

The conversation and the article view are HTML that api/page_html.py builds with every document-derived
string escaped (Gradio puts a `gr.HTML` value into the page as it is, unsanitised); Gradio's own components
carry only the page's words and the reader's input. The page's Content-Security-Policy (api/page_headers.py)
is the second line: images, fonts and connections only from the app itself.

This is the only module that imports gradio, and only when a page is built: importing the app (for the API
alone, or in tests) stays free of gradio's seconds-long import. Gradio reads the handlers' annotations at run
time to hand them the request or a click's data, so this module keeps its annotations evaluated (no
`from __future__ import annotations`).
"""

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from pydantic import ValidationError

from api.page_headers import PagePolicy
from api.page_html import (
    Turn,
    render_article,
    render_article_placeholder,
    render_conversation,
    render_header,
    render_notice,
)
from api.page_text import DEFAULT_LANGUAGE, pick_language, text
from api.uploads import IngestUploads, Upload, ingest_uploads
from ingest.loaders.base import SUPPORTED_SUFFIXES
from ingest.pipeline import IngestReport
from rag.errors import InputError, RagError
from rag.feedback import Feedback, FeedbackStore, Rating, utc_now
from rag.service import RagService
from rag.types import Answer, Article, ChatTurn, SearchFilters

if TYPE_CHECKING:
    import gradio as gr

logger = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000  # as POST /v1/answer
MAX_PASSAGES = 20
MAX_HISTORY_TURNS = 25  # question + answer each; the service reads the last few

# Clicks on the buttons inside the conversation become the custom events `show_article` and `rate`; the
# numbers they carry are ones the page wrote into data attributes, never document text.
CONVERSATION_JS = """
element.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-action]');
  if (!button || !element.contains(button)) return;
  const turn = Number(button.dataset.turn);
  if (button.dataset.action === 'article') trigger('show_article', {turn: turn, n: Number(button.dataset.n)});
  if (button.dataset.action === 'rate') trigger('rate', {turn: turn, rating: Number(button.dataset.rating)});
});
"""
ARTICLE_VIEW_JS = """
watch('value', () => {
  const quote = element.querySelector('mark#article-quote');
  if (quote) quote.scrollIntoView({block: 'center'});
});
"""

PAGE_CSS = """
#conversation .turn { margin: 0 0 1.25rem; }
#conversation .question { background: var(--background-fill-secondary); border-radius: 8px; padding: .5rem .75rem; }
#conversation .question p { margin: .1rem 0 0; white-space: pre-wrap; }
#conversation .who { font-size: .8rem; color: var(--body-text-color-subdued); }
#conversation .reply { margin-top: .5rem; padding: .5rem .75rem; border-left: 3px solid var(--color-accent); }
#conversation .reply.refusal { border-left-color: #b45309; background: rgba(245, 158, 11, .12); }
#conversation .refusal-title { font-weight: 600; margin: 0 0 .25rem; }
#conversation .reply.error { border-left-color: #b91c1c; background: rgba(220, 38, 38, .1); }
#conversation .writing { color: var(--body-text-color-subdued); font-style: italic; margin: 0; }
#conversation .answer-text { white-space: pre-wrap; margin: 0 0 .5rem; }
#conversation .sources-heading { font-weight: 600; margin: .5rem 0 0; }
#conversation ol.sources { list-style: none; padding: 0; margin: 0; }
#conversation .card { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .6rem .75rem;
  margin: .5rem 0; }
#conversation .card .title { font-weight: 600; }
#conversation .meta, #article-view .meta { font-size: .85rem; color: var(--body-text-color-subdued);
  overflow-wrap: anywhere; }
#conversation blockquote.context { margin: .4rem 0; padding-left: .6rem;
  border-left: 2px solid var(--border-color-primary); white-space: pre-wrap; }
#conversation button.show-article, #conversation .rating button { border: 1px solid var(--border-color-primary);
  border-radius: 6px; padding: .15rem .6rem; background: var(--background-fill-primary); cursor: pointer;
  font-size: .85rem; font-weight: 400; }
#conversation .rating { margin-top: .4rem; display: flex; gap: .4rem; align-items: center; }
#conversation .rating button { display: inline-flex; gap: .3rem; align-items: center; }
#conversation .rating button.down .thumb { transform: rotate(180deg); }
#conversation .rating button[aria-pressed="true"] { outline: 2px solid var(--color-accent);
  color: var(--color-accent); }
#conversation .rated { font-size: .85rem; color: var(--body-text-color-subdued); }
mark.quote { background: #fde68a; color: #111827; border-radius: 2px; }
#article-view .article-text { white-space: pre-wrap; line-height: 1.65; }
#article-view .note { font-size: .85rem; color: var(--body-text-color-subdued); }
.notice.error { color: #b91c1c; }
"""

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class ChatPage:
    """The page's handlers; Gradio calls them with the components' values and the session's state.

    `update` is Gradio's `gr.update`, handed in so that this class needs no gradio import of its own.
    """

    def __init__(
        self,
        service: RagService,
        feedback: FeedbackStore,
        update: Callable[..., Any],
        *,
        ingest: IngestUploads | None = None,
    ) -> None:
        """`ingest` runs an upload; the app hands in the one it gives POST /v1/ingest (one line for both edges).
        Without it, uploads run on a thread of their own."""
        self.service = service
        self.feedback = feedback
        self.update = update
        self.ingest = ingest or self._ingest_on_a_thread

    # ---- asking ----------------------------------------------------------------------------------

    def ask(
        self,
        question: str | None,
        turns: list[Turn] | None,
        language: str,
        date_from: str | None,
        date_to: str | None,
        source: str | None,
        passages: float | None,
    ) -> Iterator[tuple[Any, ...]]:
        """Yields (conversation, turns, question box, notice): the question at once, streamed text as the LLM
        writes it, then the checked answer with its source cards."""
        turns = list(turns or [])
        try:
            filters = self.filters(date_from, date_to, source, language)
            question = checked_question(question, language)
        except InputError as exc:
            yield render_conversation(turns, language), turns, self.update(), render_notice(exc.message, "error")
            return
        top_k = _passages(passages, self.service.settings.retrieval.top_k)
        history = _history(turns)
        turn = Turn(question=question, settings=self.answer_settings(top_k, filters))
        turns.append(turn)
        yield render_conversation(turns, language), turns, "", ""
        try:
            for event in self.service.answer_stream(question, top_k=top_k, filters=filters, history=history):
                if isinstance(event, Answer):
                    turn.articles = self.cited_articles(event)
                    turn.answer = event
                else:
                    turn.partial += event
                yield render_conversation(turns, language), turns, self.update(), self.update()
        except RagError as exc:
            turn.error = exc.message
        except Exception:
            logger.exception("chat page: answering failed")
            turn.error = text(language, "unexpected")
        if turn.error is not None:
            yield render_conversation(turns, language), turns, self.update(), self.update()

    def filters(self, date_from: str | None, date_to: str | None, source: str | None, language: str) -> SearchFilters:
        start = parse_day(date_from, text(language, "date_from"), language)
        end = parse_day(date_to, text(language, "date_to"), language)
        if start and end and start > end:
            raise InputError(text(language, "date_order"))
        try:
            return SearchFilters(source=source or None, date_from=start, date_to=end)
        except ValidationError as exc:
            raise InputError(text(language, "error", message=exc.errors()[0]["msg"])) from exc

    def answer_settings(self, top_k: int, filters: SearchFilters) -> dict[str, object]:
        """What produced an answer, kept with a reader's verdict on it."""
        settings = self.service.settings
        llm_model = {"local": settings.models.llm_file, "openai": settings.openai.model}.get(settings.llm.backend)
        return {
            "collection": settings.collection,
            "embedding_model": settings.models.embedding,
            "llm_backend": settings.llm.backend,
            "llm_model": llm_model,
            "top_k": top_k,
            "filters": filters.model_dump(mode="json", exclude_none=True),
        }

    def cited_articles(self, answer: Answer) -> dict[str, Article | None]:
        """The stored articles the citations point into (for the paragraph around each quote)."""
        articles: dict[str, Article | None] = {}
        for citation in answer.citations:
            if citation.doc_id not in articles:
                articles[citation.doc_id] = self.service.article(citation.doc_id)
        return articles

    # ---- reading and rating ----------------------------------------------------------------------

    def show_article(self, turns: list[Turn] | None, language: str, clicked: Mapping[str, Any]) -> Any:
        """The article view for the source card whose button was clicked (`clicked`: the numbers the page's
        script sent)."""
        turn = _turn_at(turns, _event_number(clicked, "turn"))
        answer = turn.answer if turn else None
        n = _event_number(clicked, "n")
        citation = next((c for c in answer.citations if c.n == n), None) if answer else None
        if turn is None or citation is None:
            return self.update()
        return render_article(citation, turn.articles.get(citation.doc_id), language)

    def rate(self, turns: list[Turn] | None, language: str, clicked: Mapping[str, Any]) -> tuple[Any, ...]:
        """A thumb is stored at once (a reader may never add a comment); the other thumb later revises it.
        Returns (conversation, turns, comment row, comment box, the turn a comment is for, notice)."""
        turns = list(turns or [])
        index = _event_number(clicked, "turn")
        rating = _event_number(clicked, "rating")
        turn = _turn_at(turns, index)
        unchanged = (self.update(), turns, self.update(), self.update(), self.update())
        if turn is None or turn.answer is None or rating not in (1, -1) or index is None:
            return (*unchanged, self.update())
        verdict: Rating = 1 if rating == 1 else -1
        try:
            if turn.feedback_id is None:
                turn.feedback_id = self.feedback.add(
                    Feedback(
                        created_at=utc_now(),
                        question=turn.question,
                        answer=turn.answer.answer,
                        citations=turn.answer.citations,
                        settings=turn.settings,
                        rating=verdict,
                        refused=turn.answer.refused,
                    )
                )
            else:
                self.feedback.revise(turn.feedback_id, rating=verdict)
        except RagError as exc:
            return (*unchanged, render_notice(exc.message, "error"))
        turn.rating = verdict
        comment_box = self.update(label=text(language, "comment_for", n=index + 1), value="")
        return render_conversation(turns, language), turns, self.update(visible=True), comment_box, index, ""

    def save_comment(
        self, comment: str | None, turns: list[Turn] | None, target: int | None, language: str
    ) -> tuple[Any, ...]:
        turn = _turn_at(turns, target)
        if turn is None or turn.feedback_id is None or not (comment or "").strip():
            return self.update(), self.update(), self.update()
        try:
            self.feedback.revise(turn.feedback_id, comment=comment or "")
        except RagError as exc:
            return render_notice(exc.message, "error"), self.update(), self.update()
        return render_notice(text(language, "comment_saved")), self.update(visible=False), ""

    # ---- uploading -------------------------------------------------------------------------------

    async def upload(self, paths: Sequence[str] | None, language: str) -> tuple[Any, ...]:
        """The chosen files through the same pipeline, names, limits and queue as POST /v1/ingest."""
        if not paths:
            return render_notice(text(language, "no_files"), "error"), self.update(), self.update()
        try:
            with ExitStack() as files:
                uploads = [(Path(path).name, files.enter_context(Path(path).open("rb"))) for path in paths]
                report = await self.ingest(uploads)
        except RagError as exc:
            return render_notice(exc.message, "error"), self.update(), self.update()
        summary = report.to_json()
        lines = [
            text(
                language,
                "uploaded",
                added=summary["added"],
                updated=summary["updated"],
                unchanged=summary["unchanged"],
                failed=len(summary["failed"]),
            )
        ]
        lines += [
            text(language, "upload_failed", path=Path(f["path"]).name, reason=f["reason"]) for f in summary["failed"]
        ]
        kind = "error" if summary["failed"] else "info"
        notices = "".join(render_notice(line, kind if i else "info") for i, line in enumerate(lines))
        return notices, self.source_choices(language), None

    async def _ingest_on_a_thread(self, uploads: Sequence[Upload]) -> IngestReport:
        return await asyncio.to_thread(ingest_uploads, self.service, uploads)

    # ---- page load -------------------------------------------------------------------------------

    def source_choices(self, language: str) -> Any:
        try:
            sources = self.service.sources()
        except RagError as exc:
            logger.warning("chat page: sources not listed: %s", exc.message)
            sources = []
        choices = [(text(language, "all_sources"), "")] + [(source, source) for source in sources]
        return self.update(choices=choices, label=text(language, "source"))


def build_chat_page(
    service: RagService, *, feedback: FeedbackStore | None = None, ingest: IngestUploads | None = None
) -> "gr.Blocks":
    """The page's layout and wiring. `ingest`: how uploads are run (see ChatPage)."""
    import gradio as gr  # here, not at module level: see the module's docstring

    page = ChatPage(service, feedback or FeedbackStore(service.settings.feedback.path), gr.update, ingest=ingest)
    language = DEFAULT_LANGUAGE
    top_k = min(MAX_PASSAGES, service.settings.retrieval.top_k)
    with gr.Blocks(title=text(language, "title"), analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        language_state = gr.State(language)
        turns = gr.State([])
        comment_target = gr.State(None)
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                header = gr.HTML(render_header(language), elem_id="page-header")
                conversation = gr.HTML(
                    render_conversation([], language), elem_id="conversation", js_on_load=CONVERSATION_JS
                )
                with gr.Row():
                    question = gr.Textbox(
                        label=text(language, "question"),
                        placeholder=text(language, "question_placeholder"),
                        max_lines=6,
                        scale=5,
                        elem_id="question",
                    )
                    ask = gr.Button(text(language, "ask"), variant="primary", scale=1, elem_id="ask")
                notice = gr.HTML("", elem_id="notice")
                with gr.Row(visible=False) as comment_row:
                    comment = gr.Textbox(label=text(language, "comment_for", n=1), scale=5, elem_id="comment")
                    send_comment = gr.Button(text(language, "send_comment"), scale=1, elem_id="send-comment")
                new_chat = gr.Button(text(language, "new_chat"), size="sm", elem_id="new-chat")
            with gr.Column(scale=2):
                with gr.Accordion(text(language, "filters"), open=True) as filters_box:
                    date_from = gr.Textbox(
                        label=text(language, "date_from"), placeholder="YYYY-MM-DD", elem_id="date-from"
                    )
                    date_to = gr.Textbox(label=text(language, "date_to"), placeholder="YYYY-MM-DD", elem_id="date-to")
                    source = gr.Dropdown(
                        choices=[(text(language, "all_sources"), "")],
                        value="",
                        label=text(language, "source"),
                        elem_id="source",
                    )
                    passages = gr.Slider(
                        1, MAX_PASSAGES, value=top_k, step=1, label=text(language, "passages"), elem_id="passages"
                    )
                with gr.Accordion(text(language, "article"), open=True) as article_box:
                    article_view = gr.HTML(
                        render_article_placeholder(language),
                        elem_id="article-view",
                        max_height=640,
                        js_on_load=ARTICLE_VIEW_JS,
                    )
                # who may add articles is decided before the page is served: with a key, only the signed-in
                # see it at all (api/access.py)
                with gr.Accordion(text(language, "upload"), open=False) as upload_box:
                    files = gr.File(
                        file_count="multiple",
                        file_types=sorted(SUPPORTED_SUFFIXES),
                        label=text(language, "upload_files"),
                        elem_id="upload-files",
                    )
                    upload = gr.Button(text(language, "upload_button"), elem_id="upload")
                    upload_result = gr.HTML("", elem_id="upload-result")

        def load(request: gr.Request) -> tuple[Any, ...]:
            chosen = pick_language(request.headers.get("accept-language"))
            return (
                chosen,
                render_header(chosen),
                render_conversation([], chosen),
                gr.update(label=text(chosen, "question"), placeholder=text(chosen, "question_placeholder")),
                gr.update(value=text(chosen, "ask")),
                gr.update(value=text(chosen, "send_comment")),
                gr.update(value=text(chosen, "new_chat")),
                gr.update(label=text(chosen, "filters")),
                gr.update(label=text(chosen, "date_from")),
                gr.update(label=text(chosen, "date_to")),
                page.source_choices(chosen),
                gr.update(label=text(chosen, "passages")),
                gr.update(label=text(chosen, "article")),
                render_article_placeholder(chosen),
                gr.update(label=text(chosen, "upload")),
                gr.update(label=text(chosen, "upload_files")),
                gr.update(value=text(chosen, "upload_button")),
            )

        label_outputs = [
            language_state,
            header,
            conversation,
            question,
            ask,
            send_comment,
            new_chat,
            filters_box,
            date_from,
            date_to,
            source,
            passages,
            article_box,
            article_view,
            upload_box,
            files,
            upload,
        ]
        demo.load(load, None, label_outputs, api_visibility="private")

        ask_inputs = [question, turns, language_state, date_from, date_to, source, passages]
        ask_outputs = [conversation, turns, question, notice]
        for trigger in (ask.click, question.submit):
            trigger(page.ask, ask_inputs, ask_outputs, api_visibility="private")

        def show_article(shown: list[Turn] | None, chosen: str, event: gr.EventData) -> Any:
            return page.show_article(shown, chosen, event._data)

        def rate(shown: list[Turn] | None, chosen: str, event: gr.EventData) -> tuple[Any, ...]:
            return page.rate(shown, chosen, event._data)

        conversation.show_article(show_article, [turns, language_state], [article_view], api_visibility="private")
        conversation.rate(
            rate,
            [turns, language_state],
            [conversation, turns, comment_row, comment, comment_target, notice],
            api_visibility="private",
        )
        for trigger in (send_comment.click, comment.submit):
            trigger(
                page.save_comment,
                [comment, turns, comment_target, language_state],
                [notice, comment_row, comment],
                api_visibility="private",
            )

        def start_over(chosen: str) -> tuple[Any, ...]:
            return [], render_conversation([], chosen), render_article_placeholder(chosen), gr.update(visible=False), ""

        new_chat.click(
            start_over,
            [language_state],
            [turns, conversation, article_view, comment_row, notice],
            api_visibility="private",
        )
        upload.click(page.upload, [files, language_state], [upload_result, source, files], api_visibility="private")
    return demo


def mount_chat_page(app: FastAPI, service: RagService, *, ingest: IngestUploads | None = None) -> FastAPI:
    """Serve the chat page at `/` of `app` (the API's routes keep their paths), its HTML under the page's
    Content-Security-Policy."""
    import gradio as gr  # here, not at module level: see the module's docstring

    demo = build_chat_page(service, ingest=ingest)
    # the page's answers wait in Gradio's own queue, bounded and as wide as the API's (api/admission.py)
    limits = service.settings.api
    demo.queue(default_concurrency_limit=limits.max_inflight, max_size=limits.queue_depth)
    app.add_middleware(PagePolicy)
    upload_limit = int(service.settings.api.max_upload_mb * (1 << 20))
    return gr.mount_gradio_app(
        app,
        demo,
        path="/",
        footer_links=[],
        css=PAGE_CSS,
        max_file_size=upload_limit,
        show_error=False,
    )


# ---- checks and small pieces ---------------------------------------------------------------------------


def checked_question(question: str | None, language: str) -> str:
    """The question stripped, or an InputError in the reader's language (same rules as POST /v1/answer)."""
    question = (question or "").strip()
    if not question:
        raise InputError(text(language, "empty_question"))
    if len(question) > MAX_QUESTION_CHARS:
        raise InputError(text(language, "too_long", limit=MAX_QUESTION_CHARS))
    if not any(ch.isalnum() for ch in question):
        raise InputError(text(language, "no_words"))
    return question


def parse_day(value: str | None, field: str, language: str) -> dt.date | None:
    """A YYYY-MM-DD date field: None when blank, else the date or an InputError saying how to write it."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        if not _DAY.fullmatch(value):
            raise ValueError(value)
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InputError(text(language, "bad_date", field=field, value=value[:40])) from None


def _passages(value: object, default: int) -> int:
    """The passages slider's value as a whole number in range (the default for anything else)."""
    try:
        number = default if value in (None, "") else int(float(str(value)))
    except (ValueError, OverflowError):
        number = default
    return max(1, min(MAX_PASSAGES, number))


def _history(turns: list[Turn]) -> list[ChatTurn]:
    history: list[ChatTurn] = []
    for turn in turns[-MAX_HISTORY_TURNS:]:
        if turn.answer is None:
            continue
        history.append(ChatTurn(role="user", content=turn.question[:20_000]))
        history.append(ChatTurn(role="assistant", content=turn.answer.answer[:20_000]))
    return history


def _turn_at(turns: list[Turn] | None, index: int | None) -> Turn | None:
    if turns is None or index is None or not 0 <= index < len(turns):
        return None
    return turns[index]


def _event_number(clicked: Mapping[str, Any], name: str) -> int | None:
    """A number the page's own script sent with a click; None for anything else a client might send."""
    value = clicked.get(name) if isinstance(clicked, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        return None
    return int(value)
