"""Words the shading leaves out by default: function words, punctuation and bare reference numerals.

Attention heads park a large share of their weight on "the", "of", "said", particles such as は and を,
punctuation, and the reference numerals patents sprinkle everywhere ("valve 211", "step S101",
"チューブ４１"). Shading them draws the eye to words that carry no meaning, so the default view leaves
them unshaded. Only the display changes: the raw per-word scores stay in the CSV/JSON exports, and a
reviewer can switch this off.
"""
from __future__ import annotations

import functools
import re
import unicodedata

from .segment import KANJI_DIGITS, mecab_tagger

# About 210 English function words: articles, prepositions, pronouns, auxiliaries, conjunctions, and the
# patent-drafting words that behave like them ("said", "wherein", "thereof").
ENGLISH_STOP_WORDS: frozenset[str] = frozenset("""
a an the
about above across after against along among around as at before behind below beneath beside between
beyond by despite down during except for from in inside into near of off on onto out outside over past
per since than through throughout till to toward towards under underneath unlike until up upon via with
within without
i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his himself she her
hers herself it its itself they them their theirs themselves this that these those who whom whose which
what whatever whichever whoever
am is are was were be been being have has had having do does did doing will would shall should can could
may might must ought
and or but nor so yet if then else because although though while whereas unless whether either neither
both also not no only just very too
there here when where why how all any each every some such other another same own few more most
said wherein whereby whereas wherefrom whereof whereupon thereof therein thereto thereby therewith
therefrom thereon thereafter herein hereby hereof hereto hereinafter hereinabove hereinbelow aforementioned
aforesaid respectively
etc
don't doesn't didn't isn't aren't wasn't weren't won't wouldn't can't cannot couldn't shouldn't it's
""".split())

# Japanese words that behave like "said"/"the" in patent prose; the grammar words are found by tagging.
JAPANESE_STOP_WORDS: frozenset[str] = frozenset({"前記", "該", "上記", "当該"})
# What a bare Japanese word tagged alone is often mis-tagged as (が, で, て, から → 接続詞); in running text
# these forms are almost always particles, so they are decided by form, not by the tag.
_JA_PARTICLE_FORMS = frozenset("が で て から まで より ば けど けれど けれども し ので のに".split())
_JA_UNSHADED_POS = frozenset({"助詞", "助動詞", "記号", "補助記号"})

# A reference numeral: digits with an optional single-letter or prime suffix (214a, 102A, 20'), or a one-
# or two-letter capital prefix before at least two digits (S101, ST12). Short prefixed forms such as R1,
# X5, CO2 or N2 are substituents and molecules in chemistry claims, so they stay shaded, and so do unit-
# like suffixes ("10mg", "5V" written as one word). A number written apart from its unit ("10 mg") is a
# bare number word and counts as a numeral, which costs little because the unit next to it stays shaded.
_NUMERAL = re.compile(r"(?:[0-9]+[A-Za-z]?|[A-Z]{1,2}-?[0-9]{2,}[A-Za-z]?)['’′]*")
_UNIT_SUFFIX = re.compile(r"[0-9]+(?:m|g|s|h|l|L|V|W|K|N|J|T|M|G)['’′]*")
_HAS_CONTENT = re.compile(r"[^\W_]")

_JA_NUMBER = re.compile(rf"第|[{KANJI_DIGITS}万億]+")  # 第六十七条 → 第 / 六十 / 七 / 条


def _is_numeral(word: str) -> bool:
    return bool(_NUMERAL.fullmatch(word)) and not _UNIT_SUFFIX.fullmatch(word)


@functools.lru_cache(maxsize=65536)
def _japanese_unshaded(word: str) -> bool:
    if word in JAPANESE_STOP_WORDS or word in _JA_PARTICLE_FORMS:
        return True
    nodes = list(mecab_tagger()(word))
    return bool(nodes) and all(node.feature.pos1 in _JA_UNSHADED_POS for node in nodes)


@functools.lru_cache(maxsize=65536)
def _unshaded(text: str, language: str) -> bool:
    word = unicodedata.normalize("NFKC", text).strip()
    if not _HAS_CONTENT.search(word):
        return True  # punctuation and symbols only
    if _is_numeral(word):
        return True
    if language == "ja":
        if re.fullmatch(r"[A-Za-z]", word) or _JA_NUMBER.fullmatch(word):
            return True  # a reference-sign letter split off by the tagger (２０ｂ → ２０ + ｂ), a kanji number
        if re.fullmatch(r"[A-Za-z][A-Za-z'\-]*", word):
            return word.casefold().replace("’", "'") in ENGLISH_STOP_WORDS
        return _japanese_unshaded(word)
    return word.casefold().replace("’", "'") in ENGLISH_STOP_WORDS


def is_unshaded_word(text: str, language: str, pos: str | None = None) -> bool:
    """True when the default shading should leave this word out.

    That is an English stop word, a Japanese particle, auxiliary or symbol (by fugashi/unidic part of
    speech: 助詞, 助動詞, 記号, 補助記号), punctuation, a bare reference numeral ("211", "214a",
    "S101", "１２"), or a number in kanji and the ordinal 第 (a statute's 第六十七条第四項 was its most
    shaded run: the tagger splits it into 第 / 六十 / 七 / 条, and 条 alone stays shaded). Japanese words are tagged on their own and the answer cached per word, because a
    document repeats the same few thousand words; a caller that already tagged the word in context may
    pass its part of speech (unidic pos1) as `pos`, which is more accurate for forms such as が and で.
    Raw scores are untouched: this only decides what the default view shades.
    """
    if pos is not None and language == "ja":
        if pos in _JA_UNSHADED_POS:
            return True
        word = unicodedata.normalize("NFKC", text).strip()
        return word in JAPANESE_STOP_WORDS or _is_numeral(word) or bool(_JA_NUMBER.fullmatch(word)) or \
            not _HAS_CONTENT.search(word)
    return _unshaded(text, language)
