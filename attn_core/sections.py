"""Which part of a patent each passage belongs to, so "read first" can prefer what a reviewer reads first.

Attention alone ranks the title line, dependent claims and figure captions highly: they are short, dense
with the document's key terms, and therefore attract attention. A patent reviewer starts elsewhere: the
summary, the independent claims and the main embodiment. This module recognises the sections of English
(USPTO text/XML/PDF layout) and Japanese (【…】 headings of a 公開特許公報) patents per passage, gives
each section a prior weight, and finds passages that merely repeat an earlier one (the summary often
restates claim 1 word for word), so the read-first list does not show the same text twice.

It works on the passage spans `segment.passage_spans` makes, but only needs (start, end) offsets. A text
that is not a patent (statute, novel, guideline) is classified BODY throughout, so callers may apply the
weights unconditionally.
"""
from __future__ import annotations

import enum
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from .language import detect_language
from .segment import ARTICLE_LINE, PassageSpan, sentence_spans


class Section(enum.StrEnum):
    """The part of a patent a passage belongs to (BODY for text that is not a patent)."""

    TITLE = "title"
    META = "meta"  # publication number / date, bibliographic lines, record headers
    ABSTRACT = "abstract"
    INDEPENDENT_CLAIM = "independent_claim"
    DEPENDENT_CLAIM = "dependent_claim"
    CROSS_REFERENCE = "cross_reference"  # related applications, priority claims
    FIELD = "field"  # technical field, industrial applicability
    BACKGROUND = "background"  # prior art, 背景技術, 先行技術文献
    SUMMARY = "summary"  # summary of the invention, 発明の概要, 課題, 手段, 効果
    DRAWINGS = "drawings"  # brief description of drawings, "FIG. N is…", 図面の簡単な説明, 符号の説明
    DETAILED = "detailed"  # detailed description, 発明を実施するための形態, 実施例
    LEGAL = "legal"  # boilerplate: scope disclaimers, incorporation by reference
    HEADING = "heading"  # a bare heading line (any document), or a block of short unpunctuated lines
    SUPPLEMENTARY = "supplementary"  # a statute's 附則: enforcement dates and transitional provisions
    BODY = "body"  # running text outside a patent's sections


READ_FIRST_WEIGHT: Mapping[Section, float] = MappingProxyType({
    Section.INDEPENDENT_CLAIM: 1.8,
    Section.SUMMARY: 1.6,
    Section.DETAILED: 1.2,
    Section.BODY: 1.0,
    Section.ABSTRACT: 0.8,
    Section.DEPENDENT_CLAIM: 0.25,
    Section.BACKGROUND: 0.25,
    Section.FIELD: 0.2,
    Section.SUPPLEMENTARY: 0.2,
    Section.TITLE: 0.1,
    Section.DRAWINGS: 0.1,
    Section.HEADING: 0.05,
    Section.CROSS_REFERENCE: 0.05,
    Section.LEGAL: 0.05,
    Section.META: 0.02,
})
"""Prior a passage's attention score is multiplied by when ranking "read first" without a query.

Why these numbers: attention favours short passages dense in the document's key terms, which in a patent
are the title, the publication line, figure captions and dependent claims (each repeats the claimed
terms). The weights undo that bias with what a reviewer does: independent claims define the scope, the
summary states the invention in prose, the detailed description holds the main embodiment; these are
promoted. The abstract is useful but short and written for search, so it is only mildly demoted.
Dependent claims, background, field and drawings are read later, once the invention is understood, and
title, bibliographic lines, headings, cross-references and legal boilerplate say nothing about the
invention, so they are demoted so strongly that only an overwhelming attention score can lift them.
Outside patents the same bias ranks titles, headings and one-line fragments (a table cell, a list label,
a statute's "附則（昭和…年法律第…号）" lines) first; those get the TITLE and HEADING weights, a statute's
supplementary provisions (dated transitional rules a reader turns to last) get SUPPLEMENTARY, and running
text is BODY, which is neutral. The raw attention score is unchanged; only the read-first ordering uses
this prior.
"""


# --------------------------------------------------------------------------- internal states

class _State(enum.Enum):
    FRONT = "front"  # before the first section heading: number, date, title, 書誌事項
    BIBLIO = "biblio"  # 【書誌事項】 block
    ABSTRACT = "abstract"
    CLAIMS = "claims"
    DESCRIPTION = "description"  # "DESCRIPTION" / 【発明の詳細な説明】 seen, no sub-heading yet
    CROSS_REFERENCE = "cross_reference"
    FIELD = "field"
    BACKGROUND = "background"
    MIXED = "background_and_summary"  # "BACKGROUND AND SUMMARY": background until a summary cue
    SUMMARY = "summary"
    DRAWINGS = "drawings"
    DETAILED = "detailed"
    LEGAL = "legal"


_STATE_SECTION = {
    _State.FRONT: Section.META,
    _State.BIBLIO: Section.META,
    _State.ABSTRACT: Section.ABSTRACT,
    _State.DESCRIPTION: Section.DETAILED,
    _State.CROSS_REFERENCE: Section.CROSS_REFERENCE,
    _State.FIELD: Section.FIELD,
    _State.BACKGROUND: Section.BACKGROUND,
    _State.MIXED: Section.BACKGROUND,
    _State.SUMMARY: Section.SUMMARY,
    _State.DRAWINGS: Section.DRAWINGS,
    _State.DETAILED: Section.DETAILED,
    _State.LEGAL: Section.LEGAL,
}

# What a lower-/title-case heading may switch to once the detailed description has begun: inside it,
# "Summary", "Background" or "Figures" sub-headings are part of the embodiment, not the patent's own
# sections, while "What is claimed is:", "Abstract" or "Reference Signs List" do end it.
_AFTER_DETAILED = {_State.DETAILED, _State.CLAIMS, _State.ABSTRACT, _State.LEGAL}
_REFERENCE_SIGNS = re.compile(r".*\b(numerals|signs|symbols|characters)\b.*")

