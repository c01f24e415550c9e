"""Japanese or English: script ratios are enough for the two languages the product serves."""
from __future__ import annotations


def is_japanese_char(ch: str) -> bool:
    o = ord(ch)
    return (
        0x3040 <= o <= 0x30FF  # hiragana, katakana
        or 0x3400 <= o <= 0x9FFF  # CJK ideographs
        or 0xF900 <= o <= 0xFAFF
        or 0xFF66 <= o <= 0xFF9F  # half-width katakana
        or 0x31F0 <= o <= 0x31FF
    )


def detect_language(text: str, sample: int = 20000) -> str:
    """'ja' when Japanese script makes up at least a fifth of the letters of the sample, else 'en'."""
    s = text[:sample]
    ja = sum(1 for ch in s if is_japanese_char(ch))
    latin = sum(1 for ch in s if ch.isascii() and ch.isalpha())
    fw_latin = sum(1 for ch in s if 0xFF21 <= ord(ch) <= 0xFF5A)
    letters = ja + latin + fw_latin
    if letters == 0:
        return "en"
    return "ja" if ja / letters >= 0.2 else "en"
