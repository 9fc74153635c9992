"""The short sample article the API, OpenAI-compatible, load and llama-index tests ingest: two answerable facts
(the co-chairs, the auditor) with a date, a url and a source to filter on."""

from __future__ import annotations

import datetime as dt

from rag.types import Article

ALLIANCE = Article(
    id="alliance",
    title="스마트시티 융합 얼라이언스 출범",
    text="얼라이언스가 공식 출범했다. 이날 총회에서 초대 공동의장사로 LG CNS와 이큐브랩이 선임됐다. "
    "공동감사는 한국기업데이터가 맡는다.",
    date=dt.date(2024, 4, 20),
    url="https://example.org/alliance",
    source="icn",
)