# --------------------------------------------------------------------------- English headings

_EN_HEADINGS: list[tuple[re.Pattern[str], _State]] = [(re.compile(p), s) for p, s in [
    (r"background and (brief )?summary( of the (invention|disclosure))?", _State.MIXED),
    ((r"(brief )?description of (the )?(several )?(views of (the )?)?(accompanying )?(drawings?|figures?)"
     r"( and tables)?"), _State.DRAWINGS),
    (r"brief description of the (several )?views( of the drawings?)?", _State.DRAWINGS),
    ((r"(list|explanation|description) of (the )?(reference )?(numerals|signs|symbols|characters)"
     r"( in the drawings)?"), _State.DRAWINGS),
    (r"reference (signs|numerals)( list)?", _State.DRAWINGS),
    (r"(the )?(drawings?|figures?)", _State.DRAWINGS),
    (r"abstract( of the (disclosure|invention))?", _State.ABSTRACT),
    ((r"(the )?claims?|what is claimed( is)?|what we claim( is)?|we claim|i claim|(it is )?claimed is"
     r"|the invention claimed is|claims? of the invention"), _State.CLAIMS),
    (r"cross[- ]?references?( to| of)?( related)?( u\.? ?s\.?)?( patent)?( applications?)?.*", _State.CROSS_REFERENCE),
    (r"(reference to )?related( u\.? ?s\.?)?( patent)? applications?( data)?", _State.CROSS_REFERENCE),
    (r"priority( claims?| data| information| applications?)?|continuation data|related application data",
     _State.CROSS_REFERENCE),
    ((r"incorporation by reference|(statement (regarding|as to|of) )?(federally sponsored|government).*"
     r"|copyright (notice|authorization)|notice of copyright.*|disclaimer|trademarks?"), _State.LEGAL),
    ((r"(technical )?field( of (the )?(invention|disclosure|art|technology))?|technical field"
     r"|industrial (applicability|field|utility)"), _State.FIELD),
    ((r"(technical )?background( art| information| of the (invention|disclosure|related art))?"
     r"|((discussion|description) of )?(the )?(related|prior|background) art|prior art|state of the art"
     r"|citation list|(non[- ]?)?patent (literature|documents?|citations?)( \d+)?"), _State.BACKGROUND),
    ((r"(brief )?summary( of the (invention|disclosure|embodiments))?|(general )?disclosure( of (the )?invention)?"
     r"|(technical )?problems?( to be solved( by the invention)?)?|(means|solutions?) (for|to) (solving )?(the )?problems?"
     r"|(advantageous )?effects?( of the (invention|disclosure))?|objects?( and (summary|advantages))?( of the invention)?"
     r"|advantages( of the invention)?|technical solution"), _State.SUMMARY),
    (r"description", _State.DESCRIPTION),
    ((r"detailed description.*|description of (the )?(preferred |illustrative |exemplary |example |specific )*"
     r"(embodiments?|examples?).*|(best )?modes? (for|of) (carrying out|implementing|practicing|the).*"
     r"|best mode.*|(the )?(preferred |exemplary |illustrative )?embodiments?( of the invention)?"
     r"|((working|comparative) )?examples?( \d+)?|experimental( section| results)?"), _State.DETAILED),
]]

_SMALL_WORDS = frozenset("a an and as at by for from in into of on or over the to under upon via vs with".split())
_LABEL = re.compile(r"^\s*(?:\[[0-9]{4,5}\]|【[0-9０-９]{4,5}】)\s*")
_LIST_NUMBER = re.compile(r"^(?:[0-9]{1,2}|[IVX]{1,4}|[A-H])[.)]\s+(?=[A-Za-z])|^\([0-9a-z]{1,3}\)\s+")
_INID = re.compile(r"^\s*\(([0-9]{2})\)\s*")
_SENTENCE_END = tuple(".。!?！？;；,、，")


def _heading_key(line: str) -> str:
    """A heading line as the pattern table sees it: no list number, no trailing colon, lower case."""
    line = _LIST_NUMBER.sub("", line.strip())
    line = re.sub(r"\s+", " ", line.rstrip(":：").strip())
    return line.casefold()


def _looks_like_heading(line: str) -> bool:
    """Short, unpunctuated, and in capitals or Title Case: a heading, not the end of a hard-wrapped line."""
    if not line or len(line) > 80 or line.startswith("[") or line.endswith(_SENTENCE_END) or \
            any(c in line for c in "|—=<>{}[]") or re.search(r"[:：]\s*\S", line):
        return False  # table rows and "Key: value" lines are not headings
    body = _LIST_NUMBER.sub("", line).rstrip(":：")
    words = re.findall(r"[A-Za-z][A-Za-z'’\-]*|[0-9]+[A-Za-z]*", body)
    if not words or len(words) > 10 or not any(w[0].isalpha() for w in words):
        return False
    letters = [c for c in body if c.isalpha()]
    if letters and all(c.isupper() for c in letters if c.isascii()) and len(letters) >= 3:
        return True
    return all(w[0].isupper() or w[0].isdigit() or w.casefold() in _SMALL_WORDS for w in words) and \
        words[0][0].isupper()


def _english_heading_state(line: str) -> _State | None:
    key = _heading_key(line)
    if not key or len(key) > 80:
        return None
    for pattern, state in _EN_HEADINGS:
        if pattern.fullmatch(key):
            return state
    return None


# --------------------------------------------------------------------------- Japanese 【…】 labels

