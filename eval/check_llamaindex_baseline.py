"""Check the report's llama-index baseline against the same pipeline written by hand (issue #4).

    python -m eval.check_llamaindex_baseline [--limit N] [--prefixes e5|none] [--report DIR] [--json]

"By hand" is what a user writes from the llama-index docs: one `Document` per KorQuAD paragraph (the ids our
loader gives, the article title as metadata), `VectorStoreIndex.from_documents` with the default
`SentenceSplitter` and the default in-memory `SimpleVectorStore`, a minimal `BaseEmbedding` over
sentence-transformers (llama-index-embeddings-huggingface is not installed), and
`index.as_retriever(similarity_top_k=...)`. Nothing of eval/baselines.py or rag/'s retrieval is used for it;
only the data loading and question sample (eval.datasets, eval.bench's file and seed) and the scoring
(eval.metrics) are shared, so that both sides answer the same questions and are scored the same way.

The reference is the report's baseline: run in-process through eval.baselines (default), or read from a report
folder's results.jsonl (`--report reports/korquad`). Both are scored per question; a difference is "within
noise" when the paired bootstrap 95 % interval of (by hand − reference) over the questions contains 0.
"""

from __future__ import annotations

from rag.cli import limit_native_threads

limit_native_threads()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from eval import metrics as m  # noqa: E402
from eval.baselines import LlamaIndexRanking  # noqa: E402
from eval.bench import KORQUAD, shared_file  # noqa: E402
from eval.datasets import CorpusDocument, Question, load_squad, sample_questions  # noqa: E402
from eval.report import format_table  # noqa: E402
from eval.runner import DEPTH_CHUNKS, to_article  # noqa: E402
from rag.config import load_settings  # noqa: E402
from rag.errors import RagError  # noqa: E402
from rag.offline import configure_offline_environment  # noqa: E402
from rag.service import RagService  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = PROJECT_ROOT / "models" / "multilingual-e5-small"
E5_PREFIXES = {"e5": ("query: ", "passage: "), "none": ("", "")}
DEPTH_DOCS = 10  # distinct documents scored, as in the report
TOP_K = 30  # nodes fetched to find them, as in the report
METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10")
WITHIN, OUTSIDE = "within noise", "outside noise"


# --- scoring and noise (pure) ----------------------------------------------------------------------


def per_question_scores(rankings: Sequence[Sequence[str]], relevant: Sequence[Sequence[str]]) -> dict[str, list[float]]:
    """recall@1/5/10 and reciprocal rank@10 of every question, scored by eval.metrics."""
    pairs = list(zip(rankings, relevant, strict=True))
    return {
        "recall@1": [m.recall_at_k(r, rel, 1) for r, rel in pairs],
        "recall@5": [m.recall_at_k(r, rel, 5) for r, rel in pairs],
        "recall@10": [m.recall_at_k(r, rel, 10) for r, rel in pairs],
        "mrr@10": [m.reciprocal_rank(r, rel, DEPTH_DOCS) for r, rel in pairs],
    }


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean (sample standard deviation / √n): the noise of one n-question measurement."""
    if len(values) < 2:
        return float("nan")
    return float(np.std(np.asarray(values, dtype=float), ddof=1) / np.sqrt(len(values)))


def paired_bootstrap_ci(
    reference: Sequence[float], candidate: Sequence[float], *, resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(candidate − reference), resampling questions (pairs stay together)."""
    if len(reference) != len(candidate) or not reference:
        raise ValueError(f"need two equally long, non-empty score lists, got {len(reference)} and {len(candidate)}")
    differences = np.asarray(candidate, dtype=float) - np.asarray(reference, dtype=float)
    draws = np.random.default_rng(seed).integers(0, len(differences), size=(resamples, len(differences)))
    means = differences[draws].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    reference: float
    by_hand: float
    difference: float  # by hand − reference
    ci_low: float
    ci_high: float
    standard_error: float  # of the reference figure alone
    verdict: str


