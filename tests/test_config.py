from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from rag.__main__ import main as rag_main
from rag.calibration import MEASURED_TRANSLATION_WEIGHTS
from rag.config import Settings, load_settings
from rag.errors import ConfigurationError


def test_contract_environment_names_reach_nested_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_COLLECTION", "press")
    monkeypatch.setenv("RAG_QDRANT_PATH", "/tmp/somewhere")
    monkeypatch.setenv("RAG_QDRANT_URL", "http://qdrant:6333")
    monkeypatch.setenv("RAG_QDRANT_API_KEY", "qk")
    monkeypatch.setenv("RAG_MODELS_DIR", "/opt/models")
    monkeypatch.setenv("RAG_LLM_BACKEND", "openai")
    monkeypatch.setenv("RAG_OPENAI_BASE_URL", "http://llm:8080/v1")
    monkeypatch.setenv("RAG_OPENAI_MODEL", "qwen")
    monkeypatch.setenv("RAG_OPENAI_API_KEY", "ok")
    monkeypatch.setenv("RAG_API_KEY", "secret")
    monkeypatch.setenv("RAG_HOST", "0.0.0.0")
    monkeypatch.setenv("RAG_PORT", "9000")
    settings = load_settings(_env_file=None)
    assert settings.collection == "press"
    assert settings.qdrant.path == Path("/tmp/somewhere")
    assert settings.qdrant.url == "http://qdrant:6333"
    assert settings.qdrant.api_key is not None and settings.qdrant.api_key.get_secret_value() == "qk"
    assert settings.models.dir == Path("/opt/models")
    assert settings.llm.backend == "openai"
    assert settings.openai.base_url == "http://llm:8080/v1"
    assert settings.openai.model == "qwen"
    assert settings.api.key is not None and settings.api.key.get_secret_value() == "secret"
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_PORT", "not-a-port")
    with pytest.raises(ConfigurationError, match="RAG_PORT"):
        load_settings(_env_file=None)


def test_openai_backend_without_endpoint_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_LLM_BACKEND", "openai")
    with pytest.raises(ConfigurationError, match="RAG_OPENAI_BASE_URL"):
        load_settings(_env_file=None)


def test_config_command_masks_secrets(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAG_API_KEY", "very-secret")
    monkeypatch.setenv("RAG_MODELS_EMBEDDING", "embeddinggemma-300m")  # `auto` is tests/test_embedding_choice.py's
    assert rag_main(["config", "--json"]) == 0
    out = capsys.readouterr().out
    assert "very-secret" not in out
    payload = json.loads(out)
    assert payload["api"]["key"] == "********"
    assert payload["collection"] == "news"
    # values measured per embedding model are shown as they apply, not as "unset"
    assert payload["models"]["embedding"] == "embeddinggemma-300m"
    assert payload["retrieval"]["sparse_weight_sound"] == 0.125
    assert payload["retrieval"]["sparse_weight_translation"] == 0.125
    assert payload["answer"]["min_evidence_score_korean"] == 0.44


def test_bad_setting_makes_the_cli_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAG_LLM_BACKEND", "gpt-17")
    assert rag_main(["config"]) == 2
    assert "RAG_LLM_BACKEND" in capsys.readouterr().err


def _environment_names(model: type[BaseModel], prefix: str = "RAG_") -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += _environment_names(annotation, f"{prefix}{name.upper()}_")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    missing = [name for name in _environment_names(Settings) if f"`{name}`" not in readme]
    assert not missing, f"README.md does not document: {missing}"


def test_refusal_thresholds_follow_the_embedding_model(caplog: pytest.LogCaptureFixture) -> None:
    from rag.calibration import MEASURED_EVIDENCE_THRESHOLDS

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.models.embedding == "auto"  # the default; the service resolves it (tests/test_embedding_choice.py)
    settings.models.embedding = "embeddinggemma-300m"
    assert settings.answer_settings().min_evidence_score_korean == 0.44
    settings.models.embedding = "multilingual-e5-small"
    e5 = settings.answer_settings()
    assert (e5.min_evidence_score(korean=True), e5.min_evidence_score(korean=False)) == (0.85, 0.745)
    # English over English text scores higher than across languages: its own cut-off
    assert e5.min_evidence_score(korean=False, evidence_korean=False) == 0.80
    assert e5.min_evidence_score(korean=True, evidence_korean=False) == 0.745  # Korean over English: across
    settings.models.embedding = "embeddinggemma-300m"  # resolved at use, so a later change counts
    gemma = settings.answer_settings()
    assert (gemma.min_evidence_score_korean, gemma.min_evidence_score_other) == (0.44, 0.35)
    assert MEASURED_EVIDENCE_THRESHOLDS["embeddinggemma-300m"][:2] == (0.44, 0.35)
    settings.answer.min_evidence_score_other = 0.5  # set explicitly: wins
    assert settings.answer_settings().min_evidence_score(korean=False) == 0.5
    assert settings.answer_settings().min_evidence_score(korean=True) == 0.44
    settings.models.embedding = "/opt/models/some-other-model"
    with caplog.at_level("WARNING"):
        other = settings.answer_settings()
    assert other.min_evidence_score_korean == 0.85
    assert "bench-refusal" in caplog.text and "some-other-model" in caplog.text


def test_sound_key_weight_follows_the_embedding_model() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.retrieval.sparse_weight_sound is None  # unset: measured per model
    settings.models.embedding = "embeddinggemma-300m"
    assert settings.retrieval_settings().sparse_weight_sound == 0.125
    settings.models.embedding = "multilingual-e5-small"
    assert settings.retrieval_settings().sparse_weight_sound == 0.5
    settings.models.embedding = "/opt/models/embeddinggemma-300m"  # a folder of that name counts as the model
    assert settings.retrieval_settings().sparse_weight_sound == 0.125
    settings.models.embedding = "some-other-model"
    assert settings.retrieval_settings().sparse_weight_sound == 0.5
    assert settings.retrieval.sound_weight() == 0.5  # a RetrievalSettings used as is falls back to e5's too
    settings.retrieval.sparse_weight_sound = 0.0  # set explicitly (0 turns the side off): wins
    settings.models.embedding = "embeddinggemma-300m"
    assert settings.retrieval_settings().sparse_weight_sound == 0.0


def test_translation_weight_follows_the_embedding_model() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.retrieval.sparse_weight_translation is None
    settings.models.embedding = "multilingual-e5-small"
    assert settings.retrieval_settings().sparse_weight_translation == 0.5
    assert settings.retrieval.translation_weight() == 0.5  # a RetrievalSettings used as is: e5's
    settings.models.embedding = "embeddinggemma-300m"
    gemma = MEASURED_TRANSLATION_WEIGHTS["embeddinggemma-300m"]
    assert settings.retrieval_settings().sparse_weight_translation == gemma
    settings.retrieval.sparse_weight_translation = 0.0
    assert settings.retrieval_settings().sparse_weight_translation == 0.0
    assert settings.lexicon_path() == settings.models.dir / "lexicon" / "en-ko-sino.tsv"
