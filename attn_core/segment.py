"""Words, sentences and passages: the units a reader sees, independent of any model's tokens.

Words are what get highlighted, so Japanese words are fugashi/unidic morphemes tagged line by line,
exactly as the contract checker does. Sentences and passages follow the document's line structure
because patents, statutes and PDF extractions encode their structure in line starts and blank lines,
while their hard-wrapped lines must not cut a sentence.
"""
from __future__ import annotations

import bisect
import re
import threading
from dataclasses import dataclass
from typing import Sequence

from .document import Paragraph

Span = tuple[int, int]

# ---------------------------------------------------------------- words

# English words: letters/digits with internal apostrophes and hyphens kept in one word ("don't",
# "mid-dialog", "state-of-the-art"), and numbers with internal separators ("1.5", "10,000").
_WORD_CHARS = r"(?:[^\W_]|[\u0300-\u036f])+"
_EN_WORD = re.compile(rf"\d+(?:[.,]\d+)+|{_WORD_CHARS}(?:['\u2019\-\u2010]{_WORD_CHARS})*")
_LETTER_OR_DIGIT = re.compile(r"[^\W_]")  # \w minus "_" is exactly Unicode L* and N*

_local = threading.local()


def mecab_tagger():
    """One MeCab tagger per thread: taggers are not safe to share, and creating one costs ~0.1 s."""
    tagger = getattr(_local, "tagger", None)
    if tagger is None:
        import fugashi
        import unidic_lite

        tagger = fugashi.Tagger("-d " + unidic_lite.DICDIR)
        _local.tagger = tagger
    return tagger


def _japanese_words(text: str) -> list[Span]:
    # Tagged line by line with the newline kept, like check_contract.py, so boundaries agree with its check.
    tagger = mecab_tagger()
    spans: list[Span] = []
    pos = 0
    for line in text.splitlines(keepends=True):
        off = 0
        for node in tagger(line):
            surface = node.surface
            s = line.find(surface, off) if surface else -1
            if s < 0:
                continue
            off = s + len(surface)
            if _LETTER_OR_DIGIT.search(surface):
                spans.append((pos + s, pos + off))
        pos += len(line)
    return spans


def word_spans(text: str, language: str) -> list[Span]:
    """Every word in order; punctuation-only tokens are left out because they carry no meaning to show."""
    if language == "ja":
        return _japanese_words(text)
    return [m.span() for m in _EN_WORD.finditer(text)]


# ---------------------------------------------------------------- line structure

_WIDE = re.compile(r"[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]")
# A line starting like this opens a new unit (indented paragraph, numbered paragraph, list item, article).
_UNIT_START = re.compile(
    r"[ \t\u3000]"
    r"|[【\[［〔《<＜■□●○◆◇・※*＊•=＝#＃|｜]"
    r"|[-–—]\s"
    r"|[(（][0-9０-９a-zA-Zａ-ｚＡ-Ｚ一二三四五六七八九十]{1,3}[)）]"
    r"|[0-9０-９]{1,3}[.．)）、　 ]"
    r"|[一二三四五六七八九十百]+[　、．.]"
    r"|第[一二三四五六七八九十百千〇0-9０-９]+[条章節款項部編篇]"
)
_SHORT_LINE = 0.75  # of the typical line width: a shorter line ended its paragraph (not a hard wrap)


def display_width(s: str) -> int:
    """Columns the text takes in a monospaced view: CJK and full-width characters count twice."""
    return len(s) + len(_WIDE.findall(s))


def _lines(text: str) -> list[Span]:
    """(start, end) of each line's content, whitespace-trimmed; blank lines give (start, start)."""
    out = []
    pos = 0
    for line in text.splitlines(keepends=True):
        s, e = pos, pos + len(line.rstrip("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"))
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        out.append((s, e) if s < e else (s, s))
        pos += len(line)
    return out


def _typical_width(text: str, lines: list[Span]) -> float:
    widths = sorted(display_width(text[s:e]) for s, e in lines if e > s)
    return widths[int(0.8 * (len(widths) - 1))] if widths else 0.0