_JA_LABEL = re.compile(r"^\s*(?:\([0-9０-９]{2}\)\s*)?【([^】\n]{1,40})】")
_JA_HEADINGS: dict[str, _State] = {
    "書誌事項": _State.BIBLIO,
    "要約": _State.ABSTRACT, "要約書": _State.ABSTRACT,
    "特許請求の範囲": _State.CLAIMS, "実用新案登録請求の範囲": _State.CLAIMS, "請求の範囲": _State.CLAIMS,
    "明細書": _State.DESCRIPTION, "発明の詳細な説明": _State.DESCRIPTION, "考案の詳細な説明": _State.DESCRIPTION,
    "技術分野": _State.FIELD, "産業上の利用分野": _State.FIELD, "産業上の利用可能性": _State.FIELD,
    "背景技術": _State.BACKGROUND, "従来の技術": _State.BACKGROUND, "先行技術文献": _State.BACKGROUND,
    "特許文献": _State.BACKGROUND, "非特許文献": _State.BACKGROUND,
    "発明の概要": _State.SUMMARY, "考案の概要": _State.SUMMARY, "発明の開示": _State.SUMMARY,
    "発明が解決しようとする課題": _State.SUMMARY, "考案が解決しようとする課題": _State.SUMMARY,
    "解決しようとする課題": _State.SUMMARY, "課題を解決するための手段": _State.SUMMARY,
    "発明の効果": _State.SUMMARY, "考案の効果": _State.SUMMARY, "課題": _State.SUMMARY,
    "手段": _State.SUMMARY, "効果": _State.SUMMARY,
    "図面の簡単な説明": _State.DRAWINGS, "符号の説明": _State.DRAWINGS, "図面": _State.DRAWINGS,
    "発明を実施するための形態": _State.DETAILED, "発明を実施するための最良の形態": _State.DETAILED,
    "考案を実施するための形態": _State.DETAILED, "発明の実施の形態": _State.DETAILED,
    "実施例": _State.DETAILED, "実施形態": _State.DETAILED, "実施の形態": _State.DETAILED,
    "比較例": _State.DETAILED,
}
_JA_TITLE_KEYS = frozenset({"発明の名称", "考案の名称"})
_JA_ABSTRACT_LABELS = frozenset({"課題", "解決手段"})  # inside 【要約】 they are the abstract, not the summary
_JA_INLINE = re.compile(r"(表|化|数|式|化学式|配列表)[0-9]*")  # 【表１】【化１】: part of the paragraph
_JA_META_KEYS = re.compile(
    r"発行国|公報種別|公開番号|公開日|公表番号|公表日|特許番号|登録日|発行日|出願番号|出願日|国際特許分類|FI|"
    r"テーマコード|Fターム|審査請求|請求項の数|出願形態|全頁数|出願人|発明者|考案者|代理人|識別番号|住所又は居所|"
    r"氏名又は名称|優先権主張.*|優先日|国際出願番号|国際公開番号|国際公開日|国際出願日|整理番号|提出日|書類名|あて先|"
    r"弁理士|指定国|特許権者|分類|文献番号|公知日|出願公開番号")


