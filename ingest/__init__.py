"""Ingestion: load files (txt/md/html/jsonl/csv/pdf), clean them, chunk, embed and upsert."""
