"""`python -m eval run` end to end: exact scores on a hand-worked corpus, resuming and the CLI with the fake embedder
(fast), and the KorQuAD regression gate (slow)."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eval.__main__ import main
from eval.datasets import CorpusDocument, load_squad, sample_questions, write_jsonl
from eval.runner import RunConfig, compute_metrics, json_safe, run_evaluation
from rag.answer.llm import Message
from rag.config import AnswerSettings, LLMSettings, RetrievalSettings, Settings
from rag.embed.fake import FakeEmbedder
from rag.embed.torch_embedder import SentenceTransformerEmbedder

from .conftest import make_settings, shared_data_dir
from .doubles import ScriptedLLM, TopicEmbedder

CONTRACT_KEYS = [
    ("retrieval", "recall@1"),
    ("retrieval", "recall@5"),
    ("retrieval", "recall@10"),
    ("retrieval", "mrr@10"),
    ("answer", "f1"),
    ("answer", "exact_match"),
    ("citations", "precision"),
    ("refusal", "accuracy"),
    ("latency_ms", "p50"),
    ("latency_ms", "p95"),
]

CORPUS: list[dict[str, Any]] = [
    {
        "id": "alliance",
        "title": "스마트시티 융합 얼라이언스 출범",
        "text": "스마트시티 융합 얼라이언스가 2월 13일 부산 벡스코에서 공식 출범했다. "
        "이날 총회에서 초대 공동의장사로 LG CNS와 이큐브랩이 선임됐다. 공동감사는 한국기업데이터가 맡는다.",
        "date": "2024-04-20",
        "url": None,
        "source": "sample",
    },
    {
        "id": "fed",
        "title": "Federal Reserve statement",
        "text": "The Committee decided to raise the target range for the federal funds rate to 5.25 percent. "
        "Inflation remains elevated.",
        "date": "2023-07-26",
        "url": "https://example.org/fed",
        "source": "fomc",
    },
    {
        "id": "rail",
        "title": "철도 안전 대책 발표",
        "text": "국토교통부는 철도 안전 강화 대책을 발표했다. 노후 차량을 2030년까지 모두 교체한다.",
        "date": "not a date",
        "url": None,
        "source": "korea.kr",
    },
    {
        "id": "rice",
        "title": "쌀 수확량 증가",
        "text": "올해 쌀 수확량은 작년보다 3퍼센트 늘었다고 농림축산식품부가 밝혔다.",
        "date": None,
        "url": None,
        "source": "korea.kr",
    },
]
QUESTIONS: list[dict[str, Any]] = [
    {
        "id": "q1",
        "question": "얼라이언스 공동의장사는 어디인가?",
        "answers": ["LG CNS와 이큐브랩"],
        "relevant_doc_ids": ["alliance"],
        "answerable": True,
    },
    {
        "id": "q2",
        "question": "What did the Committee decide about the federal funds rate?",
        "answers": ["raise the target range"],
        "relevant_doc_ids": ["fed"],
        "answerable": True,
    },
    {
        "id": "q3",
        "question": "노후 철도 차량은 언제까지 교체하나?",
        "answers": ["2030년까지"],
        "relevant_doc_ids": ["rail"],
        "answerable": True,
    },
    {
        "id": "q4",
        "question": "올해 쌀 수확량은 얼마나 늘었나?",
        "answers": ["3퍼센트"],
        "relevant_doc_ids": ["rice"],
        "answerable": True,
    },
    {
        "id": "q5",
        "question": "화성 탐사선 발사 비용은 얼마인가?",
        "answers": [],
        "relevant_doc_ids": [],
        "answerable": False,
    },
]


class CountingEmbedder(FakeEmbedder):
    """Records every question embedded, to tell which questions a run actually evaluated."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[str] = []

    def embed_query(self, text: str) -> np.ndarray:
        self.queries.append(text)
        return super().embed_query(text)


@pytest.fixture
def eval_files(tmp_path: Path) -> tuple[Path, Path]:
    corpus, questions = tmp_path / "corpus.jsonl", tmp_path / "questions.jsonl"
    write_jsonl(corpus, CORPUS)
    write_jsonl(questions, QUESTIONS)
    return corpus, questions


