"""`python -m eval`: evaluate the pipeline on a QA set (`run`) and the benchmarks (`bench-*`).

Exit codes: 0 done, 1 a runtime failure (store, model), 2 bad input or configuration (one line on stderr).
"""

from __future__ import annotations

from rag.cli import limit_native_threads

limit_native_threads()

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from eval import bench, bench_answer, bench_hostile, bench_refusal, bench_scale, bench_serve  # noqa: E402
from eval.datasets import write_jsonl  # noqa: E402
from eval.feedback import feedback_questions  # noqa: E402
from eval.report import format_summary  # noqa: E402
from eval.runner import RunConfig, resolve_mode, run_evaluation  # noqa: E402
from rag.cli import EXIT_OK, EXIT_USAGE, configure_logging, fail, print_json  # noqa: E402
from rag.config import Settings, load_settings  # noqa: E402
from rag.embed.base import Embedder  # noqa: E402
from rag.errors import ConfigurationError, InputError, RagError  # noqa: E402
from rag.feedback import FeedbackStore  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval",
        description="Evaluate retrieval, answers, citations, refusals and latency on question sets.",
        epilog="Settings come from RAG_* environment variables or a .env file (see `python -m rag config`).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands)
    _add_feedback(commands)
    korquad = commands.add_parser("bench-korquad", help="KorQuAD 1.0 dev: 964 paragraphs, 500 questions, baselines")
    korquad.add_argument(
        "--out", type=Path, default=Path("reports/korquad"), help="report folder (default %(default)s)"
    )
    korquad.add_argument("--limit", type=int, default=500, metavar="N", help="questions sampled (default %(default)s)")
    korquad.add_argument("--fresh", action="store_true", help="discard earlier results in the report folder")
    korquad.add_argument("--json", action="store_true", help="print only the metrics JSON on stdout")
    ingest = commands.add_parser("bench-ingest", help="ingest throughput vs raw embedding throughput (Wikinews CSV)")
    ingest.add_argument(
        "--workers",
        type=_int_list,
        default=[1],
        metavar="K[,K…]",
        help="ingest once per worker count, same run (`python -m ingest --workers K`; default 1)",
    )
    ingest.add_argument("--limit", type=int, metavar="N", help="only the CSV's first N articles (default: all 644)")
    ingest.add_argument("--json", action="store_true", help="print only a JSON object on stdout")
    retrieval = commands.add_parser("bench-retrieval", help="retrieval quality and latency on shared data")
    retrieval.add_argument(
        "--limit", type=int, metavar="N", help="sample N KorQuAD questions (default: all 5,774 dev questions)"
    )
    retrieval.add_argument(
        "--only",
        action="append",
        choices=["korquad", "cross-lingual", "sample", "latency"],
        help="run only this part (repeatable; default all)",
    )
    retrieval.add_argument("--json", action="store_true", help="print only a JSON object on stdout")
    answer = commands.add_parser("bench-answer", help="answer latency (first token, total) per LLM backend")
    answer.add_argument(
        "--backends", nargs="+", default=["none", "local"], choices=["none", "local", "openai"], help="backends"
    )
    answer.add_argument("--repeats", type=int, default=2, metavar="N", help="passes over the questions")
    answer.add_argument("--json", action="store_true", help="print only a JSON object on stdout")
    _add_bench_scale(commands)
    serve = commands.add_parser(
        "bench-serve", help="clients asking the running app at once: throughput, p50/p95/p99, 503s"
    )
    serve.add_argument("--clients", type=int, default=16, metavar="N", help="concurrent clients, extractive")
    serve.add_argument("--seconds", type=float, default=30, metavar="T", help="measured time, extractive")
    serve.add_argument("--llm-clients", type=int, default=2, metavar="N", help="concurrent clients, local LLM")
    serve.add_argument("--llm-seconds", type=float, default=60, metavar="T", help="measured time, local LLM")
    serve.add_argument("--url", help="measure this running app (e.g. http://127.0.0.1:8000) instead of starting one")
    serve.add_argument("--json", action="store_true", help="print only a JSON object on stdout")
    refusal = commands.add_parser("bench-refusal", help="measure the refusal thresholds on in/out-of-index questions")
    refusal.add_argument("--per-side", type=int, default=100, metavar="N", help="questions with / without source")
    refusal.add_argument("--json", action="store_true", help="print only a JSON object on stdout")
    hostile = commands.add_parser(
        "bench-hostile", help="ingest time of crafted files (regex bombs, deep nesting, a PDF bomb) vs normal ones"
    )
    hostile.add_argument("--size", type=int, default=1_000_000, metavar="BYTES", help="file size (default %(default)s)")
    hostile.add_argument("--only", action="append", metavar="CASE", help="run only this case (repeatable)")
    hostile.add_argument("--json", action="store_true", help="print only a JSON object on stdout")
    return parser


