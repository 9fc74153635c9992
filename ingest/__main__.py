"""`python -m ingest PATH [PATH ...]`: load news files into the collection (see docs/interfaces.md).

Exit codes: 0 every input ingested, 1 some inputs failed (the rest is ingested) or the disk filled up (the run
stopped; what it wrote is reported), 2 usage or configuration (a `--sync` path that is missing or unreadable too).
"""

from __future__ import annotations

from rag.cli import limit_native_threads

limit_native_threads()

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from ingest.loaders import SUPPORTED_SUFFIXES, CsvColumns, discover_files, estimate_documents  # noqa: E402
from ingest.pipeline import IngestReport, build_ingestor  # noqa: E402
from ingest.sharding import WHOLE, Shard  # noqa: E402
from rag.cli import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, configure_logging, fail, print_json, write_out  # noqa: E402
from rag.config import load_settings  # noqa: E402
from rag.errors import ConfigurationError, RagError  # noqa: E402
from rag.service import RagService  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    formats = " ".join(sorted(SUPPORTED_SUFFIXES))
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description=f"Load news articles into the search collection. Formats by extension: {formats}. "
        "Re-running on unchanged files writes nothing; a changed article replaces its old chunks.",
        epilog="Exit status: 0 all inputs ingested, 1 some failed (the rest was ingested), 2 usage/config error.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders (searched recursively)")
    parser.add_argument("--collection", help="collection to write (overrides RAG_COLLECTION)")
    parser.add_argument(
        "--sync",
        action="store_true",
        help="also delete stored articles whose file under these paths is gone (a path that is missing or cannot be "
        "read stops the run before anything is deleted)",
    )
    parser.add_argument(
        "--sync-empty-folders",
        action="store_true",
        help="with --sync, go ahead when a given folder holds no files at all, deleting every article that came "
        "from it (without this, such a folder stops the run: it is usually a share that is not mounted)",
    )
    parser.add_argument("--json", action="store_true", help="print only a JSON summary on stdout")
    spread = parser.add_argument_group("spreading the work (docs/scaling.md)")
    spread.add_argument(
        "--shard",
        metavar="I/N",
        help="ingest only share I of N (1-based) of the articles, chosen by a hash of the article id, so that N "
        "runs on N machines fill one collection on a Qdrant server with no overlap; with --sync, delete only this "
        "share's vanished articles",
    )
    spread.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="K",
        help="read, chunk and analyse in K processes while this one embeds (default %(default)s)",
    )
    mapping = parser.add_argument_group("CSV column mapping (default: detected from the header, English or Korean)")
    for field in ("id", "title", "text", "date", "url", "source"):
        mapping.add_argument(f"--csv-{field}", metavar="COLUMN", help=f"column holding the {field}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        shard = Shard.parse(args.shard) if args.shard else WHOLE
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    if args.workers < 1:
        return fail(f"--workers {args.workers}: give at least 1", EXIT_USAGE)
    try:
        settings = load_settings().with_overrides(collection=args.collection)
    except ConfigurationError as exc:
        return fail(exc.message, EXIT_USAGE)
    configure_logging(settings.log_level)
    columns = CsvColumns(**{f: getattr(args, f"csv_{f}") for f in ("id", "title", "text", "date", "url", "source")})

    service = RagService(settings)
    try:
        ingestor = build_ingestor(service)
        # Qdrant Edge: index along the way, so memory stays bounded on a long run (rag/search/store.py)
        service.store.optimize_while_writing(settings.qdrant.edge_optimize_every_chunks)
        files, _ = discover_files(args.paths, log=False)  # only to size the progress bar; the run logs
        with _progress_bar(total=estimate_documents(files), enabled=sys.stderr.isatty()) as bar:
            report = ingestor.ingest_paths(
                args.paths,
                sync=args.sync,
                csv_columns=columns,
                progress=bar,
                shard=shard,
                workers=args.workers,
                sync_empty_folders=args.sync_empty_folders,
            )
        if report.chunks or report.deleted:
            service.store.optimize()  # Qdrant Edge indexes only when told (rag/search/edge.py)
    except ConfigurationError as exc:
        return fail(exc.message, EXIT_USAGE)
    except RagError as exc:
        return fail(exc.message, EXIT_USAGE)
    finally:
        service.close()
    _print_report(report, as_json=args.json, shard=shard)
    if report.stopped:
        fail(f"{report.stopped}. The run stopped there: what is counted above was written, the rest was not read")
    return EXIT_PARTIAL if report.failed or report.stopped else EXIT_OK


def _progress_bar(total: int, enabled: bool) -> Any:
    # imported where the progress bar is drawn
    from tqdm import tqdm

    return tqdm(total=total, unit="article", desc="ingest", disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def _print_report(report: IngestReport, as_json: bool, shard: Shard) -> None:
    if as_json:
        print_json(report.to_json())
        return
    rate = report.documents / report.seconds if report.seconds else 0.0
    share = f" (shard {shard})" if shard != WHOLE else ""
    write_out(
        f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}, deleted {report.deleted}; "
        f"{report.chunks} chunks written in {report.seconds:.1f} s ({rate:.1f} articles/s){share}\n"
    )
    for failure in report.failed:
        write_out(f"failed: {failure.path}: {failure.reason}\n")


if __name__ == "__main__":
    raise SystemExit(main())
