"""`python -m rag`: ask questions, provision models, show settings, check the installation."""

from __future__ import annotations

from rag.cli import limit_native_threads

limit_native_threads()

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from pydantic import ValidationError  # noqa: E402

from rag.calibration import E5_EMBEDDING, GEMMA_EMBEDDING  # noqa: E402
from rag.cli import EXIT_OK, EXIT_USAGE, configure_logging, fail, print_json, write_out  # noqa: E402
from rag.config import Settings, load_settings  # noqa: E402
from rag.doctor import format_checks, report, run_checks  # noqa: E402
from rag.embed.choice import describe_choice, resolve_settings  # noqa: E402
from rag.errors import ConfigurationError, RagError  # noqa: E402
from rag.provision.models import EngineMeasurement, provision  # noqa: E402
from rag.search.store import QdrantStore  # noqa: E402
from rag.service import RagService  # noqa: E402
from rag.types import SearchFilters  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rag",
        description="Question answering over policy news, with citations to the exact source sentence.",
        epilog="Settings come from RAG_* environment variables or a .env file; see `python -m rag config`.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ask = commands.add_parser("ask", help="answer a question from the indexed articles")
    ask.add_argument("question", help="the question, in Korean or English")
    ask.add_argument("--collection", help="collection to read (overrides RAG_COLLECTION)")
    ask.add_argument("--top-k", type=int, metavar="N", help="passages to retrieve (default from settings)")
    ask.add_argument("--source", help="only articles from this source")
    ask.add_argument("--date-from", type=dt.date.fromisoformat, metavar="YYYY-MM-DD", help="only articles on or after")
    ask.add_argument("--date-to", type=dt.date.fromisoformat, metavar="YYYY-MM-DD", help="only articles on or before")
    ask.add_argument("--json", action="store_true", help="print the same JSON object as POST /v1/answer")

    models = commands.add_parser(
        "models",
        help="provision model files offline (idempotent): the embedding model and the English→Korean keyword "
        "lexicon; the local LLM with --llm",
    )
    models.add_argument("--llm", action="store_true", help="also assemble the local LLM (GGUF, ~1.1 GB)")
    models.add_argument(
        "--embedding",
        choices=[E5_EMBEDDING, GEMMA_EMBEDDING],
        help="also provision this embedding model: embeddinggemma-300m (~1.2 GB download, better across "
        "languages, plus its ONNX export for fast questions, ~2 min once); default: the one RAG_MODELS_EMBEDDING names",
    )
    models.add_argument(
        "--remeasure",
        action="store_true",
        help="measure the embedding engines on this CPU again (done anyway when none is recorded, or when the "
        "recorded one was made on another CPU); `auto` takes the fastest",
    )
    models.add_argument("--json", action="store_true", help="print the provisioned paths as JSON")

    copy = commands.add_parser(
        "copy-collection",
        help="copy the configured collection into another store (engine or server) without embedding again",
        description="Copy every chunk (vectors and payload) and article record of the configured collection into "
        "another store: the other embedded engine in the same folder (--to-engine), or a Qdrant server (--to-url). "
        "Safe to run again; then point RAG_QDRANT_ENGINE or RAG_QDRANT_URL at the copy.",
    )
    copy.add_argument("--collection", help="collection to copy (overrides RAG_COLLECTION); the copy has the same name")
    target = copy.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-engine", choices=["local", "edge"], help="the embedded engine to copy into")
    target.add_argument("--to-url", metavar="URL", help="a Qdrant server to copy into (RAG_QDRANT_API_KEY is sent)")
    copy.add_argument("--json", action="store_true", help="print a JSON summary")

    config = commands.add_parser(
        "config",
        help="print the effective settings (secrets masked), the embedding model and engine `auto` chose, and why",
    )
    config.add_argument("--json", action="store_true", help="print as JSON (default is also JSON, indented)")

    doctor = commands.add_parser(
        "doctor",
        help="check the settings, the models, the store and the collection; one line per check with what to do",
        epilog="Exit status: 0 when nothing failed (warnings allowed), 1 when a check failed, 2 for bad settings.",
    )
    doctor.add_argument("--collection", help="collection to check (overrides RAG_COLLECTION)")
    doctor.add_argument("--json", action="store_true", help='print {"ok": bool, "checks": [...]} as JSON')
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        if args.command == "config":
            return _config(settings, args)
        if args.command == "models":
            return _models(settings, args)
        if args.command == "doctor":
            return _doctor(settings, args)
        if args.command == "copy-collection":
            return _copy_collection(settings, args)
        return _ask(settings, args)
    except ConfigurationError as exc:
        return fail(exc.message, EXIT_USAGE)
    except RagError as exc:
        return fail(exc.message, 1)


