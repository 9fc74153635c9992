"""Settings: environment names reach their fields, explicit values win over the values measured per embedding
model, bad values are errors that name the variable, and every setting is documented."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from rag.__main__ import main as rag_main
from rag.config import AnswerSettings, RetrievalSettings, Settings, load_settings
from rag.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# where the configuration table lives: the README, or docs/configuration.md once it moves there
CONFIGURATION_DOC = PROJECT_ROOT / "docs" / "configuration.md"
GEMMA, E5 = "embeddinggemma-300m", "multilingual-e5-small"


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
    assert settings.openai.api_key is not None and settings.openai.api_key.get_secret_value() == "ok"
    assert settings.api.key is not None and settings.api.key.get_secret_value() == "secret"
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)


def test_a_field_name_with_underscores_follows_its_group_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # one underscore after the group, the rest belongs to the field: RAG_RETRIEVAL_SPARSE_WEIGHT_SOUND is
    # retrieval.sparse_weight_sound, not retrieval.sparse.weight...
    monkeypatch.setenv("RAG_RETRIEVAL_SPARSE_WEIGHT_SOUND", "0.3")
    monkeypatch.setenv("RAG_ANSWER_MIN_EVIDENCE_SCORE_KOREAN", "0.61")
    monkeypatch.setenv("RAG_MODELS_EMBEDDING_BATCH_SIZE", "7")
    monkeypatch.setenv("RAG_CHUNKING_OVERLAP_SENTENCES", "0")
    settings = load_settings(_env_file=None)
    assert settings.retrieval.sparse_weight_sound == 0.3
    assert settings.answer.min_evidence_score_korean == 0.61
    assert settings.models.embedding_batch_size == 7
    assert settings.chunking.overlap_sentences == 0


def test_the_environment_wins_over_the_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("RAG_COLLECTION=from-file\nRAG_PORT=9001\nRAG_RETRIEVAL_TOP_K=9\n", encoding="utf-8")
    monkeypatch.setenv("RAG_PORT", "9002")
    settings = load_settings(_env_file=env_file)
    assert (settings.collection, settings.port, settings.retrieval.top_k) == ("from-file", 9002, 9)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RAG_PORT", "not-a-port"),
        ("RAG_PORT", "70000"),
        ("RAG_COLLECTION", "../elsewhere"),
        ("RAG_RETRIEVAL_TOP_K", "0"),
        ("RAG_CHUNKING_MAX_TOKENS", "4096"),
        ("RAG_ANSWER_MIN_EVIDENCE_SCORE_KOREAN", "1.5"),
        ("RAG_MODELS_EMBEDDING_BACKEND", "gpu"),
    ],
)
def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=rf"{variable}\b"):
        load_settings(_env_file=None)


def test_openai_backend_without_endpoint_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_LLM_BACKEND", "openai")
    with pytest.raises(ConfigurationError, match="RAG_OPENAI_BASE_URL"):
        load_settings(_env_file=None)


def test_a_collection_override_is_checked_like_the_environment() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match=re.escape("--collection '../x'")):
        settings.with_overrides(collection="../x")
    assert settings.with_overrides(collection="press", host=None).collection == "press"
    assert settings.with_overrides(collection="press").host == settings.host  # None and absent keep a value
    assert settings.collection != "press"  # a copy: the original is unchanged


def test_config_command_masks_secrets_and_shows_resolved_values(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAG_API_KEY", "very-secret")
    monkeypatch.setenv("RAG_QDRANT_API_KEY", "qdrant-secret")
    monkeypatch.setenv("RAG_MODELS_EMBEDDING", E5)
    monkeypatch.setenv("RAG_RETRIEVAL_SPARSE_WEIGHT_SOUND", "0.3")
    assert rag_main(["config", "--json"]) == 0
    out = capsys.readouterr().out
    assert "very-secret" not in out and "qdrant-secret" not in out
    payload = json.loads(out)
    assert payload["api"]["key"] == payload["qdrant"]["api_key"] == "********"
    assert payload["openai"]["api_key"] is None  # unset stays unset
    # values measured per embedding model are shown as they apply to the configured one, not as "unset"
    assert payload["retrieval"]["sparse_weight_sound"] == 0.3  # set
    e5 = Settings(_env_file=None, models={"embedding": E5})  # type: ignore[call-arg]
    assert payload["retrieval"]["sparse_weight_translation"] == e5.retrieval_settings().sparse_weight_translation
    assert payload["answer"]["min_evidence_score_korean"] == e5.answer_settings().min_evidence_score_korean
    assert None not in (
        payload["retrieval"]["sparse_weight_translation"],
        payload["answer"]["min_evidence_score_korean"],
    )


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


def _documented_settings() -> list[str]:
    """The variables named in the first column of docs/configuration.md's settings table."""
    doc = CONFIGURATION_DOC.read_text(encoding="utf-8")
    return re.findall(r"^\| `(RAG_[A-Z0-9_]+)` \|", doc, flags=re.MULTILINE)


def test_configuration_doc_documents_every_setting_and_no_other() -> None:
    documented = _documented_settings()
    settings = _environment_names(Settings)
    assert "RAG_RETRIEVAL_SPARSE_WEIGHT_SOUND" in settings and "RAG_PORT" in settings  # nested and top level
    assert not set(settings) - set(documented), f"docs/configuration.md lacks: {set(settings) - set(documented)}"
    unknown = set(documented) - set(settings)
    assert not unknown, f"docs/configuration.md names unknown settings: {unknown}"
    assert len(documented) == len(set(documented)), "docs/configuration.md lists a setting twice"