def compare_metric(
    metric: str, reference: Sequence[float], by_hand: Sequence[float], *, resamples: int = 2000, seed: int = 0
) -> MetricComparison:
    """One metric of both systems on the same questions, with the paired interval and its verdict."""
    low, high = paired_bootstrap_ci(reference, by_hand, resamples=resamples, seed=seed)
    ref_mean, hand_mean = float(np.mean(reference)), float(np.mean(by_hand))
    return MetricComparison(
        metric=metric,
        reference=ref_mean,
        by_hand=hand_mean,
        difference=hand_mean - ref_mean,
        ci_low=low,
        ci_high=high,
        standard_error=standard_error(reference),
        verdict=WITHIN if low <= 0.0 <= high else OUTSIDE,
    )


def overall_verdict(comparisons: Sequence[MetricComparison]) -> str:
    """Within noise only if every metric is."""
    return WITHIN if all(c.verdict == WITHIN for c in comparisons) else OUTSIDE


def distinct_doc_ids(ref_doc_ids: Sequence[str | None], k: int = DEPTH_DOCS) -> list[str]:
    """Document ids of retrieved nodes in rank order, each once, at most `k` (nodes without a source skipped)."""
    return m.distinct_top_k([doc_id for doc_id in ref_doc_ids if doc_id is not None], k)


# --- the pipeline by hand --------------------------------------------------------------------------


