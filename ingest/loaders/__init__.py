"""Input files → cleaned `Article`s: discovery, decoding, one module per format, and the registry that picks the
loader for each suffix (registry.py). The names the CLI, the pipeline and eval use are
re-exported here."""

from ingest.loaders.base import (
    DEFAULT_MAX_DOCUMENT_CHARS,
    MULTI_DOCUMENT_SUFFIXES,
    SUPPORTED_SUFFIXES,
    CsvColumns,
    LoadFailure,
    too_long_reason,
)
from ingest.loaders.decoding import decode_bytes, detect_encoding
from ingest.loaders.discovery import discover_files, estimate_documents
from ingest.loaders.jsonl_files import article_from_record
from ingest.loaders.registry import MAX_FILE_BYTES, iter_documents, load_file

__all__ = [
    "DEFAULT_MAX_DOCUMENT_CHARS",
    "MAX_FILE_BYTES",
    "MULTI_DOCUMENT_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "CsvColumns",
    "LoadFailure",
    "article_from_record",
    "decode_bytes",
    "detect_encoding",
    "discover_files",
    "estimate_documents",
    "iter_documents",
    "load_file",
    "too_long_reason",
]
