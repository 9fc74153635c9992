"""`python -m eval run`: corpus → fresh collection → every question answered and scored → report.

- The corpus goes into a collection of its own, named after the corpus file's content and the settings that
  shape vectors, in its own embedded Qdrant folder under the cache folder: the app's collection is never
  touched, and a second run over the same corpus reuses the stored vectors (ingest skips unchanged articles).
- Per-question results are appended to `OUT/results.jsonl` as they are produced; a re-run with the same
  out folder skips the questions already there, so a killed run resumes where it stopped.
- Retrieval is scored on the first `DEPTH_DOCS` distinct documents of a ranking. Several chunks of one
  document collapse into one entry, so every system fetches `DEPTH_CHUNKS` chunks (or nodes) to fill them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from eval import metrics as m
from eval.baselines import LlamaIndexRanking
from eval.datasets import CorpusDocument, Question, load_eval_set, sample_questions
from eval.report import write_report
from ingest.pipeline import IngestReport, build_ingestor, content_fingerprint
from rag.answer.claims import ClaimChecker
from rag.answer.llm import LLM
from rag.answer.prompts import SOURCES_DIFFER_EN, SOURCES_DIFFER_KO, prompt_fingerprint
from rag.config import LLMSettings, QdrantSettings, Settings
from rag.embed.base import Embedder
from rag.errors import ConfigurationError, InputError
from rag.files import staged_file
from rag.service import RagService
from rag.text.lexicon import LEXICON_VERSION
from rag.types import Answer, Article

logger = logging.getLogger(__name__)

AnswerMode = Literal["extractive", "generative"]
SearchMode = Literal["hybrid", "dense", "sparse"]

DEPTH_DOCS = 10  # retrieval metrics look at the first 10 distinct documents
DEPTH_CHUNKS = 30  # chunks (or nodes) fetched to find them
OURS = "hybrid"
BASELINES = ("sparse", "dense", "llamaindex")
RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"

_CITATION_MARKER = re.compile(r"\s*\[\d+\]")
_SHOWN_SENTENCE = re.compile(r"[^\[]*?((?:\[\d+\])+)[.!?。]?")
VERDICTS = ("supported", "repaired", "dropped")
EXTRACTIVE: AnswerMode = "extractive"


@dataclass(frozen=True)
class RunConfig:
    corpus: Path
    questions: Path | None
    out_dir: Path
    limit: int | None = None
    seed: int = 0
    baselines: bool = False
    mode: AnswerMode = "extractive"
    top_k: int | None = None
    cache_dir: Path | None = None
    fresh: bool = False


@dataclass
class RunOutcome:
    metrics: dict[str, Any]
    out_dir: Path
    computed: int  # questions evaluated (or completed) in this run; the rest came from results.jsonl


class RankingSystem(Protocol):
    """A retrieval system under test: question → document ids, best first, and its latency."""

    name: str

    def rank(self, question: str) -> tuple[list[str], float]: ...


# --- corpus → collection ---------------------------------------------------------------------------


def to_article(document: CorpusDocument) -> Article:
    return Article(
        id=document.id,
        text=document.text,
        title=document.title,
        date=_parse_date(document.date),
        url=document.url,
        source=document.source,
        origin=None,
    )


def _parse_date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


def file_digest(paths: Iterable[Path]) -> str:
    """sha256 over the files' bytes (in the order given): the identity of a corpus."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
        digest.update(b"\x00")
    return digest.hexdigest()


def default_cache_dir(settings: Settings) -> Path:
    """`eval/` beside the app's embedded store folder (storage/eval by default), never the store itself."""
    return settings.qdrant.path.parent / "eval"


def open_eval_collection(
    settings: Settings, content_key: str, cache_dir: Path, *, embedder: Embedder | None = None, llm: LLM | None = None
) -> RagService:
    """A service over the collection `eval-<hash>` of this corpus content and these vector settings.

    Each collection lives in its own folder, so several can be open in one process (embedded Qdrant allows
    one client per folder) and the app's folder is never opened.
    """
    # only its embedder (and RAG_MODELS_EMBEDDING=auto resolved on this machine) is used; no store is opened
    probe = RagService(settings, embedder=embedder, consult_collection=False)
    fingerprint = content_fingerprint(probe)
    name = "eval-" + hashlib.sha256(f"{content_key}|{fingerprint}".encode()).hexdigest()[:16]
    resolved = probe.settings
    own = resolved.model_copy(update={"collection": name, "qdrant": local_store(resolved, Path(cache_dir) / name)})
    return RagService(own, embedder=probe.embedder, llm=llm)