def _config(files: tuple[Path, Path], out: Path, **changes: Any) -> RunConfig:
    corpus, questions = files
    return RunConfig(corpus=corpus, questions=questions, out_dir=out, **changes)


def test_eval_collection_is_separate_from_the_app_collection(
    settings: Settings, eval_files: tuple[Path, Path], tmp_path: Path
) -> None:
    outcome = run_evaluation(_config(eval_files, tmp_path / "out"), settings, embedder=FakeEmbedder())
    collection = outcome.metrics["setup"]["collection"]
    assert collection.startswith("eval-") and collection != settings.collection
    assert not settings.qdrant.path.exists()  # the app's store folder was never opened
    again = run_evaluation(_config(eval_files, tmp_path / "out2"), settings, embedder=FakeEmbedder())
    assert again.metrics["setup"]["collection"] == collection
    ingest = again.metrics["setup"]["ingest"]
    assert (ingest["added"], ingest["unchanged"]) == (0, len(CORPUS))  # vectors reused, nothing re-embedded


def test_rerun_resumes_without_recomputing_finished_questions(
    settings: Settings, eval_files: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    first_embedder = CountingEmbedder()
    first = run_evaluation(_config(eval_files, out, limit=2), settings, embedder=first_embedder)
    assert first.metrics["n_questions"] == 2
    done = {json.loads(line)["question"] for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()}
    assert len(done) == 2 and done <= set(first_embedder.queries)

    second_embedder = CountingEmbedder()
    second = run_evaluation(_config(eval_files, out), settings, embedder=second_embedder)
    assert second.computed == len(QUESTIONS) - 2
    assert not done & set(second_embedder.queries)
    assert second.metrics["n_questions"] == len(QUESTIONS)
    assert len((out / "results.jsonl").read_text(encoding="utf-8").splitlines()) == len(QUESTIONS)


def test_a_resumed_run_scores_its_stored_answers_again(
    settings: Settings, eval_files: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    first = run_evaluation(_config(eval_files, out), settings, embedder=FakeEmbedder())
    results = out / "results.jsonl"
    records = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    for record in records:  # scores as a metric of older code might have left them
        record.update(f1=0.0, em=0.0, contains=0.0, correct=False)
    results.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")

    again = run_evaluation(_config(eval_files, out), settings, embedder=FakeEmbedder())
    assert again.computed == 0  # nothing answered again
    assert again.metrics["answer"] == first.metrics["answer"]
    assert first.metrics["answer"]["f1"] > 0  # so the comparison above could fail


def test_results_of_another_corpus_are_not_resumed(
    settings: Settings, eval_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    run_evaluation(_config(eval_files, out, limit=1), settings, embedder=FakeEmbedder())
    write_jsonl(eval_files[0], [*CORPUS, {"id": "extra", "text": "새 문서"}])
    code = main(_argv(eval_files, out), settings=settings, embedder=FakeEmbedder())
    assert code == 2
    assert "another run" in capsys.readouterr().err


# --- a corpus whose every score can be worked out on paper ---------------------------------------------
#
# TopicEmbedder (tests/doubles.py) gives each text one axis per topic word it contains, so every dense
# similarity below is 1, 1/√2, 1/2 or 0; the keyword side is the real Korean/English analyser. Sound keys and
# translations are off (weight 0), every question gets one quoted sentence (the best evidence), and a question
# is refused when no sentence reaches similarity 0.8.

TOPICS = ("철도", "쌀", "수출", "Committee")
HAND_CORPUS: list[dict[str, Any]] = [
    {"id": "rail", "title": "철도 대책", "text": "국토교통부는 노후 철도 차량을 2030년까지 교체한다."},  # 철도
    {"id": "rice", "title": "쌀 수확", "text": "올해 쌀 수확량은 3퍼센트 늘었다."},  # 쌀
    {"id": "rice-export", "title": "쌀 수출", "text": "쌀 수출은 작년보다 5만 톤 늘었다."},  # 쌀 + 수출
    {"id": "fed", "title": "Federal Reserve", "text": "The Committee decided to raise the target range."},  # Committee
]
HAND_QUESTIONS: list[dict[str, Any]] = [
    # rail is first on both sides (similarity 1; the article with most of its words): rank 1. Quoted: the rail
    # sentence, 24 characters without spaces and the period, holding all 7 of the gold's: F1 2·(7/24)/(7/24+1)
    # = 14/31, no exact match.
    {
        "id": "q1",
        "question": "노후 철도 차량은 언제까지 교체하나?",
        "answers": ["2030년까지"],
        "relevant_doc_ids": ["rail"],
    },
    # fed: rank 1. Quoted: "The Committee decided to raise the target range.", 6 tokens without "the"; the
    # gold has 4 ("it raised target range"), 2 of them shared: F1 2·(2/6)(2/4)/(2/6+2/4) = 2/5. The gold is
    # not inside the quote, but the quote is from the relevant article: a supported citation.
    {
        "id": "q2",
        "question": "What did the Committee decide about the target range?",
        "answers": ["it raised the target range"],
        "relevant_doc_ids": ["fed"],
    },
    # The gold marks the export story, but the harvest story is first on both sides (similarity 1 vs 1/√2;
    # three of the question's words vs two): rank 2. Quoted: the harvest sentence, which shares no character
    # with "5만톤" and is not from a relevant article: F1 0, citation precision 0.
    {"id": "q3", "question": "쌀 수확량은 얼마나 늘었나?", "answers": ["5만 톤"], "relevant_doc_ids": ["rice-export"]},
    # rail, rank 1; the quoted sentence is the gold itself (its period aside): exact match, F1 1.
    {
        "id": "q4",
        "question": "철도 차량 교체 계획은?",
        "answers": ["국토교통부는 노후 철도 차량을 2030년까지 교체한다"],
        "relevant_doc_ids": ["rail"],
    },
    # no topic word: similarity 0 to every sentence, refused, as it should be.
    {
        "id": "q5",
        "question": "화성 탐사선 발사 비용은 얼마인가?",
        "answers": [],
        "relevant_doc_ids": [],
        "answerable": False,
    },
    # two topics: 1/√2 against the rail and harvest sentences, below 0.8: refused although answerable. Its
    # relevant article shares neither topic nor words with it and comes last of four: rank 4.
    {
        "id": "q6",
        "question": "철도 차량과 쌀 수확량은 어떻게 되나?",
        "answers": ["raise the target range"],
        "relevant_doc_ids": ["fed"],
    },
    # as q3, rank 2 (올해 is the harvest story's alone); but this gold is inside the quoted harvest sentence (4 of
    # its 14 characters): F1 2·(4/14)/(4/14+1) = 4/9, and a supported citation although from another article.
    {"id": "q7", "question": "올해 쌀은 얼마나 늘었나?", "answers": ["3퍼센트"], "relevant_doc_ids": ["rice-export"]},
    # not answerable, but about a topic (similarity 1 to the harvest sentence): answered, wrongly, citing it
    {"id": "q8", "question": "쌀 가격은 얼마인가?", "answers": [], "relevant_doc_ids": [], "answerable": False},
    # not answerable and no topic: refused, as it should be
    {"id": "q9", "question": "우주 정거장 건설 일정은?", "answers": [], "relevant_doc_ids": [], "answerable": False},
]


@pytest.fixture
def hand_files(tmp_path: Path) -> tuple[Path, Path]:
    corpus, questions = tmp_path / "hand-corpus.jsonl", tmp_path / "hand-questions.jsonl"
    write_jsonl(corpus, HAND_CORPUS)
    write_jsonl(questions, HAND_QUESTIONS)
    return corpus, questions


def _hand_settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path,
        answer=AnswerSettings(
            min_evidence_score_korean=0.8,
            min_evidence_score_other=0.8,
            min_evidence_score_english=0.8,
            extractive_sentences=1,
            extractive_max_sentences=1,
        ),
        retrieval=RetrievalSettings(sparse_weight_sound=0.0, sparse_weight_translation=0.0),
    )


def test_run_scores_a_hand_worked_corpus_exactly(hand_files: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    outcome = run_evaluation(_config(hand_files, out), _hand_settings(tmp_path), embedder=TopicEmbedder(*TOPICS))
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics == outcome.metrics

    records = {r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text(encoding="utf-8").splitlines())}
    assert list(records) == [q["id"] for q in HAND_QUESTIONS]
    assert records["q1"]["question"] == HAND_QUESTIONS[0]["question"]  # Korean kept as is
    relevant_ranks = [
        r["retrieved_doc_ids"].index(r["relevant_doc_ids"][0]) + 1 for r in records.values() if r["answerable"]
    ]
    assert relevant_ranks == [1, 1, 2, 1, 4, 2]  # q1 q2 q3 q4 q6 q7
    assert records["q3"]["retrieved_doc_ids"][:2] == ["rice", "rice-export"]
    assert [q for q, record in records.items() if record["refused"]] == ["q5", "q6", "q9"]
    assert records["q4"]["answer"] == "국토교통부는 노후 철도 차량을 2030년까지 교체한다. [1]"
    assert [[c["doc_id"] for c in records[q]["citations"]] for q in ("q1", "q2", "q3", "q4", "q7", "q8")] == [
        ["rail"], ["fed"], ["rice"], ["rail"], ["rice"], ["rice"]
    ]  # fmt: skip

    retrieval = metrics["retrieval"]
    assert retrieval["n"] == 6  # q5, q8 and q9 have no relevant article
    assert retrieval["recall_at_k"] == [0.5, 0.8333, 0.8333] + [1.0] * 7  # 3, 5, 5, then 6 of 6 within k
    assert (retrieval["recall@1"], retrieval["recall@5"], retrieval["recall@10"]) == (0.5, 1.0, 1.0)
    assert retrieval["mrr@10"] == 0.7083  # (1 + 1 + 1/2 + 1 + 1/4 + 1/2) / 6
    assert retrieval["ndcg@10"] == pytest.approx((3 + 2 / math.log2(3) + 1 / math.log2(5)) / 6, abs=1e-4)
    # answers with a gold (q1-q4, q6, q7; q6, refused, scores 0): F1 14/31, 2/5, 0, 1, 0, 4/9; exact match q4 only
    assert metrics["answer"]["n"] == 6
    assert metrics["answer"]["f1"] == pytest.approx((14 / 31 + 2 / 5 + 1 + 4 / 9) / 6, abs=1e-4)
    assert metrics["answer"]["exact_match"] == 0.1667
    assert metrics["answer"]["contains"] == 0.5  # the gold inside the answer: q1 q4 q7
    assert metrics["answer"]["correct"] == pytest.approx(5 / 9, abs=1e-4)  # q1 q4 q7 answered, q5 q9 refused
    # citations (refusals cite nothing and do not count): q1 q4 supported twice over, q2 by its article, q7 by
    # its quote, q3 and q8 not at all
    assert metrics["citations"]["precision"] == 0.6667
    assert metrics["citations"]["recall"] == 0.5  # q1 q2 q4 of the six with a relevant article cite it
    assert metrics["refusal"] == {
        "accuracy": pytest.approx(7 / 9, abs=1e-4),  # all but q6 and q8
        "refused": 3,
        "false_refusals": 1,
        "false_answers": 1,
        "n_unanswerable": 3,
    }
    assert metrics["n_questions"] == 9 and metrics["setup"]["n_documents"] == 4
    assert metrics["latency_ms"]["p50"] > 0 and metrics["latency_ms"]["p95"] >= metrics["latency_ms"]["p50"]
    assert {"embed", "search", "evidence"} <= set(metrics["latency_ms"]["stages"])
    assert set(metrics["systems"]) == {"hybrid"}
    assert metrics["systems"]["hybrid"]["retrieval"] == retrieval

    assert "| hybrid" in (out / "report.md").read_text(encoding="utf-8")
    for plot in ("recall_at_k.png", "latency.png"):
        assert (out / plot).read_bytes().startswith(b"\x89PNG")


def test_baselines_are_scored_per_system(hand_files: tuple[Path, Path], tmp_path: Path) -> None:
    config = _config(hand_files, tmp_path / "out", baselines=True)
    systems = run_evaluation(config, _hand_settings(tmp_path), embedder=TopicEmbedder(*TOPICS)).metrics["systems"]
    assert set(systems) == {"hybrid", "sparse", "dense", "llamaindex"}
    # dense alone, and llama-index over the same vectors, rank as the hybrid does: 1, 1, 2, 1, 4, 2
    for name in ("hybrid", "dense", "llamaindex"):
        retrieval = systems[name]["retrieval"]
        assert retrieval["recall_at_k"] == [0.5, 0.8333, 0.8333] + [1.0] * 7, name
        assert retrieval["mrr@10"] == 0.7083, name
    # keywords alone never reach q6's article (no word in common): 1, 1, 2, 1, not found, 2
    sparse = systems["sparse"]["retrieval"]
    assert sparse["recall_at_k"] == [0.5] + [0.8333] * 9
    assert sparse["mrr@10"] == 0.6667  # (1 + 1 + 1/2 + 1 + 0 + 1/2) / 6
    for system in systems.values():
        assert system["latency_ms"]["p50"] >= 0


def _argv(files: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    corpus, questions = files
    return ["run", "--corpus", str(corpus), "--questions", str(questions), "--out", str(out), *extra]


def test_cli_json_prints_one_object_on_stdout(
    settings: Settings, eval_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(_argv(eval_files, tmp_path / "out", "--json"), settings=settings, embedder=FakeEmbedder())
    captured = capsys.readouterr()
    assert code == 0, captured.err
    body = json.loads(captured.out)
    for key in CONTRACT_KEYS:
        assert key[1] in body[key[0]], key
    assert body == json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))  # what it wrote
    assert body["n_questions"] == len(QUESTIONS)


def test_cli_without_json_prints_tables(
    settings: Settings, eval_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(_argv(eval_files, tmp_path / "out"), settings=settings, embedder=FakeEmbedder())
    out = capsys.readouterr().out
    assert code == 0
    assert "recall@5" in out and "report.md" in out


def test_malformed_questions_file_exits_2_naming_file_and_line(
    settings: Settings, eval_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = eval_files[1]
    lines = questions.read_text(encoding="utf-8").splitlines()
    lines[2] = '{"id": "q3", "question": "broken'
    questions.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code = main(_argv(eval_files, tmp_path / "out"), settings=settings, embedder=FakeEmbedder())
    err = capsys.readouterr().err
    assert code == 2
    assert f"{questions}:3:" in err and len(err.strip().splitlines()) == 1


def test_missing_corpus_exits_2(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jsonl"
    code = main(["run", "--corpus", str(missing), "--questions", str(missing)], settings=settings)
    assert code == 2
    assert "nope.jsonl" in capsys.readouterr().err


def test_generative_mode_without_an_llm_exits_2(
    settings: Settings, eval_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(_argv(eval_files, tmp_path / "out", "--mode", "generative"), settings=settings, embedder=FakeEmbedder())
    assert code == 2
    assert "RAG_LLM_BACKEND" in capsys.readouterr().err


def test_auto_mode_answers_with_the_configured_llm(settings: Settings) -> None:
    from eval.runner import resolve_mode
    from rag.config import LLMSettings

    assert resolve_mode(settings, "auto") == "extractive"  # RAG_LLM_BACKEND=none
    with_llm = settings.model_copy(update={"llm": LLMSettings(backend="local")})
    assert resolve_mode(with_llm, "auto") == "generative"
    assert resolve_mode(with_llm, "extractive") == "extractive"  # asked for explicitly


def _scripted_reply(messages: list[Message]) -> str:
    """Repeats the first evidence sentence, except for the rice question, where it states a wrong figure."""
    body = messages[-1]["content"]
    if "쌀" in body.rsplit("Question:", 1)[-1]:
        return "쌀 수확량은 5퍼센트 늘었다 [1]."
    first = next(line for line in body.splitlines() if line.startswith("[1] "))
    return f"{first[4:]} [1]"


def test_generative_run_reports_claim_checks_beside_the_extractive_baseline(
    settings: Settings, eval_files: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    generative = settings.model_copy(update={"llm": LLMSettings(backend="local")})
    outcome = run_evaluation(
        _config(eval_files, out, mode="generative"),
        generative,
        embedder=FakeEmbedder(),
        llm=ScriptedLLM(_scripted_reply),
    )
    metrics = outcome.metrics
    claims = metrics["claims"]
    assert claims["answers_checked"] >= 4 and claims["sentences"] >= 4
    assert claims["repaired"] > 0 and claims["supported"] > 0  # the wrong rice figure, the repeated sentences
    assert claims["supported"] + claims["repaired"] + claims["dropped"] == pytest.approx(1.0)
    assert claims["unsupported_shown"] == 0
    # the baseline is what an extractive run over the same questions reports, figure for figure
    baseline = metrics["answer_baselines"]["extractive"]
    extractive = run_evaluation(_config(eval_files, tmp_path / "extractive"), settings, embedder=FakeEmbedder())
    for block in ("answer", "citations", "refusal", "claims"):
        assert baseline[block] == extractive.metrics[block], block
    assert baseline["claims"]["answers_checked"] == 0  # quotes are not checked: nothing was generated
    # the scripted model never refuses: q5, the one unanswerable question of five, is a false answer
    assert metrics["refusal"] == {
        "accuracy": 0.8,
        "refused": 0,
        "false_refusals": 0,
        "false_answers": 1,
        "n_unanswerable": 1,
    }
    # every reply cites [1], a sentence of the question's own article for q1-q4; q5 has no relevant article
    assert (metrics["citations"]["precision"], metrics["citations"]["recall"]) == (0.8, 1.0)
    assert metrics["answer"]["n"] == baseline["answer"]["n"] == 4  # the questions with gold answers

    records = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    rice = next(r for r in records if r["id"] == "q4")
    assert [c["verdict"] for c in rice["checks"]] == ["repaired"] and rice["checks"][0]["unsupported"] == ["5"]
    assert "5퍼센트" not in rice["answer"] and rice["extractive"]["checks"] is None
    assert all("extractive" in r and "contains" in r["extractive"] for r in records)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Claim check" in report and "extractive (baseline)" in report


def test_metrics_of_no_questions_are_null_not_nan() -> None:
    metrics = json_safe(compute_metrics([], ["hybrid"]))
    assert metrics["retrieval"]["recall@1"] is None
    assert metrics["latency_ms"]["p50"] is None
    json.dumps(metrics, allow_nan=False)


# --- regression gate (issue 4) -----------------------------------------------------------------------

KORQUAD = shared_data_dir() / "korquad_v1_dev" / "KorQuAD_v1.0_dev.json"
GATE_QUESTIONS = 100
GATE_DISTRACTORS = 200
# Measured on this slice (seed 0, 295 paragraphs / 792 chunks, e5-small, default settings, 2026-11):
# recall@1 0.96, recall@5 0.99, MRR@10 0.973. The margins allow ~3 questions of drift, not a regression.
GATE_RECALL_AT_5 = 0.96
GATE_MRR_AT_10 = 0.93


@pytest.fixture(scope="module")
def korquad_slice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """100 questions (seed 0), their paragraphs and 200 random other paragraphs as distractors.

    The full 964 paragraphs (2,567 chunks) take ~3.5 min to embed on 2 cores; this slice (792 chunks) keeps
    the gate near 3 min on a quiet machine (8 min was measured with another job competing for the cores).
    """
    if not KORQUAD.is_file():
        pytest.skip(f"{KORQUAD} not available")
    documents, questions = load_squad(KORQUAD)
    chosen = sample_questions(questions, GATE_QUESTIONS, seed=0)
    needed = {doc_id for q in chosen for doc_id in q.relevant_doc_ids}
    others = [d for d in documents if d.id not in needed]
    distractors = {d.id for d in random.Random(0).sample(others, GATE_DISTRACTORS)}
    corpus: list[CorpusDocument] = [d for d in documents if d.id in needed or d.id in distractors]
    folder = tmp_path_factory.mktemp("korquad")
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "questions.jsonl", chosen)
    yield folder / "corpus.jsonl", folder / "questions.jsonl"


@pytest.mark.slow
def test_korquad_slice_retrieval_stays_above_the_gate(
    korquad_slice: tuple[Path, Path], real_embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path)
    outcome = run_evaluation(_config(korquad_slice, tmp_path / "report"), settings, embedder=real_embedder)
    retrieval = outcome.metrics["retrieval"]
    assert outcome.metrics["n_questions"] == GATE_QUESTIONS
    assert retrieval["recall@5"] >= GATE_RECALL_AT_5, retrieval
    assert retrieval["mrr@10"] >= GATE_MRR_AT_10, retrieval
