"""Evaluation data: the standard JSONL records (docs/interfaces.md) and the adapters that produce them.

- corpus JSONL     → `CorpusDocument` (a corpus file is also a valid ingest input)
- questions JSONL  → `Question`
- SQuAD / KorQuAD JSON → both: one document per paragraph, one question per qa
- a line-aligned Korean/English corpus → Korean documents and English questions (cross-lingual retrieval)

Readers raise `ValueError("FILE:LINE: what is wrong")` (or `"FILE: ..."` for whole-file problems); the CLI
prints that as one line.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rag.files import staged_file

__all__ = [
    "CorpusDocument",
    "Question",
    "detect_format",
    "group_into_stories",
    "load_eval_set",
    "load_parallel",
    "load_squad",
    "read_corpus_jsonl",
    "read_questions_jsonl",
    "sample_questions",
    "write_jsonl",
]

PathLike = str | os.PathLike[str]


class CorpusDocument(BaseModel):
    """One corpus line: a document to ingest and retrieve."""

    # Numbers where strings are expected (an integer id) are accepted and turned into strings.
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    id: str = Field(min_length=1)
    title: str | None = None
    text: str
    date: str | None = Field(default=None, description='"YYYY-MM-DD" by the contract; not checked here.')
    url: str | None = None
    source: str | None = None


class Question(BaseModel):
    """One questions line: what to ask and what counts as right."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answers: list[str] = Field(description="Gold answer texts; any one of them is right.")
    relevant_doc_ids: list[str] = Field(description="Corpus ids of the documents that hold the answer.")
    answerable: bool = Field(
        default=True, description="When absent (or null): true if there are answers or relevant documents."
    )

    @model_validator(mode="before")
    @classmethod
    def _infer_answerable(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("answerable") is None:
            inferred = bool(data.get("answers")) or bool(data.get("relevant_doc_ids"))
            return {**data, "answerable": inferred}
        return data


_Record = TypeVar("_Record", CorpusDocument, Question)


# --- JSONL -----------------------------------------------------------------------------------------


def read_corpus_jsonl(path: PathLike) -> list[CorpusDocument]:
    """Corpus documents from a JSONL file; blank lines are skipped, ids must be unique."""
    return _read_records(path, CorpusDocument)


def read_questions_jsonl(path: PathLike) -> list[Question]:
    """Questions from a JSONL file; blank lines are skipped, ids must be unique."""
    return _read_records(path, Question)


def write_jsonl(path: PathLike, records: Iterable[BaseModel | Mapping[str, Any]]) -> int:
    """Write records as UTF-8 JSONL (non-ASCII kept as is), creating parent folders; returns the count.

    The file is written next to its destination and moved into place, so a crash never leaves half a file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with staged_file(target) as partial, partial.open("w", encoding="utf-8", newline="\n") as out:
        for record in records:
            obj = record.model_dump(mode="json") if isinstance(record, BaseModel) else dict(record)
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
            count += 1
    return count


def _read_records(path: PathLike, model: type[_Record]) -> list[_Record]:
    records: list[_Record] = []
    first_seen: dict[str, int] = {}
    for line_no, obj in _iter_jsonl_objects(path):
        try:
            record = model.model_validate(obj)
        except ValidationError as exc:
            raise ValueError(f"{path}:{line_no}: {_describe_validation_error(exc)}") from exc
        if record.id in first_seen:
            raise ValueError(f"{path}:{line_no}: duplicate id {record.id!r} (first on line {first_seen[record.id]})")
        first_seen[record.id] = line_no
        records.append(record)
    return records


def _iter_jsonl_objects(path: PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, JSON object) for every non-blank line; errors name the file and line."""
    raw = _read_bytes(path)
    # bytes.splitlines breaks only on \n, \r and \r\n; str.splitlines would also break on U+2028 and
    # friends, which may legitimately appear inside JSON strings.
    for line_no, raw_line in enumerate(raw.splitlines(), start=1):
        try:
            line = raw_line.decode("utf-8-sig" if line_no == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}:{line_no}: not valid UTF-8 (byte {exc.start + 1} of the line)") from exc
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{line_no}: invalid JSON: {exc.msg} at column {exc.colno}") from exc
        if not isinstance(obj, dict):
            raise ValueError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
        yield line_no, obj


def _describe_validation_error(exc: ValidationError, limit: int = 3) -> str:
    """'answers: Field required; id: Input should be a valid string' — short enough for one line."""
    errors = exc.errors()
    parts = []
    for error in errors[:limit]:
        where = ".".join(str(part) for part in error["loc"])
        parts.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts)