# --- values measured per embedding model, and explicit values over them -------------------------------------


def _measured(embedding: str, **explicit: float) -> tuple[float | None, ...]:
    """The five values measured per model (sound and translation weights; Korean, cross-script and English
    refusal cut-offs) as they apply to `embedding`, with `explicit` fields set."""
    settings = Settings(_env_file=None, models={"embedding": embedding})  # type: ignore[call-arg]
    for name, value in explicit.items():
        group = settings.retrieval if name.startswith("sparse_") else settings.answer
        setattr(group, name, value)
    retrieval, answer = settings.retrieval_settings(), settings.answer_settings()
    return (
        retrieval.sparse_weight_sound,
        retrieval.sparse_weight_translation,
        answer.min_evidence_score_korean,
        answer.min_evidence_score_other,
        answer.min_evidence_score_english,
    )


def test_unset_values_follow_the_embedding_model(caplog: pytest.LogCaptureFixture) -> None:
    gemma, e5 = _measured(GEMMA), _measured(E5)
    assert None not in gemma and None not in e5
    # the two models score on different scales and were measured apart: every value differs between them, so
    # a resolution that ignored the model would show here
    assert all(g != e for g, e in zip(gemma, e5, strict=True)), (gemma, e5)
    assert _measured(f"/opt/models/{GEMMA}") == gemma  # a folder of that name is that model
    with caplog.at_level("WARNING"):
        assert _measured("fake") == e5
        assert _measured("auto") == e5  # not yet resolved to a model (the service resolves it)
    assert not caplog.records  # the test embedder needs no thresholds of its own, nor does an unresolved `auto`
    with caplog.at_level("WARNING"):
        assert _measured("/opt/models/some-other-model") == e5  # never measured: e5's, which came first
    assert "bench-refusal" in caplog.text and "some-other-model" in caplog.text
    # a RetrievalSettings or AnswerSettings used on its own falls back the same way
    assert (RetrievalSettings().sound_weight(), RetrievalSettings().translation_weight()) == e5[:2]
    assert AnswerSettings().min_evidence_score(korean=True) == e5[2]


def test_explicit_values_win_over_the_measured_ones() -> None:
    for model in (GEMMA, E5, "some-other-model"):
        measured = _measured(model)
        # 0 is a value (it turns a side off), not "unset"
        assert _measured(model, sparse_weight_sound=0.0) == (0.0, *measured[1:])
        assert _measured(model, sparse_weight_translation=0.7) == (measured[0], 0.7, *measured[2:])
        assert _measured(model, min_evidence_score_other=0.5) == (*measured[:3], 0.5, measured[4])
        every = {"min_evidence_score_korean": 0.1, "min_evidence_score_other": 0.2, "min_evidence_score_english": 0.3}
        assert _measured(model, **every)[2:] == (0.1, 0.2, 0.3)


def test_nothing_is_looked_up_when_every_cut_off_is_set(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(_env_file=None, models={"embedding": "some-other-model"})  # type: ignore[call-arg]
    settings.answer = AnswerSettings(
        min_evidence_score_korean=0.1, min_evidence_score_other=0.2, min_evidence_score_english=0.3
    )
    with caplog.at_level("WARNING"):
        assert settings.answer_settings() is settings.answer
    assert not caplog.records  # nothing to measure: no hint to measure it


def test_measured_values_are_resolved_at_use() -> None:
    settings = Settings(_env_file=None, models={"embedding": E5})  # type: ignore[call-arg]
    before = settings.answer_settings().min_evidence_score_korean
    settings.models.embedding = GEMMA  # a later change counts
    assert settings.answer_settings().min_evidence_score_korean == _measured(GEMMA)[2] != before


def test_the_refusal_cut_off_follows_the_scripts_of_question_and_evidence() -> None:
    cut_offs = AnswerSettings(
        min_evidence_score_korean=0.1, min_evidence_score_other=0.2, min_evidence_score_english=0.3
    )
    assert cut_offs.min_evidence_score(korean=True) == 0.1  # Korean over Korean, the evidence's default script
    assert cut_offs.min_evidence_score(korean=True, evidence_korean=False) == 0.2  # Korean over English
    assert cut_offs.min_evidence_score(korean=False) == 0.2  # English over Korean, the default
    assert cut_offs.min_evidence_score(korean=False, evidence_korean=False) == 0.3  # English over English


def test_model_files_resolve_under_the_models_folder() -> None:
    settings = Settings(_env_file=None, models={"dir": "/opt/models"})  # type: ignore[call-arg]
    settings.models.lexicon_file, settings.models.llm_file = "words/en-ko.tsv", "llm.gguf"
    assert settings.lexicon_path() == Path("/opt/models/words/en-ko.tsv")
    assert settings.llm_model_path() == Path("/opt/models/llm.gguf")
    settings.models.lexicon_file, settings.models.llm_file = "/srv/en-ko.tsv", "/srv/llm.gguf"
    assert (settings.lexicon_path(), settings.llm_model_path()) == (Path("/srv/en-ko.tsv"), Path("/srv/llm.gguf"))
    settings.models.embedding = E5  # a bare name: a folder under the models folder
    assert settings.embedding_model_location() == f"/opt/models/{E5}"
    settings.models.embedding = "intfloat/multilingual-e5-small"  # a hub id (or a path) as given
    assert settings.embedding_model_location() == "intfloat/multilingual-e5-small"