def local_store(settings: Settings, folder: Path) -> QdrantSettings:
    """Embedded Qdrant in `folder`, even when the app is configured for a Qdrant server."""
    return settings.qdrant.model_copy(update={"path": folder, "url": None, "api_key": None})


def ingest_corpus(service: RagService, articles: Sequence[Article], *, label: str = "ingest") -> IngestReport:
    """Ingest (idempotent: articles already stored with the same content are skipped), with a progress bar."""
    ingestor = build_ingestor(service)
    with progress_bar(total=len(articles), desc=label, unit="doc") as bar:
        report = ingestor.ingest_articles(articles, progress=bar)
    logger.info(
        "%s: %d added, %d unchanged, %d chunks in %.1f s",
        label,
        report.added + report.updated,
        report.unchanged,
        report.chunks,
        report.seconds,
    )
    if report.chunks:
        service.store.optimize()  # Qdrant Edge indexes only when told; questions come next
    return report


def progress_bar(total: int | None, desc: str, unit: str) -> Any:
    """tqdm on stderr (stdout stays clean for --json); sparse updates when stderr is a log file."""
    # imported where the progress bar is drawn
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(
        total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=0.5 if interactive else 30.0, dynamic_ncols=True
    )


def load_average() -> list[float] | None:
    """1/5/15-minute load: timings taken while other processes compete for the cores are not comparable."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def resolve_mode(settings: Settings, requested: AnswerMode | Literal["auto"]) -> AnswerMode:
    """`auto`: answer with the LLM the settings name (RAG_LLM_BACKEND=local or openai), else extractively."""
    if requested != "auto":
        return requested
    return "extractive" if settings.llm.backend == "none" else "generative"


def settings_for_mode(settings: Settings, mode: AnswerMode) -> Settings:
    """Extractive answers never call an LLM; generative ones need a configured backend."""
    if mode == "extractive":
        return settings.model_copy(update={"llm": LLMSettings(backend="none", temperature=settings.llm.temperature)})
    if settings.llm.backend == "none":
        raise ConfigurationError("--mode generative needs an LLM: set RAG_LLM_BACKEND=local or openai")
    return settings


def settings_fingerprint(service: RagService, mode: AnswerMode, top_k: int | None) -> str:
    """Short hash of everything that shapes results: vectors, retrieval, answering, mode."""
    settings = service.settings
    material = {
        "vectors": content_fingerprint(service),
        "retrieval": settings.retrieval_settings().model_dump(mode="json"),
        "lexicon": LEXICON_VERSION,
        "answer": settings.answer_settings().model_dump(mode="json"),
        "llm": [settings.llm.backend, settings.llm.temperature, settings.models.llm_file, settings.openai.model],
        "mode": mode,
        "top_k": top_k,
        "prompt": prompt_fingerprint(),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:12]


# --- systems -------------------------------------------------------------------------------------


class RagRanking:
    """Our retriever in one mode (hybrid is the system under test; dense and sparse are its halves)."""

    def __init__(self, service: RagService, mode: SearchMode) -> None:
        self.service, self.mode = service, mode
        self.name: str = mode

    def rank(self, question: str) -> tuple[list[str], float]:
        started = time.perf_counter()
        retrieval = self.service.retriever.retrieve(question, top_k=DEPTH_CHUNKS, mode=self.mode)
        elapsed = (time.perf_counter() - started) * 1000
        if self.mode == "sparse":
            # the retriever embeds the query in every mode; keyword-only search does not need it
            elapsed -= retrieval.timings_ms.get("embed", 0.0)
        # an article whose copy of a hit's text was folded into that hit ranks right after it
        found = [article for hit in retrieval.hits for article in (hit.chunk.article_id, *hit.copies_in)]
        ids = m.distinct_top_k(found, DEPTH_DOCS)
        return ids, round(elapsed, 2)


# --- one question ----------------------------------------------------------------------------------


def answer_record(
    question: Question, answer: Answer, ranked: tuple[list[str], float], checker: ClaimChecker | None = None
) -> dict[str, Any]:
    """The results.jsonl line for one question: inputs, what the system did, and its scores."""
    retrieved, retrieval_ms = ranked
    record: dict[str, Any] = {
        "id": question.id,
        "question": question.question,
        "answers": question.answers,
        "relevant_doc_ids": question.relevant_doc_ids,
        "answerable": question.answerable,
        "retrieved_doc_ids": retrieved,
        "retrieval_ms": retrieval_ms,
        **answer_fields(answer),
        "baselines": {},
    }
    record.update(score_answer(record))
    if answer.checks is not None and checker is not None:
        record["unsupported_shown"] = audit_shown(answer, question.question, checker)
    return record


def answer_fields(answer: Answer) -> dict[str, Any]:
    """What an answer said: its text, refusal, citations, timings and claim checks."""
    return {
        "answer": answer.answer,
        "refused": answer.refused,
        "citations": [
            {"n": c.n, "doc_id": c.doc_id, "quote": c.quote, "start": c.start, "end": c.end} for c in answer.citations
        ],
        "timings_ms": answer.timings_ms,
        "checks": [c.model_dump(mode="json") for c in answer.checks] if answer.checks is not None else None,
        "sources_differ": SOURCES_DIFFER_EN in answer.answer or SOURCES_DIFFER_KO in answer.answer,
    }


def audit_shown(answer: Answer, question: str, checker: ClaimChecker) -> list[str]:
    """The model's sentences shown as supported whose claims their shown citations' quotes do not hold, checked
    again on the final answer (after renumbering): the figure that has to stay 0."""
    supported = {c.sentence.rstrip(".!?。") for c in answer.checks or [] if c.verdict == "supported"}
    quotes = {c.n: c.quote for c in answer.citations}
    failures = []
    for match in _SHOWN_SENTENCE.finditer(answer.answer):
        sentence = _CITATION_MARKER.sub("", match.group()).strip().rstrip(".!?。")
        if sentence not in supported:
            continue  # a quoted evidence sentence, or a lead-in
        cited = [quotes[int(n)] for n in re.findall(r"\d+", match.group(1)) if int(n) in quotes]
        if checker.unsupported(sentence, cited, question):
            failures.append(sentence)
    return failures


def rescored(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record with its answer scores (and its extractive twin's) computed again from its answers."""
    record = {**record, **score_answer(record)}
    if isinstance(record.get(EXTRACTIVE), dict):
        twin = record[EXTRACTIVE]
        record[EXTRACTIVE] = {**twin, **score_answer({**record, **twin})}
    return record