def sentence_transformer_embedding(model_path: Path, query_prefix: str, passage_prefix: str) -> Any:
    """A minimal llama-index embedding model: sentence-transformers, unit vectors, e5 prefixes if given."""
    # llama-index and sentence-transformers take seconds to import; only the check needs them
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.embeddings import BaseEmbedding
    from sentence_transformers import SentenceTransformer

    class SentenceTransformerEmbedding(BaseEmbedding):
        _model: Any = PrivateAttr()
        _query_prefix: str = PrivateAttr()
        _passage_prefix: str = PrivateAttr()

        def __init__(self) -> None:
            super().__init__(model_name=str(model_path))
            self._model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
            self._query_prefix, self._passage_prefix = query_prefix, passage_prefix

        def _encode(self, texts: list[str]) -> list[list[float]]:
            return self._model.encode(texts, normalize_embeddings=True, show_progress_bar=False).tolist()

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._encode([self._query_prefix + query])[0]

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._encode([self._passage_prefix + text])[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self._encode([self._passage_prefix + text for text in texts])

    return SentenceTransformerEmbedding()


def by_hand_rankings(
    documents: Sequence[CorpusDocument], questions: Sequence[Question], embed_model: Any, *, top_k: int
) -> tuple[list[list[str]], int]:
    """Rankings (distinct document ids) of every question, and the number of nodes in the index."""
    # llama-index and sentence-transformers take seconds to import; only the check needs them
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter

    docs = [Document(text=d.text, id_=d.id, metadata={"title": d.title} if d.title else {}) for d in documents]
    index = VectorStoreIndex.from_documents(
        docs, transformations=[SentenceSplitter()], embed_model=embed_model, show_progress=True
    )
    retriever = index.as_retriever(similarity_top_k=top_k)
    rankings = [distinct_doc_ids([r.node.ref_doc_id for r in retriever.retrieve(q.question)]) for q in questions]
    return rankings, len(index.docstore.docs)


# --- the reference: the report's baseline ----------------------------------------------------------


def reference_rankings_in_process(
    documents: Sequence[CorpusDocument], questions: Sequence[Question]
) -> list[list[str]]:
    """The project's llama-index baseline exactly as `python -m eval bench-korquad` builds it."""
    embedder = RagService(load_settings(), consult_collection=False).embedder
    articles = [to_article(d) for d in documents]
    system = LlamaIndexRanking.build(articles, embedder, depth=DEPTH_CHUNKS, max_docs=DEPTH_DOCS)
    return [system.rank(q.question)[0] for q in questions]


def reference_rankings_from_report(report_dir: Path, questions: Sequence[Question]) -> list[list[str]]:
    """The llama-index rankings a report folder's results.jsonl holds for these questions."""
    path = report_dir / "results.jsonl"
    if not path.is_file():
        raise ValueError(f"{path}: no such file (give the folder `python -m eval bench-korquad` wrote)")
    records = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            records[str(record["id"])] = record
    missing = [q.id for q in questions if "llamaindex" not in records.get(q.id, {}).get("baselines", {})]
    if missing:
        raise ValueError(f"{path}: no llama-index ranking for {len(missing)} of the questions (e.g. {missing[0]})")
    return [list(records[q.id]["baselines"]["llamaindex"]["retrieved_doc_ids"]) for q in questions]


# --- command line ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.check_llamaindex_baseline",
        description="Compare the report's llama-index baseline on KorQuAD 1.0 dev with the same pipeline by hand.",
    )
    parser.add_argument("--limit", type=int, default=500, metavar="N", help="questions sampled (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of that sample (default %(default)s, as the report)")
    parser.add_argument(
        "--prefixes",
        choices=sorted(E5_PREFIXES),
        default="e5",
        help="by hand: e5 'query: '/'passage: ' prefixes, or none as in the report's baseline (default %(default)s)",
    )
    parser.add_argument("--top-k", type=int, default=TOP_K, help="by hand: similarity_top_k (default %(default)s)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="sentence-transformers folder")
    parser.add_argument("--corpus", type=Path, help="KorQuAD 1.0 dev JSON (default: the shared data)")
    parser.add_argument("--report", type=Path, metavar="DIR", help="read the reference from DIR/results.jsonl")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print only a JSON object on stdout")
    return parser


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    configure_offline_environment()  # local model folder, tiktoken cache inside llama-index-core
    corpus = args.corpus or shared_file(KORQUAD)
    documents, questions = load_squad(corpus)
    selected = [q for q in sample_questions(questions, args.limit, args.seed) if q.answerable and q.relevant_doc_ids]
    query_prefix, passage_prefix = E5_PREFIXES[args.prefixes]
    embed_model = sentence_transformer_embedding(args.model, query_prefix, passage_prefix)
    by_hand, nodes = by_hand_rankings(documents, selected, embed_model, top_k=args.top_k)
    if args.report:
        reference, source = reference_rankings_from_report(args.report, selected), str(args.report / "results.jsonl")
    else:
        reference, source = reference_rankings_in_process(documents, selected), "eval.baselines, run in-process"
    relevant = [q.relevant_doc_ids for q in selected]
    ref_scores, hand_scores = per_question_scores(reference, relevant), per_question_scores(by_hand, relevant)
    comparisons = [
        compare_metric(name, ref_scores[name], hand_scores[name], resamples=args.resamples) for name in METRICS
    ]
    return {
        "corpus": str(corpus),
        "documents": len(documents),
        "questions": len(selected),
        "seed": args.seed,
        "by_hand": {"prefixes": args.prefixes, "top_k": args.top_k, "nodes": nodes},
        "reference": source,
        "identical_rankings": sum(1 for a, b in zip(reference, by_hand, strict=True) if a == b),
        "same_first_document": sum(1 for a, b in zip(reference, by_hand, strict=True) if a[:1] == b[:1]),
        "comparison": [asdict(c) for c in comparisons],
        "verdict": overall_verdict(comparisons),
    }


def format_check(result: dict[str, Any]) -> str:
    rows = [
        [
            c["metric"],
            f"{c['reference']:.3f}",
            f"{c['by_hand']:.3f}",
            f"{c['difference']:+.3f}",
            f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]",
            f"{c['standard_error']:.3f}",
            c["verdict"],
        ]
        for c in result["comparison"]
    ]
    headers = ["metric", "report", "by hand", "difference", "paired 95% CI", "SE (report)", ""]
    hand = result["by_hand"]
    return (
        f"KorQuAD 1.0 dev: {result['questions']} questions (seed {result['seed']}), {result['documents']} paragraphs\n"
        f"report: {result['reference']}\n"
        f"by hand: VectorStoreIndex + SentenceSplitter(), prefixes {hand['prefixes']}, "
        f"similarity_top_k {hand['top_k']}, {hand['nodes']} nodes\n\n"
        f"{format_table(headers, rows)}\n\n"
        f"identical top-{DEPTH_DOCS} rankings: {result['identical_rankings']} of {result['questions']}; "
        f"same first document: {result['same_first_document']}\n"
        f"verdict: {result['verdict']}\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.limit < 1 or args.top_k < 1 or args.resamples < 1:
        sys.stderr.write("error: --limit, --top-k and --resamples must be at least 1\n")
        return 2
    try:
        result = run_check(args)
    except (ValueError, OSError, RagError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if args.json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(format_check(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