def _line_breaks(text: str) -> list[int]:
    """Offsets (end of a line's content) where the line structure ends a paragraph.

    A break is a blank line, a next line that opens a unit (indent, 【…】, [0001], 1., 第一条…), a short
    previous line, or a closing quote followed by an opening one. A long line running into an ordinary
    line is a hard wrap and does not break.
    """
    lines = _lines(text)
    full = _typical_width(text, lines)
    breaks = []
    prev: Span | None = None
    blank = False
    for s, e in lines:
        if s == e:
            blank = prev is not None
            continue
        if prev is not None:
            ps, pe = prev
            if (blank or _UNIT_START.match(text, s) or display_width(text[ps:pe]) < _SHORT_LINE * full
                    or (text[pe - 1] in "」』" and text[s] in "「『")):
                breaks.append(pe)
        prev, blank = (s, e), False
    if prev is not None:
        breaks.append(prev[1])
    return breaks


# ---------------------------------------------------------------- sentences

_JA_END = re.compile(r"[。！？!?]+[」』）)】〕］\]”’\"']*")
_JA_CONTINUES = re.compile(r"[ \t\u3000]*[がをにはとのでもやへっ]")
_EN_END = re.compile(r"[.!?]+[\"')\]’”]*(?=[ \t]*(?:\n|$)|\s+[\"'(\[“‘]?[A-Z0-9])")
_ABBREVIATIONS = frozenset(
    "e.g. i.e. etc. fig. figs. no. nos. vs. al. cf. approx. ca. mr. mrs. ms. dr. prof. inc. corp. ltd. co. "
    "jr. sr. st. ser. pat. appl. u.s. ref. refs. eq. eqs. vol. pp. p. sec. ch. art. para. min. max. resp. "
    "viz. ex. esp. dept. univ. jan. feb. mar. apr. jun. jul. aug. sep. sept. oct. nov. dec.".split()
)


def _is_abbreviation(text: str, dot: int) -> bool:
    start = dot
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    word = text[start:dot + 1].lstrip("([\"'“‘").lower()
    if re.fullmatch(r"[0-9]{1,3}\.", word) and (start == 0 or text[start - 1] == "\n"):
        return True  # "6. A method for…": a claim or list number opening a line, not the end of a sentence
    return word in _ABBREVIATIONS or bool(re.fullmatch(r"(?:[a-z]\.)+", word))


def _punctuation_ends(text: str, language: str) -> list[int]:
    ends = []
    if language == "ja":
        for m in _JA_END.finditer(text):
            if m.group()[-1] not in "。！？!?" and _JA_CONTINUES.match(text, m.end()):
                continue  # 「…！」と彼は / （…という。）が: the quote or aside sits inside a sentence
            ends.append(m.end())
    else:
        for m in _EN_END.finditer(text):
            dot = m.start() + len(m.group().rstrip("\"')]’”")) - 1
            if text[dot] == "." and _is_abbreviation(text, dot):
                continue
            ends.append(m.end())
    return ends


def _spans_between(text: str, cuts: Sequence[int], start: int = 0, end: int | None = None) -> list[Span]:
    """Trimmed, non-empty pieces of text[start:end] between sorted cut offsets."""
    end = len(text) if end is None else end
    out = []
    prev = start
    for cut in list(cuts) + [end]:
        if cut <= prev or cut > end:
            continue
        s, e = prev, cut
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s < e:
            out.append((s, e))
        prev = cut
    return out


def sentence_spans(text: str, language: str) -> list[Span]:
    """Sentences in order, trimmed; together they hold every non-space character of the text."""
    cuts = sorted(set(_punctuation_ends(text, language)) | set(_line_breaks(text)))
    return _spans_between(text, cuts)


def boundary_offsets(text: str, language: str) -> list[int]:
    """Where a sentence or paragraph ends: the chunker prefers to cut a long document there."""
    return sorted({e for _, e in sentence_spans(text, language)})


# ---------------------------------------------------------------- passages

@dataclass(frozen=True)
class PassageSpan:
    start: int
    end: int
    label: str | None = None
    page: int | None = None


_NUMBERED = re.compile(r"^[ \t\u3000]*(\[[0-9]{4,5}\]|【[0-9０-９]{4,5}】)", re.M)
KANJI_DIGITS = "〇一二三四五六七八九十百千"
"""Characters of a number written in kanji (六十七, 二百); a regex character class body."""
_KANJI_OR_DIGITS = KANJI_DIGITS + "0-9０-９"
ARTICLE_LINE = re.compile(rf"^[ \t\u3000]*(第[{_KANJI_OR_DIGITS}]+条(?:の[{_KANJI_OR_DIGITS}]+)*)", re.M)
"""A Japanese statute's article heading at a line start (第二十九条の二); group 1 is the heading."""
_TABLE_OPEN, _TABLE_CLOSE = "[TABLE]", "[/TABLE]"
_HEADING_MAX_WIDTH = 60
_HEADING_NOT_ENDING = tuple(".。!?！？:：;；,、，")


