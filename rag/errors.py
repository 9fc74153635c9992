"""Typed errors. Each carries a message a user can act on; the edges (CLI, HTTP, UI) translate them.

`code` is a stable machine-readable identifier used in HTTP error bodies.
"""

from __future__ import annotations


class RagError(Exception):
    """Base class of every error this project raises on purpose."""

    code = "rag_error"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(RagError):
    """A setting is missing, invalid or contradicts another one."""

    code = "configuration_error"
    http_status = 500


class ModelProvisioningError(RagError):
    """A model file could not be provisioned or verified (missing package, bad checksum...)."""

    code = "model_unavailable"
    http_status = 503


class StoreError(RagError):
    """The vector store is unreachable, locked by another process, or in an unexpected state."""

    code = "store_unavailable"
    http_status = 503


class StoreLockedError(StoreError):
    """The embedded Qdrant folder is held by another process (it allows one at a time)."""

    code = "store_locked"


class StoreCorruptError(StoreError):
    """The embedded store folder is damaged (a truncated meta.json, a broken SQLite file) and cannot be opened."""

    code = "store_corrupt"


class DiskFullError(StoreError):
    """No space left on the device while writing (the store, or an uploaded file); nothing half-written is kept."""

    code = "disk_full"
    http_status = 507


class CollectionMismatchError(StoreError):
    """A collection was built with other vector-shaping settings (model, dimension, chunking)."""

    code = "collection_mismatch"
    http_status = 409


class CollectionNotFoundError(StoreError):
    """The requested collection does not exist yet (nothing ingested)."""

    code = "collection_not_found"
    http_status = 404


class InputError(RagError):
    """A user-supplied input (request field, file, line) is invalid."""

    code = "invalid_input"
    http_status = 422


class DocumentError(InputError):
    """One input document could not be loaded; ingestion records it and goes on with the rest."""

    code = "invalid_document"


class LLMError(RagError):
    """The language model backend failed or is unreachable. The message is the generic one users see; the
    backend logs the details (the endpoint's status and body)."""

    code = "llm_unavailable"
    http_status = 502  # the model behind the service failed, not the request


class EmbeddingServerError(RagError):
    """The OpenAI-compatible embedding server failed or is unreachable (after its retries). As for LLMError, the
    message is the generic one users see; the details (status, body, address) go to the log."""

    code = "embedding_unavailable"
    http_status = 502  # the server behind the service failed, not the request
