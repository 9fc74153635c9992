"""`python -m eval bench-refusal`: measure the refusal thresholds instead of guessing them.

For Korean questions (KorQuAD 1.0 dev) and English questions over Korean text (the ko-en parallel news
corpus), half the questions have their source in the collection and half do not. English over English:
20 hand-written questions the FOMC statements answer and 20 unrelated ones (no English QA set is at hand).
For each question the best evidence similarity is recorded; the threshold that best separates the two
halves is printed with the accuracy it gives, next to the accuracy of the configured thresholds.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.bench import KORQUAD, PARALLEL_EN, PARALLEL_KO, PROJECT_ROOT, shared_file
from eval.datasets import CorpusDocument, Question, load_parallel, load_squad
from ingest.loaders import iter_documents
from ingest.pipeline import build_ingestor
from rag.config import QdrantSettings, load_settings
from rag.service import RagService
from rag.types import Article

FOMC = "fomc_statements_en/fomc_statements.jsonl"
FOMC_ANSWERABLE = (
    "What did the Committee decide about the federal funds rate in March 2020?",
    "Why did the FOMC raise rates in 2022?",
    "What is the Committee's longer-run inflation goal?",
    "When did the Fed start reducing its holdings of Treasury securities?",
    "Who voted against the monetary policy action?",
    "What did the Committee say about the labor market in 2008?",
    "What is the target range for the federal funds rate?",
    "How does the Committee assess risks to the economic outlook?",
    "What did the Fed say about household spending?",
    "Did the Committee lower the discount rate?",
    "What did the FOMC say about the coronavirus outbreak?",
    "How much did the Committee cut the federal funds rate in 2001?",
    "What is the Committee's statutory mandate?",
    "What did the Fed say about energy prices and inflation?",
    "Will the Committee continue to purchase agency mortgage-backed securities?",
    "What did the statement say about business fixed investment?",
    "Why did the Committee keep rates near zero?",
    "What does the Committee expect for inflation over the medium term?",
    "What happened to the unemployment rate according to the statement?",
    "Which Committee members dissented and why?",
)
UNRELATED_ENGLISH = (
    "Who co-chairs the smart city alliance?",
    "What is the capital of France?",
    "How many goals did Son Heung-min score last season?",
    "When was the Eiffel Tower built?",
    "Which company makes the iPhone?",
    "What did the ministry announce about railway safety?",
    "How do I bake sourdough bread?",
    "Who won the 2018 World Cup?",
    "What is the population of Seoul?",
    "Which vaccine did Korea approve for children?",
    "How tall is Mount Everest?",
    "Who wrote the novel Pachinko?",
    "What is the best way to learn Korean?",
    "When does the cherry blossom festival start in Jinhae?",
    "What did the ministry of education say about school lunches?",
    "How many satellites did Korea launch this year?",
    "What are the symptoms of influenza?",
    "Which team won the Korean Series?",
    "What is the speed of light?",
    "Who is the mayor of Busan?",
)


@dataclass(frozen=True)
class Split:
    name: str
    key: str  # names its collection
    corpus: list[CorpusDocument]
    answerable: list[Question]
    unanswerable: list[Question]


def korquad_split(per_side: int, seed: int) -> Split:
    """Articles are split in two; only the first half is indexed. Questions about the second half have
    an on-topic-looking but absent source: the hard kind of unanswerable question."""
    documents, questions = load_squad(shared_file(KORQUAD))
    titles = sorted({d.id.rsplit("#", 1)[0] for d in documents})
    random.Random(seed).shuffle(titles)
    indexed_titles = set(titles[: len(titles) // 2])
    corpus = [d for d in documents if d.id.rsplit("#", 1)[0] in indexed_titles]
    indexed_ids = {d.id for d in corpus}
    inside = [q for q in questions if set(q.relevant_doc_ids) <= indexed_ids]
    outside = [q for q in questions if not set(q.relevant_doc_ids) & indexed_ids]
    rng = random.Random(seed)
    return Split("korean (KorQuAD)", "ko", corpus, rng.sample(inside, per_side), rng.sample(outside, per_side))


def parallel_split(per_side: int, seed: int) -> Split:
    """Korean news sentences indexed; English twins of indexed sentences are answerable, English
    sentences whose twin is not indexed are not."""
    documents, questions = load_parallel(shared_file(PARALLEL_KO), shared_file(PARALLEL_EN))
    half = len(documents) // 2
    corpus = documents[:half]
    indexed_ids = {d.id for d in corpus}
    inside = [q for q in questions if set(q.relevant_doc_ids) <= indexed_ids]
    outside = [q for q in questions if not set(q.relevant_doc_ids) & indexed_ids]
    rng = random.Random(seed)
    return Split(
        "english over korean (parallel news)",
        "en",
        corpus,
        rng.sample(inside, per_side),
        rng.sample(outside, per_side),
    )


def fomc_split() -> Split:
    """All 210 FOMC statements indexed; hand-written questions they answer, and unrelated ones."""
    articles = [a for a in iter_documents([shared_file(FOMC)]) if isinstance(a, Article)]
    corpus = [CorpusDocument(id=a.id, title=a.title, text=a.text) for a in articles]

    def questions(texts: tuple[str, ...], answerable: bool) -> list[Question]:
        return [
            Question(
                id=f"{'in' if answerable else 'out'}-{n}",
                question=t,
                answers=[],
                relevant_doc_ids=[],
                answerable=answerable,
            )
            for n, t in enumerate(texts)
        ]

    return Split(
        "english over english (FOMC)",
        "en-en",
        corpus,
        questions(FOMC_ANSWERABLE, True),
        questions(UNRELATED_ENGLISH, False),
    )


def best_similarities(service: RagService, questions: list[Question]) -> list[float]:
    scores = []
    for question in questions:
        retrieval = service.retriever.retrieve(question.question)
        evidence = service.answerer.selector.select(question.question, retrieval.query_vector, retrieval.hits, 1)
        scores.append(max((e.similarity for e in evidence), default=0.0))
    return scores


def best_threshold(answerable: list[float], unanswerable: list[float]) -> tuple[float, float]:
    """The cut-off (refuse below it) with the highest accuracy over both halves."""
    candidates = sorted(set(answerable) | set(unanswerable))
    best = (0.0, 0.0)
    total = len(answerable) + len(unanswerable)
    for cut in candidates:
        correct = sum(s >= cut for s in answerable) + sum(s < cut for s in unanswerable)
        if correct / total > best[1]:
            best = (cut, correct / total)
    return best


def accuracy_at(cut: float, answerable: list[float], unanswerable: list[float]) -> float:
    correct = sum(s >= cut for s in answerable) + sum(s < cut for s in unanswerable)
    return correct / (len(answerable) + len(unanswerable))


def run(per_side: int = 100, seed: int = 0, as_json: bool = False) -> dict[str, Any]:
    settings = RagService(load_settings(), consult_collection=False).settings  # RAG_MODELS_EMBEDDING=auto resolved
    answer = settings.answer_settings()  # resolved once: an unmeasured model's warning is logged once
    results: dict[str, Any] = {}
    for split, configured in (
        (korquad_split(per_side, seed), answer.min_evidence_score(korean=True)),
        (parallel_split(per_side, seed), answer.min_evidence_score(korean=False)),
        (fomc_split(), answer.min_evidence_score(korean=False, evidence_korean=False)),
    ):
        # one folder per embedding model: a collection built with another model is not reused
        folder = PROJECT_ROOT / "storage" / "bench" / "refusal" / Path(settings.models.embedding).name
        name = f"refusal-{split.key}"
        service = RagService(settings.model_copy(update={"collection": name, "qdrant": QdrantSettings(path=folder)}))
        try:
            articles = [Article(id=d.id, title=d.title, text=d.text) for d in split.corpus]
            build_ingestor(service).ingest_articles(articles)
            inside = best_similarities(service, split.answerable)
            outside = best_similarities(service, split.unanswerable)
        finally:
            service.close()
        cut, accuracy = best_threshold(inside, outside)
        results[split.name] = {
            "questions_per_side": len(split.answerable),
            "best_threshold": round(cut, 4),
            "best_accuracy": round(accuracy, 3),
            "configured_threshold": configured,
            "configured_accuracy": round(accuracy_at(configured, inside, outside), 3),
            "answerable_median": round(sorted(inside)[len(inside) // 2], 4),
            "unanswerable_median": round(sorted(outside)[len(outside) // 2], 4),
        }
    if as_json:
        sys.stdout.write(json.dumps(results, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write("| questions | best threshold | accuracy | configured | accuracy | median in / out |\n")
        sys.stdout.write("|---|---|---|---|---|---|\n")
        for name, r in results.items():
            sys.stdout.write(
                f"| {name} | {r['best_threshold']:.3f} | {r['best_accuracy']:.3f} | {r['configured_threshold']:.3f} | "
                f"{r['configured_accuracy']:.3f} | {r['answerable_median']:.3f} / {r['unanswerable_median']:.3f} |\n"
            )
    return results