def _has_content(text: str, s: int, e: int) -> bool:
    return _LETTER_OR_DIGIT.search(text, s, e) is not None


_CAPTION = re.compile(r"[ \t\u3000]*[（(【\[][^\n]{1,38}[）)】\]][ \t\u3000]*$", re.M)


def _is_heading(text: str, s: int, e: int) -> bool:
    """A short single line with no sentence punctuation at its end: ABSTRACT, CLAIMS, 【請求項１】, （目的）."""
    piece = text[s:e]
    return "\n" not in piece and display_width(piece) <= _HEADING_MAX_WIDTH and not piece.endswith(_HEADING_NOT_ENDING)


def _without_table_cuts(text: str, cuts: list[int]) -> list[int]:
    """A [TABLE] … [/TABLE] block is one unit: its rows are not paragraphs of their own."""
    blocked = []
    for m in re.finditer(re.escape(_TABLE_OPEN), text):
        close = text.find(_TABLE_CLOSE, m.end())
        if close >= 0:
            blocked.append((m.end(), close))
    if not blocked:
        return cuts
    return [c for c in cuts if not any(a <= c < b for a, b in blocked)]


def _units(text: str, language: str, start: int, end: int, line_cuts: list[int],
           sentence_cuts: list[int]) -> list[PassageSpan]:
    """Fallback passages for a region: English paragraphs by lines, Japanese sentences; a heading joins what follows."""
    cuts = line_cuts if language != "ja" else sentence_cuts
    lo, hi = bisect.bisect_right(cuts, start), bisect.bisect_left(cuts, end)
    pieces = _spans_between(text, cuts[lo:hi], start, end)
    out: list[PassageSpan] = []
    heading: Span | None = None  # pending run of heading lines, joined to the next piece when adjacent
    label: str | None = None
    for s, e in pieces:
        adjacent = heading is not None and text.count("\n", heading[1], s) < 2
        if heading is not None and not adjacent:
            out.append(PassageSpan(*heading))
            heading = None
        if _is_heading(text, s, e):
            # the passage is named by its caption (（目的）, 【０００１】) nearest the text, else by its first
            # line: a run of list items ("一　…" "二　…") must not be named after its last item
            if heading is None or _CAPTION.match(text, s):
                label = text[s:e][:40]
            heading = (heading[0] if heading else s, e)
        elif heading is not None:
            out.append(PassageSpan(heading[0], e, label=label))
            heading = None
        else:
            out.append(PassageSpan(s, e))
    if heading is not None:
        out.append(PassageSpan(*heading))
    return out


def _numbered_passages(text: str, language: str, markers: list[re.Match], line_cuts: list[int],
                       sentence_cuts: list[int]) -> list[PassageSpan]:
    out: list[PassageSpan] = []
    region_start = 0
    for i, m in enumerate(markers):
        start = m.start(1)
        limit = markers[i + 1].start(1) if i + 1 < len(markers) else len(text)
        content = m.end(1)
        while content < limit and text[content].isspace():
            content += 1  # a marker alone on its line: the paragraph is on the next lines
        k = bisect.bisect_right(line_cuts, content)
        end = min(line_cuts[k], limit) if k < len(line_cuts) else limit
        opened = text.find(_TABLE_OPEN, start, end)
        if opened >= 0 and text.find(_TABLE_CLOSE, opened, end) < 0:
            close = text.find(_TABLE_CLOSE, opened, limit)
            end = close + len(_TABLE_CLOSE) if close >= 0 else limit
        out.extend(_units(text, language, region_start, start, line_cuts, sentence_cuts))
        out.append(PassageSpan(start, end, label=m.group(1)))
        region_start = end
    out.extend(_units(text, language, region_start, len(text), line_cuts, sentence_cuts))
    return out


def _paragraph_passages(text: str, language: str, paragraphs: Sequence[Paragraph], line_cuts: list[int],
                        sentence_cuts: list[int]) -> list[PassageSpan]:
    out: list[PassageSpan] = []
    pos = 0
    for p in sorted(paragraphs, key=lambda p: (p.start, p.end)):
        s, e = max(p.start, pos, 0), min(p.end, len(text))
        if e <= s:
            continue
        out.extend(_units(text, language, pos, s, line_cuts, sentence_cuts))  # text ingestion left between
        out.append(PassageSpan(s, e, label=p.label, page=p.page))
        pos = e
    out.extend(_units(text, language, pos, len(text), line_cuts, sentence_cuts))
    return out