def _read_bytes(path: PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _read_text(path: PathLike) -> str:
    try:
        return _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not valid UTF-8 (byte offset {exc.start})") from exc


# --- SQuAD / KorQuAD -------------------------------------------------------------------------------


class _SquadAnswer(BaseModel):
    text: str


class _SquadQA(BaseModel):
    model_config = ConfigDict(coerce_numbers_to_str=True)

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answers: list[_SquadAnswer] = Field(default_factory=list)
    is_impossible: bool = False  # SQuAD v2


class _SquadParagraph(BaseModel):
    context: str
    qas: list[_SquadQA] = Field(default_factory=list)


class _SquadArticle(BaseModel):
    title: str | None = None
    paragraphs: list[_SquadParagraph]


class _SquadFile(BaseModel):
    data: list[_SquadArticle]


def load_squad(path: PathLike) -> tuple[list[CorpusDocument], list[Question]]:
    """Documents and questions from a SQuAD v1.1/v2.0-format file (KorQuAD 1.0 is v1.1).

    Every paragraph is a document with id "{title}#{paragraph index}" (see `_article_keys`), the article
    title as title and the file name (without extension) as source. Every qa is a question whose relevant
    document is its paragraph and whose answers are the distinct answer texts in file order. A SQuAD v2
    `is_impossible` question is unanswerable, with no answers and no relevant documents: its paragraph is
    on topic but does not answer it.
    """
    return _squad_records(_parse_json_document(path), path)


def _squad_records(obj: Any, path: PathLike) -> tuple[list[CorpusDocument], list[Question]]:
    try:
        squad = _SquadFile.model_validate(obj)
    except ValidationError as exc:
        raise ValueError(f"{path}: not a SQuAD-format file: {_describe_validation_error(exc)}") from exc
    source = Path(path).stem
    documents: list[CorpusDocument] = []
    questions: list[Question] = []
    seen_questions: set[str] = set()
    for article, key in zip(squad.data, _article_keys(squad.data), strict=True):
        for paragraph_index, paragraph in enumerate(article.paragraphs):
            doc_id = f"{key}#{paragraph_index}"
            documents.append(CorpusDocument(id=doc_id, title=article.title, text=paragraph.context, source=source))
            for qa in paragraph.qas:
                if qa.id in seen_questions:
                    raise ValueError(f"{path}: duplicate question id {qa.id!r}")
                seen_questions.add(qa.id)
                questions.append(_squad_question(qa, doc_id))
    return documents, questions


def _article_keys(articles: Sequence[_SquadArticle]) -> list[str]:
    """A stable, unique id prefix per article: the title with whitespace and '#' runs turned into '_'.

    An untitled article is "article-{index}"; a title seen before gets "~{index}" appended, so ids depend
    only on the file's content and order.
    """
    keys: list[str] = []
    used: set[str] = set()
    for index, article in enumerate(articles):
        key = re.sub(r"[\s#]+", "_", (article.title or "").strip()).strip("_") or f"article-{index}"
        while key in used:
            key = f"{key}~{index}"
        used.add(key)
        keys.append(key)
    return keys


def _squad_question(qa: _SquadQA, doc_id: str) -> Question:
    if qa.is_impossible:
        return Question(id=qa.id, question=qa.question, answers=[], relevant_doc_ids=[], answerable=False)
    answers = list(dict.fromkeys(answer.text for answer in qa.answers if answer.text.strip()))
    return Question(id=qa.id, question=qa.question, answers=answers, relevant_doc_ids=[doc_id], answerable=True)


def _parse_json_document(path: PathLike) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg} at column {exc.colno}") from exc


