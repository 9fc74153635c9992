"""Evaluation data readers, writers and adapters: small fixtures here, real files from ../shared/data."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from eval.datasets import (
    CorpusDocument,
    Question,
    detect_format,
    group_into_stories,
    load_eval_set,
    load_parallel,
    load_squad,
    read_corpus_jsonl,
    read_questions_jsonl,
    sample_questions,
    write_jsonl,
)


def _shared_data() -> Path:
    override = os.environ.get("RAG_SHARED_DATA")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "shared" / "data"


SHARED_DATA = _shared_data()
KORQUAD_DEV = SHARED_DATA / "korquad_v1_dev" / "KorQuAD_v1.0_dev.json"
PARALLEL_KO = SHARED_DATA / "ko_en_news_parallel" / "korean-english-park.dev.ko"
PARALLEL_EN = SHARED_DATA / "ko_en_news_parallel" / "korean-english-park.dev.en"


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _squad_fixture(tmp_path: Path) -> Path:
    data: dict[str, Any] = {
        "version": "v2.0",
        "data": [
            {
                "title": "임종석",
                "paragraphs": [
                    {
                        "context": "1989년 2월 15일 여의도 농민 폭력 시위를 주도한 혐의로 지명수배되었다.",
                        "qas": [
                            {
                                "id": "q1",
                                "question": "임종석이 지명수배 된 날은?",
                                "answers": [
                                    {"text": "1989년 2월 15일", "answer_start": 0},
                                    {"text": "1989년 2월 15일", "answer_start": 0},
                                    {"text": "2월 15일", "answer_start": 6},
                                ],
                            },
                            {
                                "id": "q2",
                                "question": "임종석의 생일은?",
                                "answers": [],
                                "plausible_answers": [{"text": "1989년 2월 15일", "answer_start": 0}],
                                "is_impossible": True,
                            },
                        ],
                    },
                    {"context": "두 번째 문단.", "qas": [{"id": "q3", "question": "?", "answers": [{"text": "문단"}]}]},
                ],
            },
            {"title": "Federal Reserve #2", "paragraphs": [{"context": "Rates rose.", "qas": []}]},
            {"title": "임종석", "paragraphs": [{"context": "동명이인.", "qas": []}]},
            {"paragraphs": [{"context": "No title.", "qas": []}]},
        ],
    }
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def _jsonl_pair(tmp_path: Path) -> tuple[Path, Path]:
    corpus = [CorpusDocument(id="d1", title="제목", text="본문 1989년.", date="2024-01-02", url=None, source="s")]
    questions = [Question(id="q1", question="언제?", answers=["1989년"], relevant_doc_ids=["d1"])]
    corpus_path, questions_path = tmp_path / "corpus.jsonl", tmp_path / "questions.jsonl"
    write_jsonl(corpus_path, corpus)
    write_jsonl(questions_path, questions)
    return corpus_path, questions_path


# --- JSONL -----------------------------------------------------------------------------------------


def test_jsonl_round_trip(tmp_path: Path) -> None:
    documents = [
        CorpusDocument(
            id="d1",
            title="스마트시티 융합 얼라이언스",
            text="출범 본문",
            date="2026-07-02",
            url="https://x",
            source="korea.kr",
        ),
        CorpusDocument(id="d2", title=None, text="English text", date=None, url=None, source=None),
    ]
    questions = [
        Question(id="q1", question="언제 출범?", answers=["7월 2일"], relevant_doc_ids=["d1"], answerable=True),
        Question(id="q2", question="Unanswerable?", answers=[], relevant_doc_ids=[], answerable=False),
    ]
    assert write_jsonl(tmp_path / "out" / "corpus.jsonl", documents) == 2
    write_jsonl(tmp_path / "questions.jsonl", questions)

    assert read_corpus_jsonl(tmp_path / "out" / "corpus.jsonl") == documents
    assert read_questions_jsonl(tmp_path / "questions.jsonl") == questions
    raw = (tmp_path / "out" / "corpus.jsonl").read_text(encoding="utf-8")
    assert "스마트시티" in raw  # UTF-8 as is, not \u escapes
    assert json.loads(raw.splitlines()[1]) == {
        "id": "d2",
        "title": None,
        "text": "English text",
        "date": None,
        "url": None,
        "source": None,
    }
    assert not list((tmp_path / "out").glob("*.partial"))


def test_write_jsonl_accepts_mappings(tmp_path: Path) -> None:
    assert write_jsonl(tmp_path / "x.jsonl", [{"a": 1}, {"b": "한"}]) == 2
    assert (tmp_path / "x.jsonl").read_text(encoding="utf-8") == '{"a": 1}\n{"b": "한"}\n'


def test_reader_skips_blank_lines_ignores_extra_keys_and_strips_bom(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf" + b'{"id": "d1", "text": "a", "extra": 1}\n\n   \n{"id": 7, "text": "b", "title": "t"}\r\n'
    )
    documents = read_corpus_jsonl(path)
    assert [d.id for d in documents] == ["d1", "7"]
    assert documents[1].title == "t" and documents[1].date is None


def test_answerable_is_inferred_when_absent(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "q.jsonl",
        [
            json.dumps({"id": "a", "question": "?", "answers": ["x"], "relevant_doc_ids": []}),
            json.dumps({"id": "b", "question": "?", "answers": [], "relevant_doc_ids": ["d"]}),
            json.dumps({"id": "c", "question": "?", "answers": [], "relevant_doc_ids": []}),
            json.dumps({"id": "d", "question": "?", "answers": [], "relevant_doc_ids": [], "answerable": None}),
            json.dumps({"id": "e", "question": "?", "answers": ["x"], "relevant_doc_ids": ["d"], "answerable": False}),
        ],
    )
    assert [q.answerable for q in read_questions_jsonl(path)] == [True, True, False, False, False]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"id": "q2", "question": "?", "answers": [', "invalid JSON"),
        ('["not", "an", "object"]', "expected a JSON object, got list"),
        ('{"id": "q2", "question": "?", "answers": []}', "relevant_doc_ids: Field required"),
        ('{"id": "q2", "question": "?", "answers": "x", "relevant_doc_ids": []}', "answers: Input should be a valid"),
        ('{"id": "q1", "question": "?", "answers": [], "relevant_doc_ids": []}', "duplicate id 'q1' (first on line 1)"),
    ],
)
def test_malformed_line_error_names_file_and_line(tmp_path: Path, bad_line: str, message: str) -> None:
    good = json.dumps({"id": "q1", "question": "?", "answers": ["a"], "relevant_doc_ids": ["d1"]})
    path = _write_lines(tmp_path / "questions.jsonl", [good, "", bad_line])
    with pytest.raises(ValueError) as caught:
        read_questions_jsonl(path)
    assert str(caught.value).startswith(f"{path}:3: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b'{"id": "d1", "text": "a"}\n{"id": "d2", "text": "\xff"}\n')
    with pytest.raises(ValueError, match=r"corpus\.jsonl:2: not valid UTF-8"):
        read_corpus_jsonl(path)


def test_missing_file_is_a_value_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nope\.jsonl: cannot read"):
        read_corpus_jsonl(tmp_path / "nope.jsonl")


# --- SQuAD -----------------------------------------------------------------------------------------


def test_load_squad_documents(tmp_path: Path) -> None:
    documents, _ = load_squad(_squad_fixture(tmp_path))
    assert [d.id for d in documents] == ["임종석#0", "임종석#1", "Federal_Reserve_2#0", "임종석~2#0", "article-3#0"]
    assert documents[0].title == "임종석"
    assert documents[0].text.startswith("1989년 2월 15일")
    assert documents[3].title == "임종석" and documents[4].title is None
    assert {d.source for d in documents} == {"squad"}


def test_load_squad_questions(tmp_path: Path) -> None:
    _, questions = load_squad(_squad_fixture(tmp_path))
    by_id = {q.id: q for q in questions}
    assert list(by_id) == ["q1", "q2", "q3"]
    assert by_id["q1"].answers == ["1989년 2월 15일", "2월 15일"]  # deduplicated, order kept
    assert by_id["q1"].relevant_doc_ids == ["임종석#0"] and by_id["q1"].answerable
    assert by_id["q2"].answerable is False
    assert by_id["q2"].answers == [] and by_id["q2"].relevant_doc_ids == []
    assert by_id["q3"].relevant_doc_ids == ["임종석#1"]


def test_load_squad_ids_are_stable(tmp_path: Path) -> None:
    path = _squad_fixture(tmp_path)
    assert load_squad(path) == load_squad(path)


def test_load_squad_rejects_broken_structure(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"qas": []}]}]}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.json: not a SQuAD-format file: data\.0\.paragraphs\.0\.context"):
        load_squad(path)


def test_detect_format(tmp_path: Path) -> None:
    corpus_path, _ = _jsonl_pair(tmp_path)
    assert detect_format(_squad_fixture(tmp_path)) == "squad"
    assert detect_format(corpus_path) == "jsonl"
    one_line = tmp_path / "one.json"  # a one-line JSONL file named .json is still JSONL
    one_line.write_text('{"id": "d1", "text": "a"}\n', encoding="utf-8")
    assert detect_format(one_line) == "jsonl"
    not_squad = tmp_path / "data.json"
    not_squad.write_text('{"data": [{"id": 1}]}', encoding="utf-8")
    assert detect_format(not_squad) == "jsonl"


def test_load_eval_set_from_squad(tmp_path: Path) -> None:
    path = _squad_fixture(tmp_path)
    expected = load_squad(path)
    assert load_eval_set(path) == expected
    assert load_eval_set(path, path) == expected
    with pytest.raises(ValueError, match="carries its own questions"):
        load_eval_set(path, tmp_path / "other.jsonl")


def test_load_eval_set_from_jsonl(tmp_path: Path) -> None:
    corpus_path, questions_path = _jsonl_pair(tmp_path)
    documents, questions = load_eval_set(corpus_path, questions_path)
    assert [d.id for d in documents] == ["d1"] and [q.id for q in questions] == ["q1"]
    with pytest.raises(ValueError, match="needs a questions file"):
        load_eval_set(corpus_path)
    with pytest.raises(ValueError, match="cannot be the questions of a JSONL corpus"):
        load_eval_set(corpus_path, _squad_fixture(tmp_path))


def test_load_eval_set_rejects_unknown_relevant_ids(tmp_path: Path) -> None:
    corpus_path, _ = _jsonl_pair(tmp_path)
    questions_path = tmp_path / "bad_questions.jsonl"
    write_jsonl(questions_path, [Question(id="q9", question="?", answers=["x"], relevant_doc_ids=["d1", "d404"])])
    with pytest.raises(ValueError, match=r"1 relevant_doc_ids are not in the corpus .*'d404' of question 'q9'"):
        load_eval_set(corpus_path, questions_path)


@pytest.mark.slow
@pytest.mark.skipif(not KORQUAD_DEV.is_file(), reason=f"shared data not found at {KORQUAD_DEV}")
def test_real_korquad_dev_counts() -> None:
    documents, questions = load_eval_set(KORQUAD_DEV)
    assert detect_format(KORQUAD_DEV) == "squad"
    assert len(documents) == 964
    assert len(questions) == 5_774
    assert len({d.id for d in documents}) == 964
    assert len({d.title for d in documents}) == 140
    assert all(q.answerable and len(q.answers) == 1 and len(q.relevant_doc_ids) == 1 for q in questions)
    first = questions[0]
    assert first.id == "6548850-0-0" and first.answers == ["1989년 2월 15일"]
    assert first.relevant_doc_ids == ["임종석#0"]


# --- parallel corpus -------------------------------------------------------------------------------


def test_load_parallel(tmp_path: Path) -> None:
    ko = _write_lines(tmp_path / "p.ko", ["첫 문장.", "", "세 번째 문장.", "네 번째.", "첫 문장."])
    en = _write_lines(tmp_path / "p.en", ["First.", "Second.", "Third.", "  ", "Fifth."])
    documents, questions = load_parallel(ko, en)
    assert [d.id for d in documents] == ["ko-1", "ko-3", "ko-5"]
    assert [d.text for d in documents] == ["첫 문장.", "세 번째 문장.", "첫 문장."]
    assert {d.source for d in documents} == {"p.ko"}
    assert [q.id for q in questions] == ["en-1", "en-3", "en-5"]
    assert [q.question for q in questions] == ["First.", "Third.", "Fifth."]
    assert all(q.answers == [] and q.answerable for q in questions)
    # ko-1 and ko-5 have the same Korean text: either one is the right document.
    assert [q.relevant_doc_ids for q in questions] == [["ko-1", "ko-5"], ["ko-3"], ["ko-5", "ko-1"]]


def test_load_parallel_same_english_twice(tmp_path: Path) -> None:
    ko = _write_lines(tmp_path / "p.ko", ["가.", "나."])
    en = _write_lines(tmp_path / "p.en", ["Same.", "Same."])
    _, questions = load_parallel(ko, en)
    assert [q.relevant_doc_ids for q in questions] == [["ko-1", "ko-2"], ["ko-2", "ko-1"]]


def test_load_parallel_limit(tmp_path: Path) -> None:
    ko = _write_lines(tmp_path / "p.ko", ["가.", "", "다.", "라."])
    en = _write_lines(tmp_path / "p.en", ["A.", "B.", "C.", "D."])
    documents, questions = load_parallel(ko, en, limit=2)
    assert [d.id for d in documents] == ["ko-1", "ko-3"]
    assert [q.relevant_doc_ids for q in questions] == [["ko-1"], ["ko-3"]]
    assert load_parallel(ko, en, limit=0) == ([], [])
    with pytest.raises(ValueError, match="must not be negative"):
        load_parallel(ko, en, limit=-1)


def test_group_into_stories_joins_consecutive_lines_and_repoints_questions(tmp_path: Path) -> None:
    ko = _write_lines(tmp_path / "p.ko", ["가.", "나.", "다.", "라.", "가."])
    en = _write_lines(tmp_path / "p.en", ["A.", "B.", "C.", "D.", "E."])
    stories, questions = group_into_stories(*load_parallel(ko, en), size=2)
    assert [(s.id, s.text) for s in stories] == [("story-1", "가.\n나."), ("story-2", "다.\n라."), ("story-3", "가.")]
    # "가." is in stories 1 and 3: either holds the twin
    assert [q.relevant_doc_ids for q in questions] == [
        ["story-1", "story-3"],
        ["story-1"],
        ["story-2"],
        ["story-2"],
        ["story-3", "story-1"],
    ]
    with pytest.raises(ValueError, match="at least 1"):
        group_into_stories([], [], size=0)


def test_load_parallel_rejects_misaligned_files(tmp_path: Path) -> None:
    ko = _write_lines(tmp_path / "p.ko", ["가.", "나."])
    en = _write_lines(tmp_path / "p.en", ["A."])
    with pytest.raises(ValueError, match=r"not line-aligned \(2 vs 1 lines\)"):
        load_parallel(ko, en)


def test_load_parallel_splits_on_newlines_only(tmp_path: Path) -> None:
    ko = tmp_path / "p.ko"
    ko.write_text("가\u2028나.\n다.\n", encoding="utf-8")
    en = _write_lines(tmp_path / "p.en", ["A.", "B."])
    documents, _ = load_parallel(ko, en)
    assert [d.text for d in documents] == ["가\u2028나.", "다."]


@pytest.mark.slow
@pytest.mark.skipif(not PARALLEL_KO.is_file(), reason=f"shared data not found at {PARALLEL_KO}")
def test_real_parallel_dev() -> None:
    documents, questions = load_parallel(PARALLEL_KO, PARALLEL_EN)
    assert len(documents) == len(questions) == 1_000
    assert all(q.relevant_doc_ids[0] == f"ko-{q.id.removeprefix('en-')}" for q in questions)
    assert all(set(q.relevant_doc_ids) <= {d.id for d in documents} for q in questions)
    assert documents[0].id == "ko-1" and documents[0].text.startswith("세계 에서 가장 강력한 수퍼컴퓨터")
    assert questions[0].question.startswith("After keeping the world's most powerful supercomputer")


# --- sampling --------------------------------------------------------------------------------------


def _questions(n: int) -> list[Question]:
    return [Question(id=f"q{i}", question=f"질문 {i}?", answers=["a"], relevant_doc_ids=[]) for i in range(n)]


def test_sample_questions_is_deterministic_and_keeps_order() -> None:
    questions = _questions(100)
    sample = sample_questions(questions, 10, seed=13)
    assert sample == sample_questions(questions, 10, seed=13)
    assert len(sample) == 10 and len({q.id for q in sample}) == 10
    positions = [questions.index(q) for q in sample]
    assert positions == sorted(positions)
    assert sample != sample_questions(questions, 10, seed=14)


def test_sample_questions_without_a_real_limit_returns_all() -> None:
    questions = _questions(5)
    assert sample_questions(questions, None, seed=0) == questions
    assert sample_questions(questions, 5, seed=0) == questions
    assert sample_questions(questions, 50, seed=0) == questions
    assert sample_questions(questions, None, seed=0) is not questions
    assert sample_questions(questions, 0, seed=0) == []
    with pytest.raises(ValueError, match="must not be negative"):
        sample_questions(questions, -1, seed=0)
