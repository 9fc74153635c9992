"""Loading and cleaning: one test per format, every kind of bad input, and the real shared corpora."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from eval.hostile_inputs import assemble_pdf
from ingest.cleaning import clean_scraped_text, normalize_text, parse_date, split_leading_date
from ingest.loaders import (
    SUPPORTED_SUFFIXES,
    CsvColumns,
    LoadFailure,
    discover_files,
    iter_documents,
    load_file,
    registry,
)
from rag.types import Article

FIXTURES = Path(__file__).parent / "fixtures"


def shared_data() -> Path:
    return Path(os.environ.get("RAG_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def split(items: object) -> tuple[list[Article], list[LoadFailure]]:
    articles: list[Article] = []
    failures: list[LoadFailure] = []
    for item in items:  # type: ignore[attr-defined]
        (articles if isinstance(item, Article) else failures).append(item)
    return articles, failures


def load_one(path: Path, csv_columns: CsvColumns | None = None) -> Article:
    articles, failures = split(load_file(path, csv_columns))
    assert failures == [] and len(articles) == 1, failures
    return articles[0]


def only_failure(path: Path) -> LoadFailure:
    articles, failures = split(load_file(path))
    assert articles == [] and len(failures) == 1
    return failures[0]


def require_shared(relative: str) -> Path:
    path = shared_data() / relative
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


# --- cleaning -------------------------------------------------------------------------------------------


def test_normalize_text_unicode_whitespace_and_controls() -> None:
    decomposed = "\u1112\u1161\u11ab\u1100\u1173\u11af"  # 한글 as conjoining jamo (macOS file names, some PDFs)
    raw = f"  {decomposed}\u200b  text\r\nsecond\u00a0\u00a0line\x07\tcol\r\r\n\n\n\n\nlast\u2028line  "
    assert normalize_text(raw) == "한글 text\nsecond line\tcol\n\nlast\nline"


def test_normalize_text_is_idempotent_and_keeps_single_blank_lines() -> None:
    text = "para one\n\npara two\nline"
    assert normalize_text(text) == text
    assert normalize_text(normalize_text("a \n\n\n b")) == "a\n\nb"


def test_sample_article_keeps_the_whole_body_and_drops_the_page_chrome() -> None:
    raw = require_shared("seed/smartcity_alliance_launch.txt").read_text(encoding="utf-8")
    cleaned = clean_scraped_text(raw)
    assert cleaned.startswith("2024년 4월 20일\n\n스마트시티 융합 얼라이언스 출범")
    assert cleaned.endswith("도약대 역할을 할 것”으로 기대한다고 밝혔다.")
    for paragraph in [line for line in raw.split("오윤경 기자 news@icnweb.co.kr")[0].split("\n") if len(line) > 60]:
        assert paragraph.strip() in cleaned  # every body paragraph survives intact
    for chrome in ("오윤경", "icnweb", "embedded world", "Related articles", "Newsletter", "FASTECH", "mobility"):
        assert chrome not in cleaned
    assert cleaned.count("스마트 시티 선도모델 계획(세종)") == 1  # caption saved twice by the scraper
    assert "스마트시티 융합 얼라이언스 출범 (사진. 벤처기업협회)" in cleaned
    assert "스마트시티 융합 얼라이언스 출범\n스마트시티 융합 얼라이언스 출범 (사진" not in cleaned


def test_sample_article_loads_with_its_date_title_and_final_text() -> None:
    article = load_one(require_shared("seed/smartcity_alliance_launch.txt"))
    assert article.date == dt.date(2024, 4, 20)
    assert article.title == "스마트시티 융합 얼라이언스 출범"
    assert article.text.startswith("스마트시티 융합 얼라이언스 출범\n\n세종, 부산")  # the date line is metadata
    assert article.text.endswith("기대한다고 밝혔다.")


def test_korean_news_page_cleaning() -> None:
    article = load_one(FIXTURES / "news_ko.txt")
    assert article.date == dt.date(2024, 3, 5)
    assert article.title == "정부, 청년 월세 지원 1년 연장"
    assert article.text.startswith("정부, 청년 월세 지원 1년 연장\n\n[세종=정책일보] 김민수 기자 = 국토교통부는")
    assert article.text.endswith('도움이 될 것"이라고 말했다.')
    assert article.text.count("청년 월세 지원 신청 화면") == 1
    assert "(사진=국토교통부)" in article.text
    for chrome in ("• 홈", "minsu.kim", "저작권자", "관련기사", "전세대출", "많이 본", "NEWSLETTER", "입력 2024"):
        assert chrome not in article.text


def test_english_news_page_cleaning() -> None:
    article = load_one(FIXTURES / "news_en.txt")
    assert article.date == dt.date(2024, 4, 18)
    assert article.title == "City council approves affordable housing plan"
    assert article.text.endswith("Mayor Alex Kim said after the vote.")
    assert article.text.count("A view of the proposed site on Elm Street.") == 1
    for chrome in ("By Jane Doe", "jane.doe@", "https://", "Related Articles", "Copyright", "HOME", "SPORTS"):
        assert chrome not in article.text


def test_cleaning_keeps_real_content_that_looks_like_boilerplate() -> None:
    raw = (FIXTURES / "keep_content_ko.txt").read_text(encoding="utf-8")
    assert clean_scraped_text(raw) == normalize_text(raw)  # list, 저작권자 sentence, 무단 전재 quote all stay


def test_tail_markers_near_the_top_do_not_cut_the_article() -> None:
    body = "정부는 오늘 새로운 주거 정책을 발표했다. " * 20
    text = f"많이 본 뉴스\n관련기사\n\n{body}\n\n관련기사\n\n다른 기사 제목"
    cleaned = clean_scraped_text(text)
    assert cleaned.startswith("많이 본 뉴스\n관련기사\n\n정부는")
    assert cleaned.endswith("발표했다.")


def test_markdown_style_list_at_the_end_is_kept() -> None:
    text = "정부는 올해 지역 문화예술 지원사업 공모를 시작한다고 밝혔다.\n\n지원 분야:\n- 공연예술\n- 문학\n· 전통예술"
    assert clean_scraped_text(text) == text


def test_bullet_list_between_paragraphs_is_content_but_a_trailing_menu_is_not() -> None:
    para = "This paragraph is long enough to count as running prose in an article body."
    text = f"{para}\n• Seoul\n• Busan\n{para} Second.\n  • embedded world\n  • hilscher\nASI"
    assert clean_scraped_text(text) == f"{para}\n• Seoul\n• Busan\n{para} Second."


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024년 4월 20일", dt.date(2024, 4, 20)),
        ("2024. 4. 20.", dt.date(2024, 4, 20)),
        ("2024.04.20", dt.date(2024, 4, 20)),
        ("2024-04-20", dt.date(2024, 4, 20)),
        ("2026-07-02T06:00:00+09:00", dt.date(2026, 7, 2)),
        ("2024-04-20T23:30:00Z", dt.date(2024, 4, 20)),
        ("20240420", dt.date(2024, 4, 20)),
        ("April 20, 2024", dt.date(2024, 4, 20)),
        ("20 Apr 2024", dt.date(2024, 4, 20)),
        ("Tue, 02 Jul 2026 06:00:00 GMT", dt.date(2026, 7, 2)),
        ("입력 2024.04.20 10:31", dt.date(2024, 4, 20)),
        ("2024-02-30", None),
        ("2024년 4월", None),
        ("미상", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_date(value: str | None, expected: dt.date | None) -> None:
    assert parse_date(value) == expected


def test_leading_date_line_is_taken_only_when_the_line_is_just_a_date() -> None:
    assert split_leading_date("제목\n\n2024년 4월 20일 (토) 오후 3:00\n\n본문") == (
        dt.date(2024, 4, 20),
        "제목\n\n본문",
    )
    text = "2024년 4월 20일 정부가 발표했다.\n\n본문"
    assert split_leading_date(text) == (None, text)


# --- one test per format ----------------------------------------------------------------------------------


def test_markdown_front_matter_heading_and_markup() -> None:
    article = load_one(FIXTURES / "article.md")
    assert article.title == "인공지능 기본법 하위법령 초안 공개"
    assert article.date == dt.date(2024, 5, 2)
    assert article.id == article.url == "https://policy.example.kr/notes/ai-basic-act"
    assert "시행령 초안을 누리집에 공개하고" in article.text  # link and bold markup gone, words kept
    assert not any(mark in article.text for mark in ("#", "**", "](", "---"))
    assert "- 고영향 인공지능의 판단 기준" in article.text


def test_html_main_text_and_metadata() -> None:
    article = load_one(FIXTURES / "article.html")
    assert article.id == article.url == "https://news.example.kr/articles/1234"
    assert article.title == "정부, 스마트시티 시범도시 시행계획 발표"
    assert article.date == dt.date(2024, 4, 20)
    assert article.source == "정책뉴스"
    assert "11개 사업에 265억원을 투자한다." in article.text
    assert "| 세종 | 150억원 |" in article.text  # tables are kept
    assert article.text.endswith('도약대 역할을 할 것"이라고 말했다.')
    for chrome in ("다른 기사", "많이 본", "저작권자", "hong@example.kr"):
        assert chrome not in article.text


def test_html_in_cp949_without_charset_declaration(tmp_path: Path) -> None:
    html = (FIXTURES / "article.html").read_text(encoding="utf-8").replace('<meta charset="utf-8">', "")
    path = tmp_path / "page.htm"
    path.write_bytes(html.replace("©", "ⓒ").encode("cp949"))
    assert "11개 사업에 265억원을 투자한다." in load_one(path).text


def test_html_without_main_text_fails(tmp_path: Path) -> None:
    path = tmp_path / "nav.html"
    path.write_text("<html><body><nav><a href='/'>Home</a></nav><script>var a = 1;</script></body></html>")
    assert "no main text found" in only_failure(path).reason


@pytest.mark.parametrize("depth", [300, 20_000])
def test_html_nested_deeper_than_the_parser_allows_keeps_its_text(tmp_path: Path, depth: int) -> None:
    """lxml stops at 255 levels and trafilatura then saw an empty page; the deeper tags are dropped instead."""
    sentence = "정부는 오늘 새로운 스마트시티 정책을 발표했다. 이 정책은 도시 문제 해결을 목표로 한다. "
    wrapper = "<div><script>alert('x')</script>"
    html = f"<html><head><title>정책 발표</title></head><body>{wrapper * depth}<p>{sentence * 5}R&amp;D</p>"
    path = tmp_path / "deep.html"
    path.write_text(html + "</div>" * depth + "</body></html>", encoding="utf-8")
    article = load_one(path)
    assert article.title == "정책 발표"
    assert article.text == sentence * 5 + "R&D"  # script bodies in the dropped levels went with their tags


def test_deep_html_without_main_text_still_fails(tmp_path: Path) -> None:
    path = tmp_path / "deep-nav.html"
    path.write_text("<html><body>" + "<div>" * 400 + "<nav><a href='/'>Home</a></nav>" + "</div>" * 400)
    assert "no main text found" in only_failure(path).reason


def test_jsonl_good_lines_load_and_bad_lines_are_named_by_line() -> None:
    path = FIXTURES / "corpus.jsonl"
    articles, failures = split(load_file(path))
    assert [a.id for a in articles] == [
        "fed-2024-01",
        "https://example.org/articles/7",
        "1001",
        f"{path.as_posix()}#10",
    ]
    assert {a.origin for a in articles} == {str(path)}
    reasons = {f.path: f.reason for f in failures}
    assert list(reasons) == [f"{path}:{n}" for n in (2, 5, 6, 7, 9)]
    assert "invalid JSON" in reasons[f"{path}:2"]
    assert "not an object" in reasons[f"{path}:5"]
    assert "'text'" in reasons[f"{path}:6"]
    assert "'title'" in reasons[f"{path}:7"]
    assert "duplicate id 'fed-2024-01'" in reasons[f"{path}:9"]


def test_jsonl_concatenated_from_files_with_byte_order_marks(tmp_path: Path) -> None:
    path = tmp_path / "joined.jsonl"
    part = '\ufeff{{"id": "{0}", "text": "본문 {0}"}}\n'
    path.write_text(part.format(1) + part.format(2), encoding="utf-8")  # as `cat a.jsonl b.jsonl` leaves it
    articles, failures = split(load_file(path))
    assert [(a.id, a.text) for a in articles] == [("1", "본문 1"), ("2", "본문 2")] and not failures


def test_jsonl_contract_record_and_alternate_keys() -> None:
    articles, _ = split(load_file(FIXTURES / "corpus.jsonl"))
    fed, _, release, no_id = articles
    assert (fed.title, fed.date, fed.url, fed.source) == (
        "FOMC statement",
        dt.date(2024, 1, 31),
        "https://example.org/fomc/2024-01",
        "Federal Reserve",
    )
    assert release.text == "공정거래위원회는 온라인 플랫폼 사업자의 시장지배적 지위 남용 심사지침을 개정한다고 밝혔다."
    assert release.title == "공정위, 플랫폼 심사지침 개정 '발표'"
    assert (release.date, release.source) == (dt.date(2024, 2, 5), "공정거래위원회")
    assert release.url == "https://www.korea.kr/briefing/pressReleaseView.do?newsId=1001"
    assert (no_id.text, no_id.date) == ("Identified by file and line.", dt.date(2024, 3, 1))


def test_csv_korean_headers_multiline_fields_and_bad_rows() -> None:
    path = FIXTURES / "articles.csv"
    articles, failures = split(load_file(path))
    first, second, fourth = articles
    assert (first.id, first.url, first.title, first.date) == (
        "https://ko.wikinews.org/wiki/A",
        "https://ko.wikinews.org/wiki/A",
        "첫 기사",
        dt.date(2024, 4, 20),
    )
    assert first.text == "첫 줄입니다.\n둘째 줄, 쉼표 포함."
    # 출처 holds a publisher name here, not a URL: it becomes the source; the id falls back to file#row.
    assert (second.id, second.url, second.source, second.date) == (
        f"{path.as_posix()}#3",
        None,
        "연합뉴스",
        dt.date(2024, 4, 21),
    )
    assert (fourth.id, fourth.date) == (f"{path.as_posix()}#6", None)  # a bad date is None, not a failure
    # a failure names the line its row starts on: row 5 is on line 6, as row 2 spans two lines (ids fall back
    # to the row number instead, as the fourth article's does: row 6)
    assert failures == [LoadFailure(f"{path}:6", "column '내용' (the text) is empty")]


def test_csv_explicit_columns_cp949_and_bom(tmp_path: Path) -> None:
    rows = "번호,헤드라인,기사 본문,게재일\nA-1,제목 하나,본문 하나입니다.,2024-01-02\n"
    cp949 = tmp_path / "cp949.csv"
    cp949.write_bytes(rows.encode("cp949"))
    columns = CsvColumns(id="번호", title="헤드라인", text="기사 본문", date="게재일")
    article = load_one(cp949, columns)
    assert (article.id, article.title, article.text, article.date) == (
        "A-1",
        "제목 하나",
        "본문 하나입니다.",
        dt.date(2024, 1, 2),
    )
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + "id,text\n7,BOM 파일\n".encode())
    assert (load_one(bom).id, load_one(bom).text) == ("7", "BOM 파일")


def test_csv_without_a_text_column_names_the_option(tmp_path: Path) -> None:
    path = tmp_path / "numbers.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    assert "no text column" in only_failure(path).reason
    missing = tmp_path / "mapped.csv"
    missing.write_text("title,text\nx,y\n", encoding="utf-8")
    failure = next(iter(load_file(missing, CsvColumns(text="body"))))
    assert isinstance(failure, LoadFailure) and "'body'" in failure.reason


def test_csv_row_with_extra_fields_is_a_row_failure(tmp_path: Path) -> None:
    path = tmp_path / "extra.csv"
    path.write_text("title,text\nok,fine\nbad,unquoted, comma\n", encoding="utf-8")
    articles, failures = split(load_file(path))
    assert [a.text for a in articles] == ["fine"]
    assert failures[0].path == f"{path}:3" and "3 fields" in failures[0].reason


def test_csv_unclosed_quote_costs_its_row_not_the_rest_of_the_file(tmp_path: Path) -> None:
    # csv's lenient mode reads an unclosed quote to the end of the file: the two rows after it would vanish
    # into the first one's text without a word
    path = tmp_path / "stray.csv"
    path.write_text('title,text\nA,"first body\nB,second body\nC,third body\n', encoding="utf-8")
    articles, failures = split(load_file(path))
    assert [(a.title, a.text) for a in articles] == [("B", "second body"), ("C", "third body")]
    assert [f.path for f in failures] == [f"{path}:2"]
    assert "never closed" in failures[0].reason
    assert "2 lines after it" in failures[0].reason


def test_csv_unclosed_quote_on_the_last_line_and_in_the_header(tmp_path: Path) -> None:
    last = tmp_path / "last.csv"
    last.write_text('title,text\nA,fine\nB,"cut off', encoding="utf-8")
    articles, failures = split(load_file(last))
    assert [a.text for a in articles] == ["fine"]
    assert failures[0].path == f"{last}:3" and "never closed" in failures[0].reason
    header = tmp_path / "header.csv"
    header.write_text('title,"text\nA,fine\n', encoding="utf-8")
    assert "header row" in only_failure(header).reason


def test_csv_quotes_that_pair_up_across_rows_stay_one_field(tmp_path: Path) -> None:
    """Two stray quotes pair up: csv cannot tell that from a body with line breaks, so neither do we."""
    path = tmp_path / "paired.csv"
    path.write_text('title,text\nA,"one\nB,two"\nC,three\n', encoding="utf-8")
    assert [a.text for a in split(load_file(path))[0]] == ["one\nB,two", "three"]


def test_csv_files_joined_with_cat_repeat_no_header_as_an_article(tmp_path: Path) -> None:
    path = tmp_path / "joined.csv"
    path.write_text("id,text\n1,첫 본문\n\ufeffid,text\n2,둘째 본문\n", encoding="utf-8")
    articles, failures = split(load_file(path))
    assert [(a.id, a.text) for a in articles] == [("1", "첫 본문"), ("2", "둘째 본문")] and not failures


def test_csv_huge_field(tmp_path: Path) -> None:
    body = "가" * 300_000  # over csv's default 128 KiB field limit
    path = tmp_path / "huge.csv"
    path.write_text(f'title,text\nbig,"{body}"\n', encoding="utf-8")
    assert len(load_one(path).text) == 300_000


def _pdf(text: str | None, title: str | None = None) -> bytes:
    """A one-page PDF with `text` in Helvetica (None: an empty page, as a scan without OCR looks)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1") if text else b""
    info = f"<< /Title ({title}) >>".encode("latin-1") if title else b"<< >>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
        b" /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        info,
    ]
    return assemble_pdf(objects, trailer=b" /Info 6 0 R")


