"""Property-based fuzzing of every route in the app's OpenAPI schema: no request, however malformed, gets a
5xx, every JSON body the schema forbids is refused, and every refusal is a 4xx in the API's JSON error shape.

Requests come from schemathesis (valid and schema-violating ones per operation) and from hypothesis
strategies for what a schema cannot describe (undecodable bytes, wrong content types, junk nesting). The
service behind the app is real (local Qdrant, the answer layer) with the fake embedder and a scripted model
that repeats the question, so hostile text also runs through citation checking. Bounded and derandomised:
the same examples at every run, a few seconds each.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection

from app import create_app
from ingest.pipeline import build_ingestor
from rag.answer.llm import Message
from rag.config import Settings
from rag.embed.fake import FakeEmbedder
from rag.service import RagService
from tests.doubles import ScriptedLLM

from .test_api import ARTICLE

# enough to reach the JSON bodies pydantic used to coerce ("date_from": "0" read as 1970-01-01, "stream": 0 as
# false) within the same seconds at every run; the whole file takes ~20 s on 2 busy cores
EXAMPLES_PER_OPERATION = 300
EXAMPLES_PER_ROUTE = 100
BOUNDED = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _repeat_the_question(messages: list[Message]) -> str:
    question = messages[-1]["content"].rsplit("Question: ", 1)[-1].split("\n", 1)[0]
    return f"{question} [1]. {question} [2]"


@pytest.fixture
def app_under_fuzz(settings: Settings) -> Iterator[Any]:
    service = RagService(settings, embedder=FakeEmbedder(), llm=ScriptedLLM(_repeat_the_question))
    build_ingestor(service).ingest_articles([ARTICLE])
    yield create_app(service, with_ui=False)
    service.close()


def in_the_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """A refused request gets `{"error": {"code", "message"}}` with a 4xx status."""
    if 400 <= response.status_code < 500:
        _assert_error_shape(response.json())
    return None


def rejects_schema_violating_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """A JSON body the schema forbids (a number for a date, `1` for `true`) is refused, not coerced. Multipart
    bodies are left out: every part is bytes there, so an upload holding the text "False" is a valid file."""
    if case.media_type == "application/json":
        return negative_data_rejection(ctx, response, case)
    return None


def _assert_error_shape(body: Any) -> None:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message"} and all(isinstance(error[key], str) and error[key] for key in error)


def test_every_operation_in_the_schema_survives_generated_requests(app_under_fuzz: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app_under_fuzz)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/answer", "/v1/search", "/v1/ingest", "/healthz", "/readyz"}
    for operation in operations:
        valid_or_not = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
        )

        @given(case=valid_or_not)
        @BOUNDED
        def survives(case: Any) -> None:
            case.call_and_validate(checks=[not_a_server_error, in_the_error_shape, rejects_schema_violating_json])

        survives()


JSON_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
FIELD_VALUES = st.one_of(
    JSON_JUNK,
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from(["", " ", "\u0000", "\ud7ff", "🙂", "[1]", "NOT_FOUND", "<|im_end|>", "x" * 3000]),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=latin-1",
        "text/plain",
        "multipart/form-data",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "",
        "garbage/;;;==",
    ]
)


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes:
    """Bodies a schema cannot describe: undecodable bytes, cut JSON, deep nesting, the right fields with the
    wrong kinds of value."""
    kind = draw(st.sampled_from(["bytes", "cut", "deep", "fields"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "deep":
        depth = draw(st.integers(min_value=1, max_value=5000))
        return b'{"question": ' + b"[" * depth + b"]" * depth + b"}"
    fields = draw(
        st.dictionaries(
            st.sampled_from(["question", "query", "top_k", "filters", "history", "stream"]), FIELD_VALUES, max_size=5
        )
    )
    text = json.dumps(fields)
    if kind == "cut":
        text = text[: draw(st.integers(min_value=0, max_value=len(text)))]
    return text.encode("utf-8", errors="surrogatepass")


def test_every_post_route_survives_bodies_a_schema_cannot_describe(app_under_fuzz: Any) -> None:
    with TestClient(app_under_fuzz) as client:
        routes = [path for path, item in client.get("/openapi.json").json()["paths"].items() if "post" in item]

        @given(path=st.sampled_from(routes), body=hostile_bodies(), content_type=CONTENT_TYPES)
        @settings(BOUNDED, max_examples=EXAMPLES_PER_ROUTE * len(routes))
        def survives(path: str, body: bytes, content_type: str) -> None:
            response = client.post(path, content=body, headers={"content-type": content_type})
            assert response.status_code < 500, (path, body[:200], response.text[:300])
            if response.status_code >= 400:
                _assert_error_shape(response.json())

        survives()