def score_answer(record: dict[str, Any]) -> dict[str, Any]:
    """Answer, citation, refusal and claim-check scores of one record (pure)."""
    gold, relevant = record["answers"], record["relevant_doc_ids"]
    text = "" if record["refused"] else _CITATION_MARKER.sub("", record["answer"]).strip()
    contains = m.contains_answer(text, gold)
    cited_ids = [c["doc_id"] for c in record["citations"]]
    cited_quotes = [c["quote"] for c in record["citations"]]
    if record["answerable"]:
        correct = not record["refused"] and (contains == 1.0 if gold else bool(set(cited_ids) & set(relevant)))
    else:
        correct = bool(record["refused"])
    checks = record.get("checks") or []
    return {
        "f1": m.answer_f1(text, gold),
        "char_f1": m.char_f1(text, gold),
        "em": m.answer_exact_match(text, gold),
        "contains": contains,
        "correct": correct,
        "citation_precision": m.citation_precision(cited_ids, cited_quotes, relevant, gold),
        "citation_recall": m.citation_recall(cited_ids, relevant),
        "verdicts": {verdict: sum(1 for c in checks if c["verdict"] == verdict) for verdict in VERDICTS},
    }


# --- results log (resumable) -----------------------------------------------------------------------


class ResultLog:
    """results.jsonl: one JSON object per question, appended as produced; the last line of an id wins."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return records
        for line_no, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                records[str(record["id"])] = record
            except (json.JSONDecodeError, KeyError, TypeError):
                # a line cut short by a kill: that question is simply evaluated again
                logger.warning("%s:%d: unreadable result line skipped", self.path, line_no)
        return records

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8", newline="\n") as out:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        """One line per question (drops superseded lines), written atomically."""
        with staged_file(self.path) as partial, partial.open("w", encoding="utf-8", newline="\n") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")


def check_run_identity(out_dir: Path, identity: dict[str, Any], *, fresh: bool) -> None:
    """Results in `out_dir` are only resumed by a run over the same corpus, questions and settings."""
    run_file = out_dir / RUN_FILE
    if fresh:
        for name in (RESULTS_FILE, RUN_FILE):
            (out_dir / name).unlink(missing_ok=True)
    if run_file.exists():
        stored = json.loads(run_file.read_text(encoding="utf-8"))
        changed = [key for key, value in identity.items() if stored.get(key) != value]
        if changed:
            raise InputError(
                f"{out_dir}: holds results of another run ({', '.join(changed)} differ); "
                "choose another --out or pass --fresh to start over"
            )
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(identity, indent=2) + "\n", encoding="utf-8")


# --- metrics (pure) --------------------------------------------------------------------------------


def retrieval_metrics(rankings: Sequence[Sequence[str]], relevant: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Document-level recall@1/5/10, MRR@10, nDCG@10 and the recall@k curve for k = 1..10."""
    curve = [
        m.mean_or_none(m.recall_at_k(r, rel, k) for r, rel in zip(rankings, relevant, strict=True))
        for k in range(1, DEPTH_DOCS + 1)
    ]
    pairs = list(zip(rankings, relevant, strict=True))
    return {
        "recall@1": curve[0],
        "recall@5": curve[4],
        "recall@10": curve[9],
        "mrr@10": m.mean_or_none(m.reciprocal_rank(r, rel, DEPTH_DOCS) for r, rel in pairs),
        "ndcg@10": m.mean_or_none(m.ndcg_at_k(r, rel, DEPTH_DOCS) for r, rel in pairs),
        "recall_at_k": curve,
        "n": len(pairs),
    }