def test_pdf_text_layer_and_metadata_title(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(_pdf("The Committee decided to keep the policy rate unchanged.", title="Policy statement"))
    article = load_one(path)
    assert article.text == "The Committee decided to keep the policy rate unchanged."
    assert (article.title, article.id, article.origin) == ("Policy statement", path.as_posix(), str(path))


def test_pdf_without_text_layer_says_to_ocr(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(_pdf(None))
    assert only_failure(path).reason == "no text layer (scanned PDF?); OCR it first"


def test_corrupt_pdf_is_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\nnot really a pdf")
    assert only_failure(path).path == str(path)


# --- encodings and bad inputs ----------------------------------------------------------------------------------


def test_cp949_text_file_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "gov.txt"
    path.write_bytes("2024. 4. 20.\n\n정부 발표\n\n똠방각하 식으로 쓰인 공문도 읽힌다.".encode("cp949"))
    article = load_one(path)
    assert (article.date, article.title) == (dt.date(2024, 4, 20), "정부 발표")
    assert article.text == "정부 발표\n\n똠방각하 식으로 쓰인 공문도 읽힌다."


def test_euc_kr_short_file_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "short.txt"
    path.write_bytes("안녕하세요 정부입니다".encode("euc-kr"))
    assert load_one(path).text == "안녕하세요 정부입니다"


def test_utf8_bom_and_utf16_text_files(tmp_path: Path) -> None:
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + "제목\n\n본문입니다.".encode())
    assert load_one(bom).title == "제목"  # no BOM left in the title
    utf16 = tmp_path / "utf16.md"
    utf16.write_bytes("# 제목\n\n본문입니다.".encode("utf-16"))
    assert load_one(utf16).text == "제목\n\n본문입니다."


@pytest.mark.parametrize("content", [b"", b"   \n\t\r\n  ", b"\xef\xbb\xbf \n"])
def test_empty_files_fail(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    assert only_failure(path) == LoadFailure(str(path), "empty file")


def test_binary_file_fails(tmp_path: Path) -> None:
    path = tmp_path / "image.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    assert only_failure(path).reason.startswith("binary or undecodable")


def test_undecodable_bytes_fail(tmp_path: Path) -> None:
    path = tmp_path / "garbage.md"
    path.write_bytes(bytes([0x81, 0xFF, 0xFE, 0x9F, 0x80, 0xC0, 0xFF]) * 40)
    assert only_failure(path).reason.startswith("binary or undecodable")


def test_a_stray_byte_in_a_utf8_csv_damages_one_character_not_the_file(tmp_path: Path) -> None:
    # a truncated copy or one bad row used to reject the whole CSV as "binary", or decode it all as cp1250
    rows = ["id,title,text"] + [f"r{i},제목 {i},정부는 {i}번째 정책을 발표했다." for i in range(30)]
    data = "\n".join(rows).encode()
    damaged = data.replace(b"r7,", b"r7\xff,", 1).replace(b"r9,", b"r9\x00,", 1)
    path = tmp_path / "news.csv"
    path.write_bytes(damaged)
    items = list(load_file(path))
    articles = [item for item in items if isinstance(item, Article)]
    assert len(articles) == 30 and not [item for item in items if isinstance(item, LoadFailure)]
    assert articles[0].text == "정부는 0번째 정책을 발표했다."


def test_a_legacy_single_byte_file_is_not_mistaken_for_damaged_utf8(tmp_path: Path) -> None:
    path = tmp_path / "old.txt"
    path.write_bytes("Caf\u00e9 culture\n\nThe caf\u00e9 opened on Monday.".encode("latin-1"))
    assert "\ufffd" not in load_one(path).text


@pytest.mark.parametrize(
    ("text", "codec"),
    [
        ("The café served a naïve crème brûlée; Señor Müller paid €5.", "cp1252"),
        ("Příliš žluťoučký kůň úpěl ďábelské ódy. Dobrý den, jak se máte?", "cp1250"),
    ],
)
def test_legacy_western_and_central_european_files_decode_as_written(tmp_path: Path, text: str, codec: str) -> None:
    path = tmp_path / "legacy.txt"
    path.write_bytes(text.encode(codec))
    assert load_one(path).text == text


def test_binary_jsonl_is_one_failure_not_one_per_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\x00\x01\x02\n" * 100)
    assert only_failure(path).reason.startswith("binary or undecodable")


def test_file_over_the_size_cap_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "MAX_FILE_BYTES", 100)
    path = tmp_path / "big.txt"
    path.write_text("긴 본문입니다. " * 20, encoding="utf-8")
    failure = only_failure(path)
    assert "over the 100 bytes limit" in failure.reason and "split it" in failure.reason


def test_missing_path_and_explicit_unsupported_file(tmp_path: Path) -> None:
    docx = tmp_path / "report.docx"
    docx.write_bytes(b"PK\x03\x04")
    files, failures = discover_files([tmp_path / "nope.txt", docx])
    assert files == []
    assert failures[0] == LoadFailure(str(tmp_path / "nope.txt"), "no such file or folder; check the path")
    assert failures[1].path == str(docx) and "unsupported file type '.docx'" in failures[1].reason


def test_discovery_is_recursive_sorted_and_skips_hidden_and_unsupported(tmp_path: Path) -> None:
    for name in ("b/2.txt", "b/1.MD", "a.csv", ".hidden.txt", ".git/x.txt", "c/notes.docx", "c/d/e.jsonl"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x", encoding="utf-8")
    files, failures = discover_files([tmp_path, tmp_path / "a.csv", tmp_path / ".hidden.txt"])
    relative = [f.relative_to(tmp_path).as_posix() for f in files]
    assert relative == ["a.csv", "b/1.MD", "b/2.txt", "c/d/e.jsonl", ".hidden.txt"]  # explicit hidden file: taken
    assert failures == []
    assert {".txt", ".md", ".markdown", ".html", ".htm", ".jsonl", ".csv", ".pdf"} == SUPPORTED_SUFFIXES


def test_skipped_files_are_logged_once_per_run_not_per_pass(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a.txt").write_text("본문", encoding="utf-8")
    (tmp_path / "notes.docx").write_bytes(b"PK")
    with caplog.at_level("INFO", logger="ingest.loaders"):
        assert len(discover_files([tmp_path], log=False)[0]) == 1  # the CLI's first pass sizes the progress bar
        assert not caplog.records
        discover_files([tmp_path])
    assert [r.getMessage() for r in caplog.records] == [f"{tmp_path}: skipped 1 file(s) of unsupported types"]


def test_folder_of_two_thousand_files_loads_them_all(tmp_path: Path) -> None:
    for i in range(2000):
        sub = tmp_path / f"batch{i % 10}"
        sub.mkdir(exist_ok=True)
        (sub / f"doc{i:04d}.txt").write_text(f"문서 {i}\n\n본문 번호 {i}입니다.", encoding="utf-8")
    articles, failures = split(iter_documents([tmp_path]))
    assert failures == []
    assert len(articles) == 2000 and len({a.id for a in articles}) == 2000
    assert articles[0].origin == str(tmp_path / "batch0" / "doc0000.txt")


def test_one_bad_file_does_not_stop_the_others(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("첫 문서입니다.", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes(b"\x00\x01binary")
    (tmp_path / "c.jsonl").write_text('{"id": "1", "text": "ok"}\n{bad\n', encoding="utf-8")
    (tmp_path / "d.txt").write_text("마지막 문서입니다.", encoding="utf-8")
    articles, failures = split(iter_documents([tmp_path, tmp_path / "missing"]))
    assert [a.text for a in articles] == ["첫 문서입니다.", "ok", "마지막 문서입니다."]
    assert [f.path for f in failures] == [
        str(tmp_path / "missing"),
        str(tmp_path / "b.txt"),
        f"{tmp_path / 'c.jsonl'}:2",
    ]


def test_ids_are_deterministic_across_runs() -> None:
    first = [a.id for a in split(iter_documents([FIXTURES]))[0]]
    second = [a.id for a in split(iter_documents([FIXTURES]))[0]]
    assert first == second and len(first) == len(set(first))


# --- the real shared corpora ---------------------------------------------------------------------------------


def test_wikinews_csv_loads_all_rows() -> None:
    articles, failures = split(load_file(require_shared("ko_wikinews_boddari/wikinews.csv")))
    assert failures == []
    assert len(articles) == 644 and len({a.id for a in articles}) == 644
    assert all(a.url and a.url.startswith("https://ko.wikinews.org/") and a.id == a.url for a in articles)
    assert all(a.date and a.title and a.text for a in articles)
    assert articles[0].date == dt.date(2009, 1, 20) and articles[0].title == "버락 오바마 미국 대통령 공식 취임"


def test_press_release_jsonl_loads_every_line() -> None:
    articles, failures = split(load_file(require_shared("korea_kr_press_releases_2026_07/press_releases.jsonl")))
    assert failures == []
    assert len(articles) == 1727 and len({a.id for a in articles}) == 1727
    assert all(a.date and dt.date(2026, 7, 1) <= a.date <= dt.date(2026, 7, 31) for a in articles)
    assert not any("전재하여 제공함을 알려드립니다" in a.text for a in articles)  # the stub notice is gone
    assert not any("&#039;" in (a.title or "") for a in articles)
    assert sum(len(a.text) > 300 for a in articles) >= 53  # the real content_text bodies are used
    assert all(a.source and a.source != "대한민국 정책브리핑" for a in articles)  # the ministry


def test_broken_links_are_named_as_such(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text("Port news.\n\nThe port grew.", encoding="utf-8")
    (folder / "gone.txt").symlink_to(tmp_path / "missing.txt")
    (folder / "loop.txt").symlink_to(folder / "loop.txt")
    files, failures = discover_files([folder])
    assert [f.name for f in files] == ["good.txt"]
    assert sorted(Path(f.path).name for f in failures) == ["gone.txt", "loop.txt"]
    assert all("link" in f.reason for f in failures)
    _, named = discover_files([folder / "loop.txt"])
    assert "link" in named[0].reason


def test_a_pdf_without_pages_says_so(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    path = tmp_path / "empty.pdf"
    with path.open("wb") as handle:
        PdfWriter().write(handle)
    assert only_failure(path).reason == "the PDF has no pages"


def test_a_utf16_jsonl_with_its_bom_loads_line_by_line(tmp_path: Path) -> None:
    lines = ['{"id": "a", "text": "정부는 새 정책을 발표했다."}', "{broken", '{"id": "b", "text": "Rail news."}']
    path = tmp_path / "windows.jsonl"
    path.write_bytes("\r\n".join(lines).encode("utf-16"))  # BOM + UTF-16 LE, as Windows tools save it
    items = list(load_file(path))
    assert [i.id for i in items if isinstance(i, Article)] == ["a", "b"]
    assert [i.path for i in items if isinstance(i, LoadFailure)] == [f"{path}:2"]