def _add_bench_scale(commands: Any) -> None:
    scale = commands.add_parser(
        "bench-scale",
        help="embedded engines on synthetic 10k / 100k / 1M-chunk collections: writes, open, memory, latency",
        description="Build synthetic collections (real Korean chunks resampled, random unit vectors) in each "
        "embedded engine and report write throughput, time to open, memory and hybrid query latency. Each engine "
        "and size runs in processes of its own; a run past the time or memory budget is stopped and reported.",
    )
    scale.add_argument(
        "--sizes",
        type=_int_list,
        default=[10_000, 100_000, 1_000_000],
        help="chunks per collection (default %(default)s)",
    )
    scale.add_argument(
        "--engines",
        type=_engine_list,
        default=["local", "edge"],
        help="comma-separated: local, edge, edge-int8 (Edge with int8 vectors); default local,edge",
    )
    scale.add_argument(
        "--max-write-minutes", type=float, default=60.0, metavar="M", help="write budget per engine and size"
    )
    scale.add_argument("--max-memory-gb", type=float, default=16.0, metavar="G", help="resident memory cap per process")
    scale.add_argument("--queries", type=int, default=200, metavar="N", help="questions timed per kind (default 200)")
    scale.add_argument("--json", action="store_true", help="print only a JSON object on stdout")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers separated by commas") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive whole numbers separated by commas")
    return values


def _engine_list(text: str) -> list[str]:
    engines = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [engine for engine in engines if engine not in ("local", "edge", "edge-int8")]
    if not engines or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: the engines are local, edge and edge-int8")
    return engines


def _add_run(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="ingest a corpus into a fresh collection, answer every question, write a report",
        description="Ingest CORPUS into a collection of its own, answer every question, score, and write "
        "metrics.json, report.md, results.jsonl and plots to --out. Re-running with the same --out resumes.",
    )
    run.add_argument("--corpus", type=Path, required=True, help="corpus JSONL, or a SQuAD/KorQuAD JSON file")
    run.add_argument("--questions", type=Path, help="questions JSONL (not with a SQuAD/KorQuAD corpus)")
    run.add_argument("--out", type=Path, help="report folder (default reports/eval-<timestamp>)")
    run.add_argument("--limit", type=int, metavar="N", help="evaluate a random sample of N questions")
    run.add_argument("--seed", type=int, default=0, help="seed of that sample (default %(default)s)")
    run.add_argument(
        "--baselines", action="store_true", help="also measure sparse, dense and plain llama-index retrieval"
    )
    run.add_argument(
        "--mode",
        choices=["auto", "extractive", "generative"],
        default="auto",
        help="extractive: quote the best evidence sentences, no LLM; generative: the configured LLM writes the "
        "answer; auto (default): generative when RAG_LLM_BACKEND is local or openai, else extractive",
    )
    run.add_argument("--top-k", type=int, metavar="N", help="passages retrieved for answering (default from settings)")
    run.add_argument("--cache-dir", type=Path, help="folder of the evaluation collections (default storage/eval)")
    run.add_argument("--fresh", action="store_true", help="discard earlier results in --out instead of resuming")
    run.add_argument("--json", action="store_true", help="print only the metrics JSON object on stdout")


def _add_feedback(commands: Any) -> None:
    feedback = commands.add_parser(
        "feedback",
        help="export the chat page's thumbs up/down as test questions (JSONL)",
        description="Write the verdicts readers gave on the chat page (RAG_FEEDBACK_PATH) as questions JSONL "
        "for `eval run --questions`. Thumbs up: the answer (citation markers removed) as the gold answer, the "
        "cited documents as relevant, answerable unless the page refused. Thumbs down: the right answer is "
        "unknown, so `answers` and `relevant_doc_ids` are empty and `answerable` is true (the reader wanted an "
        "answer); review those before using them. Every record keeps `rating` (+1/-1), `comment`, "
        "`created_at` and what the page said (`system_answer`, `system_refused`, `cited_doc_ids`, `settings`), "
        "so evaluators can filter on them.",
    )
    feedback.add_argument("--export", type=Path, required=True, metavar="FILE", help="questions JSONL to write")
    feedback.add_argument(
        "--rating",
        choices=["up", "down", "all"],
        default="all",
        help="only thumbs up, only thumbs down, or all verdicts (default %(default)s)",
    )
    feedback.add_argument("--json", action="store_true", help="print only a JSON summary on stdout")


def main(argv: list[str] | None = None, *, settings: Settings | None = None, embedder: Embedder | None = None) -> int:
    """`settings` and `embedder` let tests run the CLI with fakes."""
    args = build_parser().parse_args(argv)
    try:
        settings = settings or load_settings()
        configure_logging(settings.log_level)
        problem = _check_numbers(args)
        if problem:
            return fail(problem)
        return _dispatch(args, settings, embedder)
    except (ConfigurationError, InputError) as exc:
        return fail(exc.message, EXIT_USAGE)
    except RagError as exc:
        return fail(exc.message, 1)
    except KeyboardInterrupt:
        return fail("interrupted; re-run the same command to resume", 130)