def _config(settings: Settings, args: argparse.Namespace) -> int:
    # the configured collection is not opened here (instant, and the app may hold the embedded store's lock)
    resolved, choice = resolve_settings(settings)
    payload = resolved.masked()
    payload["models"]["embedding"] = choice.summary()
    payload["embedding_choice"] = describe_choice(resolved, choice)
    if args.json:
        print_json(payload)
    else:
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
    return EXIT_OK


def _doctor(settings: Settings, args: argparse.Namespace) -> int:
    checks = run_checks(settings.with_overrides(collection=args.collection))
    outcome = report(checks)
    if args.json:
        print_json(outcome)
    else:
        write_out(format_checks(checks))
    return EXIT_OK if outcome["ok"] else 1


def _models(settings: Settings, args: argparse.Namespace) -> int:
    backend = settings.models.embedding_backend
    paths = provision(
        Path(settings.models.dir),
        llm=args.llm,
        embedding=args.embedding or settings.models.embedding,
        lexicon=settings.lexicon_path(),
        # RAG_MODELS_EMBEDDING_BACKEND=torch or openai: the ONNX exports (~4.2 GB of memory to make) are not wanted
        export_onnx=backend not in ("torch", "openai"),
        # a server computes the vectors: the local engines' speed does not matter
        measure=None
        if backend == "openai"
        else EngineMeasurement(
            threads=settings.models.threads,
            batch_size=settings.models.embedding_batch_size,
            remeasure=args.remeasure,
        ),
    )
    if args.json:
        print_json({name: str(path) for name, path in paths.items()})
    else:
        for name, path in paths.items():
            sys.stdout.write(f"{name}: {path}\n")
    return EXIT_OK


def _copy_collection(settings: Settings, args: argparse.Namespace) -> int:
    settings = settings.with_overrides(collection=args.collection)
    source = settings.qdrant
    target = source.model_copy(update={"engine": args.to_engine or source.engine, "url": args.to_url})
    same = target.url == source.url if target.url or source.url else target.engine == source.engine
    if same:
        return fail("that is the configured store itself; name the other engine (--to-engine) or a server (--to-url)")
    started = time.perf_counter()
    with QdrantStore(source, settings.collection) as origin, QdrantStore(target, settings.collection) as copy:
        chunks, articles = origin.copy_into(copy)
    summary = {"collection": settings.collection, "chunks": chunks, "articles": articles}
    summary["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print_json(summary)
    else:
        where = f"the {target.engine} engine" if not target.url else target.url
        sys.stdout.write(f"copied {chunks} chunks and {articles} articles of {settings.collection} into {where}\n")
    return EXIT_OK


def _ask(settings: Settings, args: argparse.Namespace) -> int:
    if args.top_k is not None and not 1 <= args.top_k <= 100:
        return fail("--top-k must be between 1 and 100")
    if not args.question.strip():
        return fail("the question is empty")
    try:
        filters = SearchFilters(source=args.source, date_from=args.date_from, date_to=args.date_to)
    except ValidationError as exc:
        return fail(f"invalid filters: {exc.errors()[0]['msg']}")
    service = RagService(settings.with_overrides(collection=args.collection))
    try:
        answer = service.answer(args.question, top_k=args.top_k, filters=filters)
    finally:
        service.close()
    if args.json:
        print_json(answer.model_dump(mode="json"))
        return EXIT_OK
    sys.stdout.write(answer.answer + "\n")
    for citation in answer.citations:
        title = citation.title or citation.doc_id
        sys.stdout.write(f"  [{citation.n}] {title} ({citation.date or 'undated'}): {citation.quote}\n")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
