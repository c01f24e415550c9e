"""Queries and patent claims: find a document's claims, split a claim into the elements an examiner charts.

Pure functions over `Document`/strings: no model, no I/O. The dashboard lets the user edit the elements,
so a `Query` is just text plus a tuple of element strings.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace

from .document import Document, Paragraph, sha256_hex
from .errors import QueryError
from .language import detect_language, is_japanese_char


@dataclass(frozen=True)
class Claim:
    number: int
    text: str  # == document.text[start:end] (the claim body, without its "1." / 【請求項１】 marker)
    start: int
    end: int


@dataclass(frozen=True)
class Query:
    """What the user is looking for: the whole text, and the elements it is charted by (editable)."""

    text: str
    elements: tuple[str, ...] = field(default_factory=tuple)
    language: str = "en"

    def __post_init__(self) -> None:
        if not self.elements:
            object.__setattr__(self, "elements", (self.text,))

    def with_elements(self, elements) -> "Query":
        """The same query with user-edited elements (blank ones dropped)."""
        kept = tuple(e.strip() for e in elements if e and e.strip())
        return replace(self, elements=kept or (self.text,))

    def to_json(self) -> dict:
        return {"text": self.text, "elements": list(self.elements), "language": self.language}


# ---------------------------------------------------------------- whitespace

def normalize_text(text: str, language: str | None = None) -> str:
    """One line of text: hard-wrapped Japanese lines are joined without a space (バルーンカテ／ーテル),
    everything else with one space. Claims copied from PDFs or fixed-width records need this."""
    text = text.replace("\u3000", " ")
    lines = [ln.strip() for ln in text.splitlines()]
    out = ""
    for ln in lines:
        if not ln:
            continue
        if out and not (is_japanese_char(out[-1]) or is_japanese_char(ln[0]) or out[-1] in "、。（）「」【】"
                        or ln[0] in "、。（）「」【】"):
            out += " "
        out += ln
    out = re.sub(r"[ \t]+", " ", out).strip()
    # a space between two Japanese characters is a wrapping artefact too ("であって、 前記")
    return re.sub(r"(?<=[\u3000-\u30ff\u3400-\u9fff\uff00-\uffef]) (?=[\u3000-\u30ff\u3400-\u9fff\uff00-\uffef])",
                  "", out)


# ---------------------------------------------------------------- claims

_EN_HEADING = re.compile(r"^[ \t]*(?:CLAIMS?|Claims?|What is claimed is:?|What is claimed:?|We claim:?|I claim:?|"
                         r"The invention claimed is:?)[ \t]*:?[ \t]*$", re.M)
_EN_CLAIM_START = re.compile(r"^[ \t]*(\d{1,3})[ \t]*[.)][ \t]+(?=\S)", re.M)
_ALLCAPS_HEADING = re.compile(r"^[ \t]*[A-Z][A-Z0-9 ,&/()\-]{3,}[ \t]*$", re.M)
_JA_CLAIM = re.compile(r"【請求項([0-9０-９]+)】")
_JA_CLAIMS_HEADING = re.compile(r"【特許請求の範囲】")
_JA_STOP = re.compile(r"【|\n[ \t\u3000]*\n")
_PARA_CLAIM = re.compile(r"^Claim (\d+)$")
_CLAIM_NUMBER = re.compile(r"^(?:\d{1,3}\s*[.)]\s+|【請求項[0-9０-９]+】\s*)")


def _trimmed(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def _en_claims_region(text: str) -> tuple[int, int] | None:
    """From a CLAIMS / "What is claimed is:" heading to the next all-caps heading (DESCRIPTION…) or the end."""
    m = _EN_HEADING.search(text)
    if not m:
        return None
    nxt = _ALLCAPS_HEADING.search(text, m.end())
    return m.start(), (nxt.start() if nxt else len(text))


def extract_claims(document: Document) -> list[Claim]:
    """The document's claims in order: USPTO-XML paragraphs ("Claim N"), 【請求項N】 markers, or a US
    full-text CLAIMS section of "N. …" paragraphs. Empty when the document has none."""
    text = document.text
    para = [(int(m.group(1)), p) for p in document.paragraphs if p.label and (m := _PARA_CLAIM.match(p.label))]
    if para:
        out = []
        for num, p in para:
            s, e = _trimmed(text, p.start, p.end)
            mm = _EN_CLAIM_START.match(text, s, e)
            s = mm.end() if mm else s
            out.append(Claim(num, text[s:e], s, e))
        return out
    ja = list(_JA_CLAIM.finditer(text))
    if ja:
        out = []
        for m in ja:
            stop = _JA_STOP.search(text, m.end() + 1)
            s, e = _trimmed(text, m.end(), stop.start() if stop else len(text))
            if e > s:
                out.append(Claim(int(unicodedata.normalize("NFKC", m.group(1))), text[s:e], s, e))
        return out
    region = _en_claims_region(text)
    if region is None:
        return []
    starts = list(_EN_CLAIM_START.finditer(text, region[0], region[1]))
    out = []
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else region[1]
        s, e = _trimmed(text, m.end(), end)
        if e > s:
            out.append(Claim(int(m.group(1)), text[s:e], s, e))
    return out


def claims_region(document: Document) -> tuple[int, int] | None:
    """The character span holding all claims (with their heading), or None."""
    text = document.text
    claims = extract_claims(document)
    if not claims:
        return None
    para = [p for p in document.paragraphs if p.label and _PARA_CLAIM.match(p.label)]
    if para:
        start = min(p.start for p in para)
        head = None
        for head in _EN_HEADING.finditer(text, 0, start):
            pass
        if head is not None and not text[head.end():start].strip():
            start = head.start()  # the "CLAIMS" heading goes with them
        return start, max(p.end for p in para)
    if _JA_CLAIM.search(text):
        head = _JA_CLAIMS_HEADING.search(text)
        first = _JA_CLAIM.search(text)
        start = head.start() if head and head.start() <= first.start() else first.start()
        return start, claims[-1].end
    return _en_claims_region(text)


def without_claims(document: Document) -> Document:
    """The document with its claims section cut out (and paragraphs shifted), so a claim used as the query
    cannot simply find itself. Returns the document unchanged when it has no claims."""
    region = claims_region(document)
    if region is None:
        return document
    s, e = region
    text = document.text[:s] + document.text[e:]
    cut = e - s
    paragraphs = []
    for p in document.paragraphs:
        if p.end <= s:
            paragraphs.append(p)
        elif p.start >= e:
            paragraphs.append(Paragraph(p.start - cut, p.end - cut, p.label, p.page))
    return replace(document, text=text, sha256=sha256_hex(text.encode("utf-8")), paragraphs=tuple(paragraphs),
                   notes=document.notes + ("claims removed",))


# ---------------------------------------------------------------- elements

_EN_TRANSITION = re.compile(r"\b(?:comprising|consisting(?: essentially)? of|including|comprises|having|"
                            r"characterized (?:in )?that|wherein)\s*:", re.I)
_EN_TRANSITION_LOOSE = re.compile(r",?\s*\b(?:comprising|consisting(?: essentially)? of)\b", re.I)
_EN_WHEREIN = re.compile(r"[,;]?\s*\b(?=wherein\b)", re.I)
_JA_PREAMBLE = re.compile(r"(?:であって|において)[、，]")
_JA_SPLIT = re.compile(r"(?:(?<!(?<!こ)[\u3041-\u3096])と|を備え|を有し|からなり|を具備し|を含み)[、，]")
_JA_TAIL = re.compile(r"(?:と?を(?:備|具備|有|含)[^、。]{0,3}|からなる|ことを特徴とする)[、，]?[^、。]*。?$")


def _too_short(part: str, language: str) -> bool:
    """A fragment no one would chart on its own: one English word ("and", "(a)"), or under 4 Japanese chars."""
    return len(part) < 4 if language == "ja" else len(part.split()) < 2


def _merge_short(parts: list[str], language: str) -> list[str]:
    """A fragment too short to chart joins its neighbour."""
    sep = "" if language == "ja" else " "
    out: list[str] = []
    for p in parts:
        if out and _too_short(p, language):
            out[-1] = f"{out[-1]}{sep}{p}"
        else:
            out.append(p)
    if len(out) > 1 and _too_short(out[0], language):
        out[1] = f"{out[0]}{sep}{out[1]}"
        out.pop(0)
    return out


def _split_en(text: str) -> list[str]:
    m = _EN_TRANSITION.search(text) or _EN_TRANSITION_LOOSE.search(text)
    preamble, body = (text[:m.start()], text[m.end():]) if m else ("", text)
    parts: list[str] = []
    for piece in re.split(r";", body):
        for sub in _EN_WHEREIN.split(piece):
            sub = re.sub(r"^(?:and|or)\s+", "", sub.strip(" ,;:\t"), flags=re.I).strip(" ,;:.")
            sub = re.sub(r",?\s+(?:and|or)$", "", sub, flags=re.I)
            if sub:
                parts.append(sub)
    preamble = preamble.strip(" ,;:")
    return ([preamble] if preamble else []) + parts


def _split_ja(text: str) -> list[str]:
    m = _JA_PREAMBLE.search(text)
    preamble, body = (text[:m.start()], text[m.end():]) if m else ("", text)
    parts = []
    pos = 0
    for sm in _JA_SPLIT.finditer(body):
        # keep the verb of "…からなり、" / "…を備え、" in its element; drop the enumerating "と、"
        keep = sm.end() - 1 if not sm.group(0).startswith("と") else sm.start()
        parts.append(body[pos:keep])
        pos = sm.end()
    parts.append(body[pos:])
    if parts:
        parts[-1] = _JA_TAIL.sub("", parts[-1])
    parts = [p.strip(" 、，。") for p in parts]
    return ([preamble.strip(" 、，")] if preamble.strip(" 、，") else []) + [p for p in parts if p]


def split_elements(text: str, language: str | None = None) -> list[str]:
    """A claim's elements: English preamble, then the parts after "comprising:" cut at ";" and before
    "wherein"; Japanese preamble up to 「であって、」, then the parts enumerated by 「…と、」 / 「…を備え、」
    with the closing 「…とを備える装置。」 dropped. A text with no such structure is one element."""
    flat = normalize_text(text)
    if not flat:
        return []
    language = language or detect_language(flat)
    parts = _split_ja(flat) if language == "ja" else _split_en(flat)
    parts = _merge_short([p for p in parts if p], language)
    return parts or [flat]


def make_query(text: str, language: str | None = None, *, split: bool = True) -> Query:
    """A query from pasted text or a claim; QueryError when there is nothing to search for."""
    flat = _CLAIM_NUMBER.sub("", normalize_text(text or ""), count=1)  # "1. A method…" / 【請求項１】 pasted along
    if not flat or not re.search(r"[^\W_]", flat):
        raise QueryError("the query is empty: type or paste a claim or a few words to search for")
    language = language or detect_language(flat)
    elements = tuple(split_elements(flat, language)) if split else (flat,)
    return Query(flat, elements, language)
