"""File bytes → text: byte-order marks, strict UTF-8, UTF-8 with a few stray bytes, else detected (Korean
CP949 preferred when it fits); binary files refused."""

from __future__ import annotations

import codecs
import logging
import unicodedata
from pathlib import Path

from rag.errors import DocumentError
from rag.text.hangul import is_syllable

logger = logging.getLogger(__name__)

SNIFF_BYTES = 64 * 1024


BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]
KOREAN_CODECS = {"cp949", "euc_kr", "johab", "iso2022_kr", "uhc"}
BINARY_REASON = (
    "binary or undecodable file: it is not text in UTF-8, CP949/EUC-KR or another known encoding; "
    "save it as UTF-8 text (or use its proper extension)"
)


def decode_bytes(data: bytes, source: str = "input") -> str:
    """Decode file content: BOM, else strict UTF-8, else UTF-8 with a few stray bytes, else detection
    (Korean CP949 preferred when it fits).

    Raises DocumentError for empty files and for binary or undecodable content.
    """
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return check_text(_decode_strict(data[len(bom) :], encoding))
    if not data.strip():
        raise DocumentError("empty file")
    nuls = data.count(b"\x00")
    if nuls:
        # a stray NUL or two in a big CSV is damage, not a binary file; many of them are (or UTF-16)
        if nuls > max(2, len(data) // 1000):
            raise DocumentError(BINARY_REASON)
        logger.warning("%s: dropped %d NUL byte(s)", source, nuls)
        data = data.replace(b"\x00", b"")
    damaged = _mostly_utf8(data)
    if damaged is not None:
        text, bad = damaged
        logger.warning("%s: %d byte sequence(s) are not UTF-8; replaced by U+FFFD", source, bad)
        return check_text(text)
    detected = detect_encoding(data)
    if detected is None:
        raise DocumentError(BINARY_REASON)
    return check_text(_decode_strict(data, detected))


def _mostly_utf8(data: bytes) -> tuple[str, int] | None:
    """UTF-8 text with a few undecodable bytes (a truncated copy, one bad row): the text with U+FFFD in their
    place and how many, or None. Valid multi-byte characters must outnumber the bad sequences 20 to 1, so a
    legacy single-byte file ("caf\xe9") or a CP949 one still goes to detection."""
    if decodes(data, "utf-8"):
        return None
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - data.decode("utf-8", errors="ignore").count("\ufffd")
    wide = sum(1 for ch in text if ord(ch) > 0x7F) - text.count("\ufffd")
    return (text, bad) if bad and wide >= 20 * bad else None


def detect_encoding(data: bytes) -> str | None:
    """A codec name that decodes `data` strictly, or None. CP949 stands in for every Korean codec."""
    if decodes(data, "utf-8"):
        return "utf-8"
    # only files that are not UTF-8 need detection
    import charset_normalizer

    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    guess = best.encoding if best else None
    # Short Western text often fits several code pages equally well, and charset_normalizer then lists
    # Central European cp1250 first ("naïve" → "naďve"); on a tie the far commoner Windows-1252 wins.
    if best is not None and any(
        m.encoding == "cp1252" and m.chaos <= best.chaos and m.coherence >= best.coherence for m in matches
    ):
        guess = "cp1252"
    if guess in KOREAN_CODECS and decodes(data, "cp949"):
        return "cp949"
    if _looks_korean_cp949(data):
        return "cp949"
    return guess


def decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _looks_korean_cp949(data: bytes) -> bool:
    """Strict CP949 decoding works and most non-ASCII characters are Hangul: a Korean government file."""
    try:
        text = data.decode("cp949")
    except UnicodeDecodeError:
        return False
    wide = [ch for ch in text if ord(ch) > 0x7F]
    return bool(wide) and sum(is_syllable(ch) for ch in wide) >= 0.6 * len(wide)


def _decode_strict(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DocumentError(BINARY_REASON) from exc


def check_text(text: str) -> str:
    if not text.strip():
        raise DocumentError("empty file")
    sample = text[:SNIFF_BYTES]
    odd = sum(1 for ch in sample if _is_binary_char(ch))
    if odd > 0.02 * len(sample):
        raise DocumentError(BINARY_REASON)
    return text


def _is_binary_char(ch: str) -> bool:
    if ch in "\n\r\t\f\v":
        return False
    return ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Co", "Cs")


def read_text(path: Path) -> str:
    return decode_bytes(path.read_bytes(), source=str(path))