def compute_metrics(records: Sequence[dict[str, Any]], systems: Sequence[str]) -> dict[str, Any]:
    """Everything in metrics.json except `setup`: ours at the top level, every system under `systems`."""
    scored = [r for r in records if r["answerable"] and r["relevant_doc_ids"]]
    result: dict[str, Any] = {
        "retrieval": retrieval_metrics(
            [r["retrieved_doc_ids"] for r in scored], [r["relevant_doc_ids"] for r in scored]
        ),
        **answer_metrics(records),
        "n_questions": len(records),
        "systems": {name: _system_metrics(name, scored) for name in systems},
    }
    if any(EXTRACTIVE in r for r in records):
        # the generative run's own baseline: the same questions answered by quoting, no LLM
        baseline = [{**r, **r[EXTRACTIVE]} for r in records if EXTRACTIVE in r]
        result["answer_baselines"] = {EXTRACTIVE: answer_metrics(baseline)}
    return result


def answer_metrics(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Answer, citation, refusal, claim-check and latency figures of one way of answering."""
    scored = [r for r in records if r["answerable"] and r["relevant_doc_ids"]]
    with_gold = [r for r in records if r["answerable"] and r["answers"]]
    totals = [r["timings_ms"]["total"] for r in records if "total" in r["timings_ms"]]
    return {
        "answer": {
            "f1": m.mean_or_none(r["f1"] for r in with_gold),
            "char_f1": m.mean_or_none(r.get("char_f1") for r in with_gold),
            "exact_match": m.mean_or_none(r["em"] for r in with_gold),
            "contains": m.mean_or_none(r["contains"] for r in with_gold),
            "correct": m.mean_or_none(float(r["correct"]) for r in records),
            "n": len(with_gold),
        },
        "citations": {
            "precision": m.mean_or_none(r["citation_precision"] for r in records),
            "recall": m.mean_or_none(r["citation_recall"] for r in scored),
        },
        "refusal": _refusal_summary(records),
        "claims": claim_metrics(records),
        "latency_ms": {**m.latency_summary(totals), "stages": _stage_latencies(records)},
    }


def claim_metrics(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Shares of the generated sentences the claim check kept, repaired and dropped; the sentences shown as
    supported that a second check on the final answer finds unsupported; answers that said sources differ."""
    checked = [r for r in records if r.get("checks") is not None]
    counts = {verdict: sum(r.get("verdicts", {}).get(verdict, 0) for r in checked) for verdict in VERDICTS}
    total = sum(counts.values())
    return {
        **{verdict: (count / total if total else None) for verdict, count in counts.items()},
        "sentences": total,
        "answers_checked": len(checked),
        "answers_all_supported": sum(
            1 for r in checked if r.get("verdicts", {}).get("supported", 0) == len(r["checks"]) and r["checks"]
        ),
        "unsupported_shown": sum(len(r.get("unsupported_shown", [])) for r in checked),
        "sources_differ": sum(1 for r in records if r.get("sources_differ")),
    }


def _refusal_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "accuracy": m.mean_or_none(float(m.refusal_correct(r["refused"], r["answerable"])) for r in records),
        "refused": sum(1 for r in records if r["refused"]),
        "false_refusals": sum(1 for r in records if r["refused"] and r["answerable"]),
        "false_answers": sum(1 for r in records if not r["refused"] and not r["answerable"]),
        "n_unanswerable": sum(1 for r in records if not r["answerable"]),
    }