def _looks_like_squad(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    data = obj.get("data")
    return isinstance(data, list) and bool(data) and isinstance(data[0], dict) and "paragraphs" in data[0]


# --- format detection and the one entry point ------------------------------------------------------


def detect_format(path: PathLike) -> Literal["jsonl", "squad"]:
    """The file's format, judged by content (the extension is not consulted).

    "squad" if the whole file is one JSON object whose "data" list holds articles with "paragraphs";
    anything else is "jsonl".
    """
    try:
        obj = _parse_json_document(path)
    except ValueError:
        # Several JSON lines do not parse as one document (or the file is unreadable: the JSONL reader
        # will say so, with the line).
        return "jsonl"
    return "squad" if _looks_like_squad(obj) else "jsonl"


def load_eval_set(
    corpus_path: PathLike, questions_path: PathLike | None = None
) -> tuple[list[CorpusDocument], list[Question]]:
    """Documents and questions for one evaluation run, checked against each other.

    A SQuAD-format corpus file carries its own questions: `questions_path` must then be None or the same
    file. A JSONL corpus needs a JSONL questions file. Every relevant_doc_id must name a corpus document.
    """
    if detect_format(corpus_path) == "squad":
        if questions_path is not None and not _same_file(corpus_path, questions_path):
            raise ValueError(
                f"{questions_path}: {corpus_path} is a SQuAD-format file that carries its own questions; "
                "leave out the questions file"
            )
        documents, questions = load_squad(corpus_path)
    else:
        if questions_path is None:
            raise ValueError(f"{corpus_path}: a JSONL corpus needs a questions file")
        if detect_format(questions_path) == "squad":
            raise ValueError(
                f"{questions_path}: a SQuAD-format file cannot be the questions of a JSONL corpus; "
                "pass it as the corpus"
            )
        documents = read_corpus_jsonl(corpus_path)
        questions = read_questions_jsonl(questions_path)
    _check_relevant_ids(documents, questions, questions_path or corpus_path, corpus_path)
    return documents, questions


def _same_file(a: PathLike, b: PathLike) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _check_relevant_ids(
    documents: Sequence[CorpusDocument], questions: Sequence[Question], questions_path: PathLike, corpus_path: PathLike
) -> None:
    # A relevant id that is not in the corpus can never be retrieved and silently zeroes recall.
    known = {document.id for document in documents}
    unknown = [(q.id, doc_id) for q in questions for doc_id in q.relevant_doc_ids if doc_id not in known]
    if unknown:
        question_id, doc_id = unknown[0]
        raise ValueError(
            f"{questions_path}: {len(unknown)} relevant_doc_ids are not in the corpus {corpus_path}, "
            f"e.g. {doc_id!r} of question {question_id!r}"
        )


# --- parallel corpus (cross-lingual retrieval) -----------------------------------------------------


def load_parallel(
    ko_path: PathLike, en_path: PathLike, limit: int | None = None
) -> tuple[list[CorpusDocument], list[Question]]:
    """Korean lines as documents ("ko-{line}"), English lines as questions ("en-{line}") that should find them.

    Line numbers are 1-based and refer to the files, so ids survive skipped pairs and `limit`. Pairs with a
    blank side are skipped; `limit` keeps the first pairs that remain. A question's relevant documents are
    its aligned Korean line, then (rare, noisy data) every other kept Korean line aligned to the same
    English sentence or with the same Korean text: those cannot be told apart from the twin. Questions
    have no answers and are answerable.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    ko_lines, en_lines = _read_lines(ko_path), _read_lines(en_path)
    if len(ko_lines) != len(en_lines):
        raise ValueError(f"{ko_path}, {en_path}: not line-aligned ({len(ko_lines)} vs {len(en_lines)} lines)")
    pairs = [
        (line_no, ko.strip(), en.strip())
        for line_no, (ko, en) in enumerate(zip(ko_lines, en_lines, strict=True), start=1)
        if ko.strip() and en.strip()
    ][:limit]
    source = Path(ko_path).name
    by_korean: defaultdict[str, list[str]] = defaultdict(list)
    by_english: defaultdict[str, list[str]] = defaultdict(list)
    for line_no, ko, en in pairs:
        by_korean[ko].append(f"ko-{line_no}")
        by_english[en].append(f"ko-{line_no}")
    documents = [CorpusDocument(id=f"ko-{line_no}", text=ko, source=source) for line_no, ko, _ in pairs]
    questions = [
        Question(
            id=f"en-{line_no}",
            question=en,
            answers=[],
            relevant_doc_ids=list(dict.fromkeys([f"ko-{line_no}", *by_english[en], *by_korean[ko]])),
            answerable=True,
        )
        for line_no, ko, en in pairs
    ]
    return documents, questions


def group_into_stories(
    documents: Sequence[CorpusDocument], questions: Sequence[Question], size: int
) -> tuple[list[CorpusDocument], list[Question]]:
    """Consecutive documents joined `size` at a time into one ("story-{n}", n from 1), and the questions
    pointed at the stories holding their documents: an article-level test from a line-aligned corpus (the
    parallel news corpus runs story by story, so a window of lines is mostly one story)."""
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    story_of: dict[str, str] = {}
    stories: list[CorpusDocument] = []
    for start in range(0, len(documents), size):
        members = documents[start : start + size]
        story_id = f"story-{len(stories) + 1}"
        story_of.update((d.id, story_id) for d in members)
        stories.append(CorpusDocument(id=story_id, text="\n".join(d.text for d in members), source=members[0].source))
    grouped = [
        q.model_copy(update={"relevant_doc_ids": list(dict.fromkeys(story_of[d] for d in q.relevant_doc_ids))})
        for q in questions
    ]
    return stories, grouped


def _read_lines(path: PathLike) -> list[str]:
    # Split on "\n" only: str.splitlines would also split on U+2028, \x0b, \x1c…, breaking the alignment.
    lines = _read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


# --- sampling --------------------------------------------------------------------------------------


def sample_questions(questions: Sequence[Question], limit: int | None, seed: int) -> list[Question]:
    """`limit` questions drawn at random with `random.Random(seed)`, kept in their original order.

    All of them (a copy) when `limit` is None or not smaller than their number. The same inputs always
    give the same sample.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    if limit is None or limit >= len(questions):
        return list(questions)
    chosen = sorted(random.Random(seed).sample(range(len(questions)), limit))
    return [questions[index] for index in chosen]