def _ja_key(label: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", label))


# --------------------------------------------------------------------------- content cues

_CLAIM_START = re.compile(r"^\s*(?:claim\s+)?([0-9]{1,3})\s*[.)．:]\s*(?:\((?:original|amended|new|currently amended|"
                          r"previously presented|withdrawn|canceled|cancelled)\)\s*)?", re.IGNORECASE)
_DEPENDENT_EN = re.compile(
    r"\bclaims?\s*(?:no\.?\s*)?[0-9]+"
    r"|\b(?:any|one|either|each)\s+(?:one\s+)?of\s+(?:the\s+)?(?:preceding|previous|foregoing|above|prior)\s+claims?"
    r"|\b(?:preceding|previous|foregoing)\s+claims?\b", re.IGNORECASE)
_DEPENDENT_JA = re.compile(r"請求項\s*[0-9０-９]+|(?:前記|上記)(?:いずれか|各)?の?請求項")
_FIG_CAPTION_EN = re.compile(
    r"^(?:FIGS?\.?|Figs?\.?|Figures?|FIGURES?)\s*[0-9]+[A-Za-z]?['’]?"
    r"(?:\s*(?:[-–,]|and|to|through|or)\s*[0-9]+[A-Za-z]?['’]?)*"
    r"\s*(?:is|are|shows?|illustrates?|depicts?|describes?|represents?|presents?|provides?|displays?|sets forth|"
    r"schematically|diagrammatically|graphically|—|-|:)")
_FIG_CAPTION_JA = re.compile(r"^【?図\s*[0-9０-９]+[A-Za-zＡ-Ｚａ-ｚ]?】?.{0,200}(?:図|グラフ|チャート|写真|図面)(?:である|です)。?$")
_FIELD_CUE = re.compile(
    r"^(?:the\s+(?:present\s+)?(?:invention|disclosure|application|subject matter|technology)|this\s+(?:invention|"
    r"disclosure|application)|(?:various\s+)?embodiments?(?:\s+of\s+the\s+(?:present\s+)?(?:invention|disclosure))?)"
    r"(?:\s+\w+){0,3}?\s+relates?\s+(?:generally\s+|in general\s+|broadly\s+|primarily\s+|particularly\s+)?to\b"
    r"|^本(?:発明|開示|考案|願)は、?.{0,150}に関(?:する|し)", re.IGNORECASE)
_CROSS_REF_CUE = re.compile(
    r"^this\s+(?:patent\s+)?application\s+(?:is\s+a\s+(?:continuation|divisional|national|non-?provisional)|claims|"
    r"is\s+related|is\s+based|relates\s+to\s+and\s+claims|was\s+filed|takes\s+priority)"
    r"|^(?:the\s+)?present\s+application\s+(?:is\s+a\s+(?:continuation|divisional)|claims)"
    r"|^本出願は、.{0,120}(?:優先権|基づく)", re.IGNORECASE)
_SUMMARY_CUE = re.compile(
    r"^(?:to\s+(?:achieve|this\s+end|these\s+ends|that\s+end|solve)|in\s+(?:one|an|another|a\s+first|some|certain)\s+"
    r"(?:aspect|embodiment)s?|(?:briefly|accordingly|therefore),?\s|(?:the\s+)?(?:present\s+)?(?:invention|"
    r"disclosure)\s+(?:provides?|includes?|comprises?|is\s+directed|achieves)|embodiments\s+(?:provide|include|"
    r"comprise)|it\s+is\s+(?:therefore\s+)?(?:an?|the)\s+(?:primary\s+|principal\s+|general\s+)?(?:object|aspect|"
    r"advantage)|according\s+to\s+(?:an?|one|the)\s+(?:aspect|embodiment)|in\s+accordance\s+with\s+(?:an?|one|the)\s+"
    r"(?:aspect|embodiment))", re.IGNORECASE)
_META_LINE = re.compile(
    r"^(?:=|-|_|\*){4,}$"  # record separators
    r"|^[A-Za-z][\w .\-/]{0,40}\s*[:：]\s*[^\s.。].{0,80}$"  # "Publication date: 20150106", "Document ID : 2020151139"
    r"|^[A-Za-z][\w.\-]{0,40}\s*[:：]$"  # "meta.local_path:"
    r"|^[\w.\-]+(?:/[\w.\-]+){2,}/?$"  # a file path
    r"|^(?:US|EP|WO|JP|CN|KR|DE|FR|GB|CA|AU)\s?[0-9][0-9,/ ]{4,}\s?[A-Z][0-9]?$"  # US08930553B2
    r"|^(?:US|EP|WO|JP)[0-9]{6,}[A-Z]?[0-9]?$")
_TITLE_LINE = re.compile(r"^(?:title(?: of (?:the )?invention)?\s*[:：]|\(54\))", re.IGNORECASE)

# Sentences that are legal boilerplate, not technical content (English, then Japanese). A passage is LEGAL
# when such sentences make up at least half of it, so one "incorporated by reference" inside a technical
# paragraph does not hide the paragraph.
_LEGAL_PATTERNS = (
    (r"^(?:while|although|whereas)\b.{0,200}\b(?:ha(?:s|ve)\s+been|are|is)\s+(?:particularly\s+|specifically\s+|"
    r"fully\s+)?(?:shown|described|disclosed|illustrated|explained)"),
    r"^(?:while|although)\b.{0,200}\buses?\s+language\s+(?:that\s+is\s+)?specific\s+to",
    (r"\bincorporated\s+(?:herein\s+|hereby\s+|in\s+(?:its|their)\s+entireties?\s+|fully\s+)*(?:by|in\s+its\s+entirety"
    r"\s+by)\s+reference"),
    r"\bthe\s+terminology\s+used\s+herein\b",
    r"\bwithout\s+departing\s+from\s+the\s+(?:true\s+)?(?:spirit|scope|principles?)",
    r"\b(?:is|are)\s+not\s+(?:intended|meant)\s+to\s+(?:be\s+)?(?:limit|exhaustive|identify\s+key)",
    r"\bnot\s+(?:to\s+be|be)\s+(?:construed|interpreted|taken|considered|read)\s+(?:as|in\s+a)\s+(?:limit|restrict)",
    (r"\b(?:within|embrace|encompass|cover|fall)\w*\b.{0,80}\b(?:true\s+)?(?:scope|spirit)\s+of\s+(?:the|this|these)\s+"
    r"(?:appended\s+|following\s+|present\s+)?(?:claims|invention|disclosure)"),
    (r"\bit\s+(?:should|is\s+to|will|must|is\s+intended\s+to)\s+be\s+(?:understood|appreciated|recognized)\b.{0,200}"
    r"\b(?:various|alternativ|modif|variation|scope|limit|equivalent|spirit|appended\s+claims|exemplary|illustrative|"
    r"by\s+way\s+of\s+example|only)"),
    (r"\b(?:modifications|variations|changes|substitutions|alternatives)\b.{0,80}\b(?:will|may|can|could)\s+(?:now\s+)?"
    r"(?:occur|be\s+apparent|become\s+apparent)\s+to\s+(?:those|one|persons?)"),
    r"\bas\s+will\s+be\s+appreciated\s+by\s+(?:one|those)\s+(?:of\s+ordinary\s+)?skill",
    r"\ball\s+(?:publications|patents|references)\b.{0,120}\b(?:mentioned|cited|referred\s+to)\b",
    r"\b(?:this\s+summary|the\s+summary)\s+is\s+(?:provided|not\s+intended)",
    r"\bprovided\s+to\s+introduce\s+a\s+selection\s+of\s+concepts",
    r"\bthe\s+(?:term|phrase|terms)\s+[“\"'‘].{1,40}[”\"'’]\s+as\s+used\s+herein\s+(?:is|are|shall\s+be)\s+intended",
    r"\bmay\s+be\s+embodied\s+as\s+a\s+system,\s+method,?\s+or\s+computer\s+program\s+product",
    r"\bmay\s+take\s+the\s+form\s+of\s+an\s+entirely\s+hardware\s+embodiment",
    r"\bmay\s+take\s+the\s+form\s+of\s+a\s+computer\s+program\s+product\s+embodied",
    r"\bany\s+combination\s+of\s+one\s+or\s+more\s+computer[- ](?:readable|usable)\s+medi",
    (r"^(?:a|the|more\s+specific\s+examples.{0,40}of\s+the)\s+computer[- ]readable\s+(?:signal\s+|storage\s+)?medi(?:um|a)"
    r"\b.{0,40}\b(?:may|would|is|include)"),
    r"^(?:in\s+the\s+context\s+of\s+this\s+document|such\s+a\s+propagated\s+signal)",
    (r"\bprogram\s+code\s+(?:embodied\s+on\s+a\s+computer\s+readable\s+medium\s+may\s+be\s+transmitted|may\s+execute"
    r"\s+entirely\s+on)"),
    r"\bcomputer\s+program\s+code\s+for\s+carrying\s+out\s+operations",
    r"^in\s+the\s+latter\s+scenario,\s+the\s+remote\s+computer",
    r"\b(?:each|any)\s+block\s+(?:of|in)\s+the\s+(?:flowchart|block\s+diagram)",
    r"\bthe\s+flowchart\s+and\s+block\s+diagrams\s+in\s+the\s+figures\s+illustrate",
    r"\bin\s+some\s+alternative\s+implementations,\s+the\s+functions\s+noted\s+in\s+the\s+block",
    r"^for\s+example,\s+two\s+blocks\s+shown\s+in\s+succession",
    r"\b(?:these|the)\s+computer\s+program\s+instructions\s+may\s+(?:also\s+)?be\s+(?:provided|stored|loaded)",
    r"\baspects\s+of\s+the\s+present\s+invention\s+are\s+described\s+below\s+with\s+reference\s+to\s+flowchart",
    r"\bmay\s+be\s+implemented\s+as\s+a\s+computer\s+program\s+product\s+embodied",
    r"\bgeneral\s+context\s+of\s+computer[- ]executable\s+instructions",
    r"\bprogram\s+modules\s+include\s+routines,\s+programs,\s+objects",
    r"\bfunctionality\s+of\s+the\s+program\s+modules\s+may\s+be\s+combined\s+or\s+distributed",
    r"^rather,\s+the\s+specific\s+features\s+and\s+acts\s+are\s+disclosed\s+as\s+exemplary",
    r"\b(?:numerous|various)\s+(?:variations|modifications),\s+changes,?\s+and\s+substitutions",
    r"\bit\s+is\s+intended\s+that\s+the\s+following\s+claims\s+define\s+the\s+scope",
    r"\bthe\s+appended\s+claims\s+(?:as\s+filed\s+)?(?:and\s+as\s+they\s+may\s+be\s+amended\s+)?are\s+intended\s+to",
    (r"(?:に限定されるものではな|に限定されな|要旨を逸脱しない範囲|趣旨を逸脱しない範囲|種々の変更|種々の変形|"
    r"参照により(?:本明細書に)?(?:組み込|援用)|の開示(?:内容)?は.{0,40}援用|本明細書で使用される用語は)"),
)
_LEGAL_SENTENCE = re.compile("|".join(_LEGAL_PATTERNS), re.IGNORECASE)


# --------------------------------------------------------------------------- is_patent

_MARKERS: list[tuple[str, re.Pattern[str], int]] = [(name, re.compile(p, re.MULTILINE | re.IGNORECASE), n) for name, p, n in [
    ("claims_heading", (r"^[ \t]*(?:\(57\)\s*)?(?:claims|what is claimed is:?|we claim:?|i claim:?|"
     r"the invention claimed is:?)[ \t]*$"), 1),
    ("claim_text", (r"^[ \t]*1[ \t]*\.[ \t]+(?:A|An|The|In|One)\b[^\n]{5,400}?\b(?:comprising|consisting|including|"
     r"wherein|characteri[sz]ed|having)\b"), 1),
    ("dependent_claim", (r"^[ \t]*[0-9]{1,3}[ \t]*\.[ \t]+(?:The|A|An)\b[^\n]{1,120}?\b(?:of|in|to|according to|as "
     r"(?:recited|claimed|defined|set forth) in)\s+claim\s+[0-9]+"), 1),
    ("abstract_heading", r"^[ \t]*(?:\(57\)\s*)?abstract(?: of the disclosure)?[ \t]*$", 1),
    ("patent_headings", (r"^[ \t]*(?:[0-9]\.\s*)?(?:background(?: of the invention| art)?|(?:brief )?summary(?: of the "
     r"invention)?|brief description of (?:the )?(?:several views of the )?(?:drawings|figures)|detailed description"
     r"(?: of the (?:invention|preferred embodiments?))?|field of the invention|technical field|description of "
     r"(?:the )?(?:preferred )?embodiments?|cross[- ]reference to related applications?)[ \t]*:?[ \t]*$"), 2),
    ("paragraph_numbers", r"^[ \t]*\[[0-9]{4,5}\]", 3),
    ("figure_captions", r"^[ \t]*(?:\[[0-9]{4,5}\][ \t]*)?FIG\.[ \t]*[0-9]+[A-Z]?[ \t]+(?:is|shows|illustrates|depicts)\b", 2),
    ("publication_line", (r"^[ \t]*(?:(?:US|EP|WO)[ \t]?[0-9][0-9,/ ]{5,}[ \t]?[AB][0-9]?|Publication date:.*|"
     r"\(12\)[ \t]*United States Patent.*|\(10\)[ \t]*Patent No\..*)[ \t]*$"), 1),
    ("ja_abstract", r"^[ \t\u3000]*【要約(?:書)?】", 1),
    ("ja_claims_heading", r"^[ \t\u3000]*【(?:特許請求の範囲|実用新案登録請求の範囲)】", 1),
    ("ja_claim", r"^[ \t\u3000]*【請求項[0-9０-９]+】", 1),
    ("ja_paragraph_numbers", r"^[ \t\u3000]*【[0-9０-９]{4,5}】", 3),
    ("ja_headings", (r"^[ \t\u3000]*【(?:技術分野|背景技術|発明の概要|発明が解決しようとする課題|課題を解決するための手段|"
     r"発明の効果|図面の簡単な説明|発明を実施するための(?:最良の)?形態|符号の説明|発明の詳細な説明|先行技術文献)】"), 2),
    ("ja_abstract_labels", r"【(?:課題|解決手段)】", 2),
    ("ja_bibliographic", (r"公開特許公報|特許公報|実用新案公報|^[ \t\u3000]*(?:\([0-9]{2}\))?【(?:書誌事項|公開番号|"
     r"発明の名称|出願番号|公報種別)】"), 1),
]]
_CLAIM_MARKERS = frozenset({"claims_heading", "claim_text", "dependent_claim", "ja_claims_heading", "ja_claim"})


def is_patent(text: str) -> bool:
    """Whether text is a patent document (full text, publication or excerpt with claims).

    Needs at least one claims marker and at least three distinct patent markers (headings such as
    ABSTRACT/CLAIMS/【要約】 on their own line, numbered paragraphs, figure captions, a publication line),
    because statutes, examination guidelines and essays mention claims and 請求項 in prose but never carry
    a patent's line structure.
    """
    sample = text[:400_000]
    found = {name for name, pattern, needed in _MARKERS
             if (needed == 1 and pattern.search(sample)) or (needed > 1 and _count_at_least(pattern, sample, needed))}
    return bool(found & _CLAIM_MARKERS) and len(found) >= 3


def _count_at_least(pattern: re.Pattern[str], text: str, n: int) -> bool:
    for count, _ in enumerate(pattern.finditer(text), 1):
        if count >= n:
            return True
    return False


# --------------------------------------------------------------------------- classify_passages

def _bounds(span: tuple[int, int] | PassageSpan) -> tuple[int, int]:
    if isinstance(span, PassageSpan):
        return span.start, span.end
    return int(span[0]), int(span[1])


class _Reader:
    """Walks the passages in document order, keeping the section state that headings set."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.state = _State.FRONT
        self.language = detect_language(text)

    # ---- lines

    def _set_state(self, state: _State, upper: bool, key: str = "") -> None:
        if self.state is _State.DETAILED and not upper and state not in _AFTER_DETAILED and \
                not (state is _State.DRAWINGS and _REFERENCE_SIGNS.fullmatch(key)):
            return  # a "Summary"/"Background" sub-heading inside the embodiment
        self.state = state

    def _line(self, line: str, leading: bool) -> tuple[str, Section | None, bool]:
        """Read one line: (kind, section, claim_start), kind being 'heading', 'front' or 'content'.

        Headings change the state as a side effect; 'front' lines (title, bibliographic data, 【図１】
        captions) carry their own section; content lines are classified by the caller.
        """
        line = _LABEL.sub("", line).strip()
        claim_start = False
        while (m := _JA_LABEL.match(line)) is not None:  # 【０００１】【図１】…: possibly several labels
            key = _ja_key(m.group(1))
            rest = line[m.end():].strip()
            base = re.sub(r"[0-9]+[A-Za-z]?$", "", key)
            if re.fullmatch(r"[0-9]{4,5}", key):
                line = rest
                continue
            if base == "請求項":
                self.state = _State.CLAIMS
                claim_start = True
                line = rest
                break
            if key in _JA_TITLE_KEYS:
                return "front", Section.TITLE, False
            if self.state is _State.ABSTRACT and key in _JA_ABSTRACT_LABELS:
                line = rest
                break
            if key == "選択図":
                return "front", Section.DRAWINGS, False
            if base == "図" and (not rest or self.state is not _State.DETAILED or _FIG_CAPTION_JA.match(line)):
                return "front", Section.DRAWINGS, False
            if base in _JA_HEADINGS:
                self._set_state(_JA_HEADINGS[base], upper=True)
                if not rest:
                    return ("front", Section.META, False) if self.state is _State.BIBLIO else \
                        ("heading", Section.HEADING, False)
                line = rest
                break
            if self.state in (_State.FRONT, _State.BIBLIO) or _JA_META_KEYS.fullmatch(key):
                return "front", Section.META, False
            if _JA_INLINE.fullmatch(key) or base == "図":
                break  # 【表１】, 【化１】: the label is part of the paragraph
            line = rest  # an unknown label: read what follows it
        if claim_start:
            return "content", None, True
        if not line:
            return "heading", Section.HEADING, False
        if self.state in (_State.FRONT, _State.BIBLIO):
            front = self._front_line(line)
            if front is not None:
                return "front", front, False
        if self.state is _State.CLAIMS:
            m = _CLAIM_START.match(line)
            if m and (m.end() == len(line) or not _looks_like_heading(line)):
                return "content", None, True
            if _META_LINE.match(line):
                return "front", Section.META, False
        if _looks_like_heading(line) or (leading and self._plain(line)):
            heading = _english_heading_state(line)
            if heading is not None:
                self._set_state(heading, upper=line.upper() == line, key=_heading_key(line))
                return "heading", Section.HEADING, False
        if leading and _looks_like_heading(line):
            return "heading", Section.HEADING, False
        return "content", None, False

    @staticmethod
    def _plain(line: str) -> bool:
        return len(line) <= 80 and not line.endswith(_SENTENCE_END)

    def _front_line(self, line: str) -> Section | None:
        """Front matter: title, publication number and date, INID-coded lines of a printed front page."""
        inid = _INID.match(line)
        if inid:
            code = inid.group(1)
            rest = line[inid.end():]
            if code == "54":
                return Section.TITLE
            if code == "57":
                state = _english_heading_state(rest.split(" ", 1)[0]) if rest else None
                if state is _State.ABSTRACT:
                    self.state = _State.ABSTRACT
                    return Section.HEADING
            return Section.META
        if _TITLE_LINE.match(line):
            return Section.TITLE
        if _META_LINE.match(line):
            return Section.META
        if _english_heading_state(line) is not None and _looks_like_heading(line):
            return None  # a section heading ends the front matter
        if len(line) <= 60 or (len(line) <= 120 and not line.endswith(_SENTENCE_END)):
            return Section.META  # a record header, "Smith et al.": no guessing which line is the title
        return None

    # ---- passages

    def passage(self, s: int, e: int) -> tuple[Section, bool, str]:
        """(section, starts_a_claim, content text) of one passage; claims are settled later.

        A passage may straddle a heading (Japanese segmentation joins a short last line, the heading and the
        next sentence); its section is then that of its longest run of content under one heading, so
        claim 1 glued to the last line of 【符号の説明】 is still claim 1.
        """
        lines = [ln for ln in self.text[s:e].split("\n") if ln.strip()]
        runs: list[tuple[_State, bool, list[str]]] = []
        open_run = False
        front_kinds: list[Section] = []
        for raw in lines:
            kind, section, claim_start = self._line(raw, leading=not runs)
            if kind == "front":
                front_kinds.append(section or Section.META)
                open_run = False
            elif kind == "heading":
                open_run = False
            elif open_run and not claim_start and runs[-1][0] is self.state:
                runs[-1][2].append(raw)
            else:
                runs.append((self.state, claim_start, [raw]))
                open_run = True
        best: tuple[Section, bool, str] | None = None
        for state, claim_start, run in runs:
            content = "\n".join(_LABEL.sub("", ln).strip() for ln in run)
            section = self._content_section(content, state)
            if best is None or len(content) > len(best[2]):
                best = (section, claim_start, content)
        if best is not None:
            return best
        if Section.TITLE in front_kinds:
            return Section.TITLE, False, ""
        if front_kinds:
            return front_kinds[0], False, ""
        return Section.HEADING, False, ""

    def _content_section(self, content: str, state: _State) -> Section:
        if state is _State.CLAIMS:
            return Section.INDEPENDENT_CLAIM  # provisional: settled per claim by classify_passages
        if state in (_State.FRONT, _State.BIBLIO):
            return Section.BODY if state is _State.FRONT else Section.META
        first_line = content.split("\n", 1)[0].strip()
        if state in (_State.DESCRIPTION, _State.SUMMARY, _State.FIELD, _State.BACKGROUND, _State.MIXED) and \
                len(content) <= 400 and (_FIG_CAPTION_EN.match(first_line) or _FIG_CAPTION_JA.match(first_line)):
            return Section.DRAWINGS
        if state in (_State.DESCRIPTION, _State.SUMMARY, _State.DETAILED, _State.BACKGROUND, _State.FIELD,
                     _State.MIXED) and self._is_legal(content):
            return Section.LEGAL
        if state is _State.DESCRIPTION:
            if _CROSS_REF_CUE.match(first_line):
                return Section.CROSS_REFERENCE
            if len(content) <= 600 and _FIELD_CUE.match(first_line):
                return Section.FIELD
            return Section.DETAILED
        if state is _State.MIXED:
            if _SUMMARY_CUE.match(first_line):
                if self.state is _State.MIXED:
                    self.state = _State.SUMMARY  # the rest of "BACKGROUND AND SUMMARY" is the summary
                return Section.SUMMARY
            return Section.BACKGROUND
        return _STATE_SECTION[state]

    def _is_legal(self, content: str) -> bool:
        if not _LEGAL_SENTENCE.search(content):
            return False
        language = "ja" if self.language == "ja" else "en"
        sentences = sentence_spans(content, language)
        total = sum(e - s for s, e in sentences) or 1
        legal = sum(e - s for s, e in sentences if _LEGAL_SENTENCE.search(content[s:e]))
        return legal / total >= 0.5


def classify_passages(text: str, spans: Sequence[tuple[int, int] | PassageSpan]) -> list[Section]:
    """The section of each passage (same order as spans); `general_sections` when the text is not a patent.

    Sections follow the document's headings (upper-case English headings, 【…】 headings in Japanese) and
    the passage's own content: claims are split into independent and dependent by their reference to
    another claim ("of claim 1", "according to claim 2", "claim 3, wherein", 請求項１に記載), figure
    captions outside a detailed description are DRAWINGS, and paragraphs made mostly of legal boilerplate
    are LEGAL wherever they sit.
    """
    if not spans:
        return []
    if not is_patent(text):
        return general_sections(text, spans)
    bounds = [_bounds(sp) for sp in spans]
    order = sorted(range(len(bounds)), key=lambda i: bounds[i])
    reader = _Reader(text)
    result: list[Section] = [Section.BODY] * len(bounds)
    claim_groups: list[tuple[list[int], list[str]]] = []
    group_open = False  # the last claim may continue into the next passage (a long claim is split)
    for i in order:
        s, e = bounds[i]
        section, claim_start, content = reader.passage(s, e)
        result[i] = section
        if section is Section.INDEPENDENT_CLAIM:  # provisional: every claim passage, settled below
            if claim_start or not group_open:
                claim_groups.append(([], []))
            claim_groups[-1][0].append(i)
            claim_groups[-1][1].append(content)
            group_open = True
        elif section is not Section.HEADING or reader.state is not _State.CLAIMS:
            group_open = False
    for members, contents in claim_groups:
        claim = "\n".join(contents)
        claim = _CLAIM_START.sub("", claim, count=1)
        claim = re.sub(r"^\s*【請求項[0-9０-９]+】", "", claim)
        dependent = _DEPENDENT_EN.search(claim) or _DEPENDENT_JA.search(claim)
        for i in members:
            result[i] = Section.DEPENDENT_CLAIM if dependent else Section.INDEPENDENT_CLAIM
    return result


# --------------------------------------------------------------------------- general_sections

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")
_CLOSERS = "」』）)]］】〕》〉\"'’”"
_GENERAL_SENTENCE_END = tuple(".。．!?！？")
_CONTINUES = tuple("、,，;；")  # a line ending here is part of a sentence, never a heading
_HEADING_CJK_CHARS = 40
_HEADING_WORDS = 12
_HEADING_LINES = 4
_COPYRIGHT = re.compile(r"^\s*(?:copyright\b|©|\(c\)\s*(?:19|20)[0-9]{2})|\ball rights reserved\b|無断(?:転載|複製)",
                        re.IGNORECASE)
_SUPPLEMENTARY = re.compile(r"^[ \t\u3000]*(?:附[ \t\u3000]*則|supplementary provisions)(?![^\n]*[。.])",
                            re.IGNORECASE | re.M)


def _short_unpunctuated(line: str) -> bool:
    """A line that reads as a heading or a fragment: short, and not a sentence (nor part of one).

    A numbered English heading may end in a full stop ("0. Definitions.", "2.1 Scope.") and still be one."""
    core = line.rstrip(_CLOSERS + " \u3000")
    if not core or core.endswith(_CONTINUES):
        return False
    if _CJK.search(core):
        if len(core) > _HEADING_CJK_CHARS:
            return False
    elif len(core.split()) > _HEADING_WORDS or len(core) > 100:
        return False
    if core.endswith(_GENERAL_SENTENCE_END):
        numbered = re.match(r"^(?:[0-9]{1,2}(?:\.[0-9]{1,2})*\.?|[IVX]{1,4}\.|§\s*[0-9]+)\s", core)
        return bool(numbered) and _looks_like_heading(core[numbered.end():].rstrip("."))
    return True


def supplementary_start(text: str) -> int | None:
    """Where a statute's supplementary provisions (附則) begin: the first 附則 line after its first article
    (a table of contents lists 附則 before any article); None when the text has no articles or no 附則."""
    first_article = ARTICLE_LINE.search(text)
    if first_article is None:
        return None
    m = _SUPPLEMENTARY.search(text, first_article.end())
    return m.start() if m else None


def general_sections(text: str, spans: Sequence[tuple[int, int] | PassageSpan]) -> list[Section]:
    """Sections of a text that is not a patent: TITLE, HEADING, LEGAL, SUPPLEMENTARY or BODY per passage.

    What holds in any document: a passage made only of a few short lines that are not sentences is a
    heading, a caption, a table cell or a list label (the first one in the document is its title); a
    copyright notice is LEGAL; a reader wants running text first. A statute (one with 第…条 articles) ends with its 附則, dated
    enforcement and transitional rules that attention likes for their dense dates and numbers and a reader
    wants last, so every passage from the first 附則 heading that follows an article is SUPPLEMENTARY.
    """
    bounds = [_bounds(sp) for sp in spans]
    order = sorted(range(len(bounds)), key=lambda i: bounds[i])
    supplement = supplementary_start(text)
    result = [Section.BODY] * len(bounds)
    for i in order:
        s, e = bounds[i]
        lines = [ln.strip() for ln in text[s:e].splitlines() if ln.strip()]
        heading = 0 < len(lines) <= _HEADING_LINES and all(_short_unpunctuated(ln) for ln in lines)
        if heading:
            result[i] = Section.TITLE if i == order[0] else Section.HEADING
        elif _COPYRIGHT.search(text[s:e]):
            result[i] = Section.LEGAL
        elif supplement is not None and s >= supplement:
            result[i] = Section.SUPPLEMENTARY
    return result


# --------------------------------------------------------------------------- duplicate_passages

_WORD = re.compile(r"[^\W_]+")
_SHINGLE = 3
_JACCARD = 0.9
_MIN_TOKENS = 4  # words; a Japanese passage needs twice as many characters


def _tokens(passage: str) -> list[str]:
    """Words of a passage without its paragraph label, claim number or leading heading lines.

    Japanese has no spaces; each CJK character is a token there, so shingles are character trigrams,
    which catch the same near-copies without running the tagger over every passage.
    """
    lines = [ln.strip() for ln in passage.split("\n") if ln.strip()]
    while len(lines) > 1 and (_english_heading_state(lines[0]) is not None and _looks_like_heading(lines[0])
                              or re.fullmatch(r"【[^】]{1,40}】", lines[0])):
        lines.pop(0)
    body = " ".join(lines)
    body = _LABEL.sub("", body)
    body = re.sub(r"^\s*(?:【[^】]{1,40}】\s*)+", "", body)
    body = _CLAIM_START.sub("", body, count=1)
    body = unicodedata.normalize("NFKC", body).casefold()
    out: list[str] = []
    for word in _WORD.findall(body):
        if _CJK.search(word):
            out.extend(word)
        else:
            out.append(word)
    return out


def duplicate_passages(text: str, spans: Sequence[tuple[int, int] | PassageSpan]) -> set[int]:
    """Indices of passages that repeat an earlier passage in spans order; the first occurrence is kept.

    A repeat is the same normalised text (labels, claim numbers, case, punctuation and width ignored) or a
    word-trigram Jaccard similarity of at least 0.9. Patents restate claim 1 in the summary and copy
    summary paragraphs into the detailed description; listing both in "read first" wastes a slot. Passages
    under four words or eight Japanese characters (headings, "[CHEMISTRY]", "はい。") are never
    counted as repeats.
    """
    token_lists = [_tokens(text[s:e]) for s, e in (_bounds(sp) for sp in spans)]
    shingles: list[frozenset[str]] = []  # word trigrams joined by spaces (tokens hold no spaces)
    for toks in token_lists:
        cjk = len(_CJK.findall("".join(t for t in toks if len(t) == 1)))
        if len(toks) - cjk / 2 < _MIN_TOKENS:
            shingles.append(frozenset())
        else:
            shingles.append(frozenset(" ".join(toks[k:k + _SHINGLE]) for k in range(len(toks) - _SHINGLE + 1)))
    frequency = Counter(sh for sets in shingles for sh in sets)
    # one global order, rarest first (ties broken by the shingle itself), as prefix filtering requires
    rank = {sh: r for r, sh in enumerate(sorted(frequency, key=lambda sh: (frequency[sh], sh)))}
    seen_exact: dict[tuple[str, ...], int] = {}
    index: dict[str, list[int]] = {}
    duplicates: set[int] = set()
    for i, (toks, sets) in enumerate(zip(token_lists, shingles)):
        if not sets:
            continue
        key = tuple(toks)
        if key in seen_exact:
            duplicates.add(i)
            continue
        seen_exact[key] = i
        # Prefix filtering: two sets with Jaccard >= t share a shingle among each one's rarest
        # |S| - ceil(t|S|) + 1 shingles, so only passages sharing one of those are compared.
        ordered = sorted(sets, key=rank.__getitem__)
        prefix = ordered[:len(ordered) - math.ceil(_JACCARD * len(ordered)) + 1]
        candidates = {j for sh in prefix for j in index.get(sh, ())}
        for j in sorted(candidates):
            other = shingles[j]
            small, large = sorted((len(sets), len(other)))
            if small < _JACCARD * large:
                continue
            if len(sets & other) / len(sets | other) >= _JACCARD:
                duplicates.add(i)
                break
        else:
            for sh in prefix:
                index.setdefault(sh, []).append(i)
    return duplicates