def _stage_latencies(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    stages = sorted({stage for r in records for stage in r["timings_ms"] if stage != "total"})
    return {
        stage: m.latency_summary([r["timings_ms"][stage] for r in records if stage in r["timings_ms"]])
        for stage in stages
    }


def _system_metrics(name: str, scored: Sequence[dict[str, Any]]) -> dict[str, Any]:
    runs = [r if name == OURS else r["baselines"][name] for r in scored]
    summary = m.latency_summary([run["retrieval_ms"] for run in runs])
    return {
        "retrieval": retrieval_metrics(
            [run["retrieved_doc_ids"] for run in runs], [r["relevant_doc_ids"] for r in scored]
        ),
        "latency_ms": {"p50": summary["p50"], "p95": summary["p95"]},
    }


def json_safe(value: Any, digits: int = 4) -> Any:
    """NaN/inf → None (not valid JSON), floats rounded, recursively."""
    if isinstance(value, dict):
        return {k: json_safe(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, digits) for v in value]
    if isinstance(value, float):
        return None if value != value or value in (float("inf"), float("-inf")) else round(value, digits)
    return value


# --- the run ---------------------------------------------------------------------------------------


class _Evaluator:
    """Answers questions with the service and ranks them with every system, lazily building baselines."""

    def __init__(
        self,
        service: RagService,
        top_k: int | None,
        baseline_factories: dict[str, Callable[[], RankingSystem]],
        extractive: RagService | None = None,
    ) -> None:
        self.service, self.top_k = service, top_k
        self.ours = RagRanking(service, "hybrid")
        self._factories = baseline_factories
        self._systems: dict[str, RankingSystem] = {}
        self.extractive = extractive  # generative runs: the same questions answered by quoting, as a baseline

    def evaluate(self, question: Question) -> dict[str, Any]:
        ranked = self.ours.rank(question.question)
        answer = self.service.answer(question.question, top_k=self.top_k)
        record = answer_record(question, answer, ranked, self.service.answerer.checker)
        return self.complete(record)

    @property
    def baseline_names(self) -> list[str]:
        return list(self._factories)

    def missing(self, record: dict[str, Any]) -> list[str]:
        wanted = [*self._factories, *([EXTRACTIVE] if self.extractive else [])]
        return [name for name in wanted if name not in record.get("baselines", {}) and name not in record]

    def complete(self, record: dict[str, Any]) -> dict[str, Any]:
        """Add the baselines this run asks for and the record lacks (retrieval; the extractive answer)."""
        for name in self.missing(record):
            if name == EXTRACTIVE and self.extractive is not None:
                answer = self.extractive.answer(record["question"], top_k=self.top_k)
                baseline = {**record, **answer_fields(answer)}
                record[EXTRACTIVE] = {**answer_fields(answer), **score_answer(baseline)}
                continue
            ids, ms = self._system(name).rank(record["question"])
            record.setdefault("baselines", {})[name] = {"retrieved_doc_ids": ids, "retrieval_ms": ms}
        return record

    def _system(self, name: str) -> RankingSystem:
        if name not in self._systems:
            self._systems[name] = self._factories[name]()
        return self._systems[name]

    def index_info(self) -> dict[str, dict[str, Any]]:
        """What the baselines built in this run (e.g. llama-index's node count and build time)."""
        return {
            name: dict(getattr(system, "info", {}))
            for name, system in self._systems.items()
            if getattr(system, "info", None)
        }


def run_evaluation(
    config: RunConfig, settings: Settings, *, embedder: Embedder | None = None, llm: LLM | None = None
) -> RunOutcome:
    """The whole `eval run`. Bad inputs raise InputError ("FILE:LINE: ..."), runtime failures other RagErrors.
    `embedder` and `llm` replace the configured ones (tests hand in fakes)."""
    started = time.perf_counter()
    try:
        documents, questions = load_eval_set(config.corpus, config.questions)
    except ValueError as exc:  # "FILE:LINE: what is wrong"
        raise InputError(str(exc)) from exc
    selected = sample_questions(questions, config.limit, config.seed)
    settings = settings_for_mode(settings, config.mode)
    cache_dir = config.cache_dir or default_cache_dir(settings)
    corpus_key = file_digest([config.corpus])
    service = open_eval_collection(settings, corpus_key, cache_dir, embedder=embedder, llm=llm)
    try:
        fingerprint = settings_fingerprint(service, config.mode, config.top_k)
        questions_key = file_digest([config.questions]) if config.questions else corpus_key
        identity = {"corpus_sha256": corpus_key, "questions_sha256": questions_key, "settings": fingerprint}
        check_run_identity(config.out_dir, identity, fresh=config.fresh)
        articles = [to_article(d) for d in documents]
        ingest_report = ingest_corpus(service, articles)
        evaluator = _Evaluator(
            service,
            config.top_k,
            _baseline_factories(service, articles, config.baselines),
            extractive_twin(service) if config.mode == "generative" else None,
        )
        records, computed = _evaluate_all(evaluator, selected, ResultLog(config.out_dir / RESULTS_FILE))
        systems = [OURS, *evaluator.baseline_names]
        metrics = compute_metrics(records, systems)
        for name, info in evaluator.index_info().items():
            metrics["systems"][name]["index"] = info
        metrics["setup"] = _setup(config, service, documents, records, fingerprint, ingest_report, started)
    finally:
        service.close()
    metrics = json_safe(metrics)
    write_report(config.out_dir, metrics, records)
    return RunOutcome(metrics=metrics, out_dir=config.out_dir, computed=computed)


def extractive_twin(service: RagService) -> RagService:
    """A service that answers extractively from the same store, embedder and evidence selector (sentence vectors
    are computed once for both). Its store is the generative service's: closing that one closes both."""
    twin = RagService(settings_for_mode(service.settings, EXTRACTIVE), embedder=service.embedder, store=service.store)
    twin.answerer.selector = service.answerer.selector
    return twin


def _baseline_factories(
    service: RagService, articles: Sequence[Article], wanted: bool
) -> dict[str, Callable[[], RankingSystem]]:
    if not wanted:
        return {}

    def llamaindex() -> RankingSystem:
        return LlamaIndexRanking.build(articles, service.embedder, depth=DEPTH_CHUNKS, max_docs=DEPTH_DOCS)

    return {
        "sparse": lambda: RagRanking(service, "sparse"),
        "dense": lambda: RagRanking(service, "dense"),
        "llamaindex": llamaindex,
    }


def _evaluate_all(
    evaluator: _Evaluator, selected: Sequence[Question], log: ResultLog
) -> tuple[list[dict[str, Any]], int]:
    # answers are kept, scores recomputed: a resumed run scores every answer with the metrics of this code
    existing = {question_id: rescored(record) for question_id, record in log.load().items()}
    todo = [q for q in selected if q.id not in existing or evaluator.missing(existing[q.id])]
    if len(todo) < len(selected):
        logger.info("resuming: %d of %d questions already in %s", len(selected) - len(todo), len(selected), log.path)
    with progress_bar(total=len(todo), desc="questions", unit="q") as bar:
        for question in todo:
            previous = existing.get(question.id)
            record = evaluator.complete(previous) if previous else evaluator.evaluate(question)
            log.append(record)
            existing[question.id] = record
            bar.update(1)
    selected_ids = {q.id for q in selected}
    log.rewrite([existing[q.id] for q in selected] + [r for i, r in existing.items() if i not in selected_ids])
    return [existing[q.id] for q in selected], len(todo)


def _setup(
    config: RunConfig,
    service: RagService,
    documents: Sequence[CorpusDocument],
    records: Sequence[dict[str, Any]],
    fingerprint: str,
    ingest: IngestReport,
    started: float,
) -> dict[str, Any]:
    return {
        "corpus": str(config.corpus),
        "questions": str(config.questions) if config.questions else None,
        "n_documents": len(documents),
        "n_questions": len(records),
        "n_answerable": sum(1 for r in records if r["answerable"]),
        "limit": config.limit,
        "seed": config.seed,
        "mode": config.mode,
        "top_k": config.top_k or service.settings.retrieval.top_k,
        "model": service.embedder.model_id,
        "settings_fingerprint": fingerprint,
        "collection": service.settings.collection,
        "chunks": service.store.count_chunks(),
        "ingest": {
            "added": ingest.added + ingest.updated,
            "unchanged": ingest.unchanged,
            "seconds": round(ingest.seconds, 1),
        },
        "depth": {"documents": DEPTH_DOCS, "chunks": DEPTH_CHUNKS},
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_cores": os.cpu_count(),
        "load_average": load_average(),
        "seconds": round(time.perf_counter() - started, 1),
    }
