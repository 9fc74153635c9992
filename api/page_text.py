"""The chat page's words in Korean and English, and which of the two a browser gets.

The language follows the browser's Accept-Language header (its first choice among the two); Korean when it
names neither.
"""

from __future__ import annotations

from typing import Literal

Language = Literal["ko", "en"]
DEFAULT_LANGUAGE: Language = "ko"

TEXTS: dict[Language, dict[str, str]] = {
    "ko": {
        "title": "정책 뉴스 질의응답",
        "intro": "한국어나 영어로 질문하세요. 모든 답변은 근거가 된 기사 문장을 인용합니다.",
        "question": "질문",
        "question_placeholder": "예: 얼라이언스 공동의장사는 어디인가?",
        "ask": "질문하기",
        "new_chat": "새 대화",
        "filters": "검색 조건",
        "date_from": "시작일 (YYYY-MM-DD)",
        "date_to": "종료일 (YYYY-MM-DD)",
        "source": "출처",
        "all_sources": "전체 출처",
        "passages": "참고할 단락 수",
        "upload": "기사 올리기",
        "upload_files": "파일 (.txt, .md, .html, .jsonl, .csv, .pdf)",
        "upload_button": "색인에 추가",
        "article": "기사 원문",
        "article_empty": "답변의 출처에서 '기사 보기'를 누르면 인용된 문장이 강조된 기사 원문이 여기에 나옵니다.",
        "show_article": "기사 보기",
        "refusal_title": "근거를 찾지 못했습니다",
        "refusal": "색인된 기사에서 이 질문에 답할 문장을 찾지 못했습니다. 질문을 바꾸거나 검색 조건을 넓혀 보세요.",
        "writing": "답변을 작성하는 중…",
        "you": "질문",
        "sources": "출처",
        "rate_up": "도움이 됐어요",
        "rate_down": "도움이 안 됐어요",
        "rated": "평가를 저장했습니다. 의견을 남기려면 아래 칸에 적어 주세요.",
        "comment_for": "답변 {n}에 대한 의견 (선택)",
        "send_comment": "의견 보내기",
        "comment_saved": "의견을 저장했습니다.",
        "bad_date": "{field}: 날짜는 YYYY-MM-DD 형식으로 적으세요 (입력: {value}).",
        "date_order": "시작일이 종료일보다 늦습니다.",
        "empty_question": "질문을 입력하세요.",
        "no_words": "질문에 글자나 숫자가 없습니다. 말로 물어 주세요.",
        "too_long": "질문은 {limit}자까지 쓸 수 있습니다.",
        "no_date": "날짜 없음",
        "no_source": "출처 없음",
        "article_missing": "이 기사는 더 이상 저장되어 있지 않습니다. 인용문만 보여 줍니다.",
        "article_clipped": "기사가 길어 인용문 주변만 보여 줍니다.",
        "error": "오류: {message}",
        "unexpected": "예상하지 못한 오류가 났습니다. 서버 로그를 확인하세요.",
        "uploaded": "추가 {added}, 갱신 {updated}, 변경 없음 {unchanged}, 실패 {failed}",
        "upload_failed": "{path}: {reason}",
        "no_files": "올릴 파일을 고르세요.",
        "nothing_yet": "아직 질문이 없습니다.",
    },
    "en": {
        "title": "Policy news QA",
        "intro": "Ask in Korean or English. Every answer cites the article sentence it rests on.",
        "question": "Question",
        "question_placeholder": "e.g. Who co-chairs the alliance?",
        "ask": "Ask",
        "new_chat": "New conversation",
        "filters": "Search filters",
        "date_from": "From (YYYY-MM-DD)",
        "date_to": "To (YYYY-MM-DD)",
        "source": "Source",
        "all_sources": "All sources",
        "passages": "Passages to consult",
        "upload": "Add articles",
        "upload_files": "Files (.txt, .md, .html, .jsonl, .csv, .pdf)",
        "upload_button": "Add to the index",
        "article": "Article",
        "article_empty": "Press 'Show the article' on a source to read the article here, the quoted sentence marked.",
        "show_article": "Show the article",
        "refusal_title": "No supporting source found",
        "refusal": "No sentence in the indexed articles answers this question. Rephrase it or widen the filters.",
        "writing": "Writing the answer…",
        "you": "Question",
        "sources": "Sources",
        "rate_up": "Helpful",
        "rate_down": "Not helpful",
        "rated": "Rating saved. Add a comment below if you like.",
        "comment_for": "Comment on answer {n} (optional)",
        "send_comment": "Send comment",
        "comment_saved": "Comment saved.",
        "bad_date": "{field}: write dates as YYYY-MM-DD (got {value}).",
        "date_order": "The start date is after the end date.",
        "empty_question": "Type a question.",
        "no_words": "The question has no letters or digits; ask in words.",
        "too_long": "Questions can be at most {limit} characters long.",
        "no_date": "no date",
        "no_source": "no source",
        "article_missing": "This article is no longer stored; only the quote is shown.",
        "article_clipped": "The article is long; only the part around the quote is shown.",
        "error": "Error: {message}",
        "unexpected": "Something went wrong; see the server log.",
        "uploaded": "added {added}, updated {updated}, unchanged {unchanged}, failed {failed}",
        "upload_failed": "{path}: {reason}",
        "no_files": "Choose the files to add.",
        "nothing_yet": "No questions yet.",
    },
}


def pick_language(accept_language: str | None) -> Language:
    """The first of Korean or English the browser accepts (by its q-values), else Korean.

    `ko-KR,ko;q=0.9,en;q=0.8` → ko; `en-US,en;q=0.9` → en; `fr-FR,en;q=0.5` → en; `fr-FR` → ko.
    """
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        ranked.append((-weight, position, tag.strip().lower()))
    for weight, _, tag in sorted(ranked):
        primary = tag.split("-", 1)[0]
        if weight < 0 and primary == "ko":
            return "ko"
        if weight < 0 and primary == "en":
            return "en"
    return DEFAULT_LANGUAGE


def text(language: str, key: str, **values: object) -> str:
    """The page's words for `key` in `language` (Korean for an unknown one), with `values` filled in."""
    texts = TEXTS.get(language, TEXTS[DEFAULT_LANGUAGE])  # type: ignore[call-overload]
    return texts[key].format(**values) if values else texts[key]
