"""Prompt texts as named constants, and the refusal messages.

Document text is always passed as quoted data between markers, never as instructions.
"""

from __future__ import annotations

REFUSAL_MESSAGE_EN = "I could not find this in the indexed articles."
REFUSAL_MESSAGE_KO = "색인된 기사에서 이에 대한 내용을 찾지 못했습니다."