def _check_numbers(args: argparse.Namespace) -> str | None:
    if getattr(args, "limit", None) is not None and args.limit < 1:
        return "--limit must be at least 1"
    for name in ("clients", "llm_clients", "seconds", "llm_seconds"):
        if getattr(args, name, None) is not None and getattr(args, name) <= 0:
            return f"--{name.replace('_', '-')} must be positive"
    if getattr(args, "top_k", None) is not None and not 1 <= args.top_k <= 100:
        return "--top-k must be between 1 and 100"
    return None


def _dispatch(args: argparse.Namespace, settings: Settings, embedder: Embedder | None) -> int:
    if args.command == "run":
        return _run(args, settings, embedder)
    if args.command == "feedback":
        return _export_feedback(args, settings)
    if args.command == "bench-korquad":
        outcome = bench.bench_korquad(settings, out_dir=args.out, limit=args.limit, fresh=args.fresh, embedder=embedder)
        return _print_outcome(outcome.metrics, outcome.out_dir, args.json)
    if args.command == "bench-answer":
        bench_answer.run(args.backends, repeats=args.repeats, as_json=args.json)
        return 0
    if args.command == "bench-serve":
        bench_serve.run(
            settings,
            clients=args.clients,
            seconds=args.seconds,
            llm_clients=args.llm_clients,
            llm_seconds=args.llm_seconds,
            url=args.url,
            as_json=args.json,
        )
        return 0
    if args.command == "bench-refusal":
        bench_refusal.run(per_side=args.per_side, as_json=args.json)
        return 0
    if args.command == "bench-hostile":
        result = bench_hostile.run(settings, size=args.size, only=args.only)
        return _print_bench(result, bench_hostile.format_result(result), args.json)
    if args.command == "bench-scale":
        return _bench_scale(args, settings, embedder)
    if args.command == "bench-ingest":
        result = bench.bench_ingest(settings, embedder=embedder, workers=args.workers, limit=args.limit)
        return _print_bench(result, bench.format_ingest(result), args.json)
    parts = args.only or bench.RETRIEVAL_PARTS
    result = bench.bench_retrieval(settings, limit=args.limit, parts=parts, embedder=embedder)
    return _print_bench(result, bench.format_retrieval(result), args.json)


def _bench_scale(args: argparse.Namespace, settings: Settings, embedder: Embedder | None) -> int:

    limits = bench_scale.RunLimits(
        max_write_s=args.max_write_minutes * 60,
        max_memory_bytes=int(args.max_memory_gb * 1024**3),
        queries=args.queries,
    )
    result = bench_scale.bench_scale(
        settings,
        data_dir=bench.shared_data_dir(),
        cache_dir=bench.bench_cache_dir(settings),
        sizes=args.sizes,
        engines=args.engines,
        limits=limits,
        embedder=embedder,
        # each row as it is measured: a long run stopped half-way still leaves its figures in the log
        progress=lambda row: sys.stderr.write(
            f"bench-scale row: {json.dumps(asdict(row) | {'write_rate': row.write_rate})}\n"
        ),
    )
    return _print_bench(result, bench_scale.format_scale(result), args.json)


def _run(args: argparse.Namespace, settings: Settings, embedder: Embedder | None) -> int:
    for path in (args.corpus, args.questions):
        if path is not None and not path.is_file():
            return fail(f"{path}: no such file")
    out = args.out or Path("reports") / f"eval-{dt.datetime.now():%Y%m%d-%H%M%S}"
    config = RunConfig(
        corpus=args.corpus,
        questions=args.questions,
        out_dir=out,
        limit=args.limit,
        seed=args.seed,
        baselines=args.baselines,
        mode=resolve_mode(settings, args.mode),
        top_k=args.top_k,
        cache_dir=args.cache_dir,
        fresh=args.fresh,
    )
    outcome = run_evaluation(config, settings, embedder=embedder)
    return _print_outcome(outcome.metrics, outcome.out_dir, args.json)


def _export_feedback(args: argparse.Namespace, settings: Settings) -> int:
    source = settings.feedback.path
    if not source.is_file():
        return fail(f"{source}: no feedback yet (the chat page writes it; RAG_FEEDBACK_PATH names it)")
    try:
        count = write_jsonl(args.export, feedback_questions(FeedbackStore(source).entries(), args.rating))
    except OSError as exc:
        return fail(f"{args.export}: cannot be written ({exc.strerror or exc})")
    summary = {"questions": count, "out": str(args.export), "feedback": str(source)}
    if args.json:
        print_json(summary)
    else:
        sys.stdout.write(f"wrote {count} questions from {source} to {args.export}\n")
    return EXIT_OK


def _print_outcome(metrics: dict[str, Any], out_dir: Path, as_json: bool) -> int:
    if as_json:
        print_json(metrics)
    else:
        sys.stdout.write(format_summary(metrics) + f"\nreport: {out_dir / 'report.md'}\n")
    return EXIT_OK


def _print_bench(result: dict[str, Any], text: str, as_json: bool) -> int:
    if as_json:
        print_json(result)
    else:
        sys.stdout.write(text)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