def _hard_cut(text: str, s: int, e: int, max_chars: int) -> list[Span]:
    """A single sentence longer than max_chars: cut at the last space or comma before the limit."""
    out = []
    while e - s > max_chars:
        window = text[s:s + max_chars]
        cut = max(window.rfind(" "), window.rfind("、"), window.rfind(","), window.rfind("，"), window.rfind("\n"))
        cut = s + cut + 1 if cut > max_chars // 2 else s + max_chars
        out.append((s, cut))
        s = cut
    out.append((s, e))
    return out


def _split_long(text: str, p: PassageSpan, sentences: list[Span], sentence_ends: list[int],
                max_chars: int) -> list[PassageSpan]:
    """Split at sentence ends, packing whole sentences up to max_chars."""
    if p.end - p.start <= max_chars:
        return [p]
    lo = bisect.bisect_right(sentence_ends, p.start)
    pieces: list[Span] = []
    for s, e in sentences[lo:]:
        if s >= p.end:
            break
        pieces.extend(_hard_cut(text, max(s, p.start), min(e, p.end), max_chars))
    groups: list[Span] = []
    for s, e in pieces:
        if groups and e - groups[-1][0] <= max_chars:
            groups[-1] = (groups[-1][0], e)
        else:
            groups.append((s, e))
    return [PassageSpan(s, e, p.label, p.page) for s, e in groups]


def _clean(text: str, passages: list[PassageSpan], paragraphs: Sequence[Paragraph]) -> list[PassageSpan]:
    """Trim, drop empty or punctuation-only passages, keep order without overlap, fill pages from ingestion."""
    starts = sorted((p.start, p.page) for p in paragraphs if p.page is not None)
    keys = [s for s, _ in starts]
    out: list[PassageSpan] = []
    pos = 0
    for p in passages:
        s, e = max(p.start, pos), p.end
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s >= e or not _has_content(text, s, e):
            continue
        page = p.page
        if page is None and starts:
            k = bisect.bisect_right(keys, s) - 1
            page = starts[k][1] if k >= 0 else None
        out.append(PassageSpan(s, e, p.label, page))
        pos = e
    return out


def _article_labels(text: str, passages: list[PassageSpan]) -> list[PassageSpan]:
    """A statute's numbered paragraphs (２　前項の…) and provisos never repeat their article's number, so a
    reader of one such passage alone cannot tell where it is: each unlabelled passage that starts no article
    is labelled with the article it sits in (第四十一条). Texts with fewer than three article lines are left
    as they are."""
    heads = [(m.start(1), m.group(1)) for m in ARTICLE_LINE.finditer(text)]
    if len(heads) < 3:
        return passages
    keys = [s for s, _ in heads]
    out = []
    for p in passages:
        k = bisect.bisect_left(keys, p.start)
        inside = k < len(keys) and keys[k] < p.end  # the passage holds an article heading: it names itself
        if p.label is None and not inside and k > 0:
            p = PassageSpan(p.start, p.end, heads[k - 1][1], p.page)
        out.append(p)
    return out


def passage_spans(text: str, language: str, paragraphs: Sequence[Paragraph] = (),
                  max_chars: int = 1500) -> list[PassageSpan]:
    """Units a reviewer can rank and read: numbered patent paragraphs first, else ingestion's paragraphs,
    else English paragraphs / Japanese sentences; none longer than max_chars unless one word is."""
    sentences = sentence_spans(text, language)
    sentence_cuts = [e for _, e in sentences]
    line_cuts = _without_table_cuts(text, _line_breaks(text))
    markers = list(_NUMBERED.finditer(text))
    if markers:
        raw = _numbered_passages(text, language, markers, line_cuts, sentence_cuts)
    elif paragraphs:
        raw = _paragraph_passages(text, language, paragraphs, line_cuts, sentence_cuts)
    else:
        raw = _units(text, language, 0, len(text), line_cuts, sentence_cuts)
    split = [q for p in raw for q in _split_long(text, p, sentences, sentence_cuts, max_chars)]
    passages = _clean(text, split, paragraphs)
    return _article_labels(text, passages) if language == "ja" else passages
