"""Patent sections per passage, the read-first prior, repeated passages, and the words shading leaves out."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from attn_core.sections import (
    READ_FIRST_WEIGHT,
    Section,
    classify_passages,
    duplicate_passages,
    is_patent,
)
from attn_core.segment import PassageSpan, passage_spans
from attn_core.stopwords import is_unshaded_word

EN_PATENTS = ["US06859910B2", "US07272630B2", "US08926509B2", "US08927118B2", "US08930553B2", "US20050004974A1"]
JA_EXCERPTS = ["ja_patent_excerpt_JP2020151139A_llmjp", "ja_patent_excerpt_JP2020151725A_llmjp"]

# Paragraphs inside the detailed description that are true legal boilerplate (read by hand): scope
# disclaimers, "while the invention has been described…", and IBM's/Microsoft's standard software text.
LEGAL_IN_DETAILED = {
    "US06859910B2": {"[00064]"},
    "US07272630B2": {"[0164]", "[0168]"},
    "US08926509B2": {"[0305]"},
    "US08927118B2": set(),
    "US08930553B2": {f"[{n:04d}]" for n in [*range(13, 22), *range(31, 38)]},
    "US20050004974A1": {"[0191]"},
}
SUMMARY_HEADINGS = {"SUMMARY", "SUMMARY OF THE INVENTION", "DISCLOSURE OF THE INVENTION"}
DRAWINGS_HEADINGS = {"BRIEF DESCRIPTION OF THE DRAWINGS", "BRIEF DESCRIPTION OF THE FIGURES"}
DETAILED_HEADINGS = {"DETAILED DESCRIPTION", "DETAILED DESCRIPTION OF THE INVENTION",
                     "BEST MODE FOR CARRYING OUT THE INVENTION", "EXAMPLES"}
FIELD_HEADINGS = {"TECHNICAL FIELD", "FIELD OF THE INVENTION"}
CROSS_REFERENCE_HEADINGS = {"CROSS REFERENCE TO RELATED U.S. APPLICATIONS", "RELATED APPLICATIONS", "CROSS-REFERENCE",
                            "CROSS-REFERENCE TO RELATED APPLICATIONS", "PRIORITY CLAIM"}
_UPPER_HEADING = re.compile(r"^(?!TABLE \d)[A-Z][A-Z0-9 ,;()/&.\-]{3,}$", re.MULTILINE)
_LABEL = re.compile(r"^\[\d{4,5}\]\s*")


def read(corpus: Path, rel: str) -> str:
    data = (corpus / rel).read_bytes()
    return data.decode("cp932") if rel.endswith("_sjis.txt") else data.decode("utf-8")


def regions(text: str, spans: list[PassageSpan]) -> list[str | None]:
    """The upper-case heading each passage sits under (None before the first one)."""
    heads = [(m.start(), m.group()) for m in _UPPER_HEADING.finditer(text)]
    out = []
    for p in spans:
        before = [h for pos, h in heads if pos <= p.start]
        out.append(before[-1] if before else None)
    return out


def body(text: str, p: PassageSpan) -> str:
    """A passage without a leading heading line and paragraph label."""
    lines = text[p.start:p.end].split("\n")
    while len(lines) > 1 and _UPPER_HEADING.fullmatch(lines[0]):
        lines.pop(0)
    return _LABEL.sub("", "\n".join(lines)).strip()


@pytest.fixture(scope="module", params=EN_PATENTS)
def en_patent(request, corpus):
    text = read(corpus, f"en/{request.param}.txt")
    spans = passage_spans(text, "en")
    return request.param, text, spans, classify_passages(text, spans)


# --------------------------------------------------------------------------- English corpus patents


def test_every_english_patent_is_a_patent(en_patent):
    _, text, _, sections = en_patent
    assert is_patent(text)
    assert Section.BODY not in sections


def test_title_and_meta_lines(en_patent):
    name, text, spans, sections = en_patent
    title = next(i for i, p in enumerate(spans) if "Title: " in text[p.start:p.end])
    assert sections[title] is Section.TITLE
    assert sections[next(i for i, p in enumerate(spans) if "ABSTRACT" in text[p.start:p.end])] is Section.ABSTRACT
    # One span per line, as a caller with finer passages would give: number and date are META.
    lines, pos = [], 0
    for line in text.split("\n")[:4]:
        if line:
            lines.append((pos, pos + len(line)))
        pos += len(line) + 1
    by_line = classify_passages(text, lines)
    assert by_line[0] is Section.META and text[slice(*lines[0])] == name
    assert by_line[1] is Section.META and text[slice(*lines[1])].startswith("Publication date:")
    assert by_line[2] is Section.TITLE


def test_claims_independent_and_dependent(en_patent):
    _, text, spans, sections = en_patent
    in_claims = [i for i, r in enumerate(regions(text, spans)) if r == "CLAIMS"]
    starts = {}
    for i in in_claims:
        m = re.match(r"(\d+)\.(?:\s|$)", body(text, spans[i]))
        if m:
            starts[int(m.group(1))] = i
    assert 1 in starts and sections[starts[1]] is Section.INDEPENDENT_CLAIM
    dependent = independent = 0
    for number, i in starts.items():
        # the whole claim: from its number to the next claim's number
        nxt = min((j for n, j in starts.items() if n > number), default=in_claims[-1] + 1)
        claim = " ".join(body(text, spans[j]) for j in range(i, nxt))
        expected = Section.DEPENDENT_CLAIM if re.search(r"\bclaim \d+", claim) else Section.INDEPENDENT_CLAIM
        assert all(sections[j] is expected for j in range(i, nxt)), claim[:120]
        dependent += expected is Section.DEPENDENT_CLAIM
        independent += expected is Section.INDEPENDENT_CLAIM
    assert independent >= 1 and dependent >= 1


def test_figure_captions_in_the_drawings_section(en_patent):
    name, text, spans, sections = en_patent
    captions = [i for i, r in enumerate(regions(text, spans))
                if r in DRAWINGS_HEADINGS and body(text, spans[i]).startswith("FIG")]
    if name != "US08927118B2":  # the chemistry patent has no drawings
        assert len(captions) >= 5
    assert all(sections[i] is Section.DRAWINGS for i in captions)


def test_summary_paragraphs(en_patent):
    _, text, spans, sections = en_patent
    summary = [i for i, r in enumerate(regions(text, spans)) if r in SUMMARY_HEADINGS]
    content = [i for i in summary if sections[i] is not Section.HEADING]
    assert all(sections[i] is Section.SUMMARY for i in content), [body(text, spans[i])[:60] for i in content
                                                                  if sections[i] is not Section.SUMMARY]
    combined = [i for i, r in enumerate(regions(text, spans))
                if r == "BACKGROUND AND SUMMARY" and sections[i] is not Section.HEADING]
    if combined:  # background first, then the summary from "To achieve these ends, embodiments provide…"
        kinds = [sections[i] for i in combined]
        assert kinds[0] is Section.BACKGROUND and kinds[-1] is Section.SUMMARY
        first_summary = kinds.index(Section.SUMMARY)
        assert set(kinds[first_summary:]) == {Section.SUMMARY}
        assert body(text, spans[combined[first_summary]]).startswith("To achieve these ends")
    else:
        assert content


def test_detailed_description_has_no_drawings_and_only_true_boilerplate(en_patent):
    name, text, spans, sections = en_patent
    detailed = [i for i, r in enumerate(regions(text, spans)) if r in DETAILED_HEADINGS]
    assert detailed
    kinds = Counter(sections[i] for i in detailed)
    assert Section.DRAWINGS not in kinds
    assert set(kinds) <= {Section.DETAILED, Section.LEGAL, Section.HEADING, Section.FIELD}  # FIELD: industrial applicability
    assert kinds[Section.DETAILED] >= 10
    legal = {spans[i].label for i in detailed if sections[i] is Section.LEGAL}
    assert legal == LEGAL_IN_DETAILED[name]
    # a detailed paragraph that merely mentions a figure is still the embodiment
    mentions = [i for i in detailed if re.search(r"\bFIGS?\. \d", text[spans[i].start:spans[i].end])]
    assert all(sections[i] in (Section.DETAILED, Section.LEGAL) for i in mentions)


def test_field_background_and_cross_reference(en_patent):
    _, text, spans, sections = en_patent
    where = regions(text, spans)
    for i, r in enumerate(where):
        if sections[i] is Section.HEADING:
            continue
        if r in FIELD_HEADINGS:
            assert sections[i] is Section.FIELD
        elif r in CROSS_REFERENCE_HEADINGS:
            assert sections[i] is Section.CROSS_REFERENCE
        elif r in {"BACKGROUND OF THE INVENTION", "BACKGROUND ART"}:
            assert sections[i] in (Section.BACKGROUND, Section.FIELD)
    assert Section.BACKGROUND in sections
    assert (Section.CROSS_REFERENCE in sections) == bool(set(where) & CROSS_REFERENCE_HEADINGS)


# --------------------------------------------------------------------------- Japanese corpus excerpts


@pytest.mark.parametrize("name", JA_EXCERPTS)
def test_japanese_excerpts(corpus, name):
    text = read(corpus, f"ja/{name}.txt")
    assert is_patent(text)
    spans = passage_spans(text, "ja")
    sections = classify_passages(text, spans)

    def starting(prefix: str) -> Section:
        hits = [s for p, s in zip(spans, sections) if text[p.start:p.end].startswith(prefix)]
        assert len(hits) == 1, prefix
        return hits[0]

    assert sections[0] is Section.META  # "Japanese Patent Raw Record" header
    assert starting("Source year") is Section.META
    assert starting("【要約】") is Section.ABSTRACT
    assert starting("【解決手段】") is Section.ABSTRACT  # 課題/解決手段 inside 【要約】 are the abstract
    assert starting("【選択図】") is Section.DRAWINGS
    # without ingestion's paragraphs the heading joins claim 1's passage; either way claim 1 is independent
    assert starting("【特許請求の範囲】") in (Section.HEADING, Section.INDEPENDENT_CLAIM)
    assert [s for p, s in zip(spans, sections) if "【請求項１】" in text[p.start:p.end]] == [Section.INDEPENDENT_CLAIM]
    assert starting("meta.local_path:") is Section.META
    assert sections[-1] is Section.META  # the dataset path after the claim


# --------------------------------------------------------------------------- not patents


@pytest.mark.parametrize("rel", [
    "ja/ja_patent_act_tokkyoho_334AC0000000121.txt",
    "ja/ja_aozora_tsumi_to_batsu_yonekawa_sjis.txt",
    "ja/ja_aozora_shiki_rososhinkan_retsuden_sjis.txt",
    "ja/ja_jpo_exam_guidelines_III-2-2_inventive_step.pypdf_extracted.txt",
])
def test_statute_novels_and_guidelines_are_not_patents(corpus, rel):
    text = read(corpus, rel)
    assert not is_patent(text)
    piece = text[:20000]
    spans = passage_spans(piece, "ja")
    sections = classify_passages(piece, spans)
    assert set(sections) <= {Section.BODY, Section.TITLE, Section.HEADING, Section.LEGAL, Section.SUPPLEMENTARY}
    assert Counter(sections)[Section.BODY] > len(sections) / 2  # running text stays running text


def test_a_statutes_supplementary_provisions_title_and_headings(corpus):
    """The Patent Act: its name line is the TITLE, chapter headings are HEADING, articles are BODY, and from
    the first 附則 after article 1 on (not the table of contents' 附則 line) every passage is
    SUPPLEMENTARY or a heading."""
    text = read(corpus, "ja/ja_patent_act_tokkyoho_334AC0000000121.txt")
    spans = passage_spans(text, "ja")
    sections = classify_passages(text, spans)
    pieces = [text[p.start:p.end].strip() for p in spans]
    assert sections[0] is Section.TITLE and pieces[0].startswith("特許法")
    article_1 = next(i for i, t in enumerate(pieces) if "第一条\u3000この法律は、発明の保護" in t)
    assert sections[article_1] is Section.BODY
    assert sections[pieces.index("第一章\u3000総則")] is Section.HEADING
    supplement = next(i for i in range(article_1, len(pieces)) if re.match(r"附\s*則", pieces[i]))
    assert all(s is Section.BODY or s is Section.HEADING for s in sections[article_1:supplement])
    assert set(sections[supplement:]) <= {Section.SUPPLEMENTARY, Section.HEADING}
    assert Counter(sections[supplement:])[Section.SUPPLEMENTARY] > 100
    assert Section.SUPPLEMENTARY not in sections[:supplement]


GENERAL_EN = """Guide to Reading Long Documents

1. Introduction

Reviewers read the summary first, because it states what the document is about in a few sentences.
0. Definitions.
A "passage" is a paragraph or, where the text has none, a sentence.
It works.
Figure 3
the following items, which are listed below,
Copyright (C) 2024 Example Corp. All rights reserved.
"""

GENERAL_JA = """審査基準の読み方

第 2 節 進歩性

進歩性の判断は、当業者が容易に発明をすることができたか否かを論理付けによって判断する。
附則
この基準は、公表の日から適用する。
"""


def test_general_documents_sections_line_by_line():
    """Outside patents: short unpunctuated lines (and numbered headings ending in a full stop) are headings,
    the first is the title, a copyright notice is LEGAL, sentences stay BODY however short, and a line that
    ends mid-sentence is not a heading. 附則 only means a statute's supplementary provisions after an article."""
    def sections_of(text: str) -> dict[str, Section]:
        lines = [ln for ln in text.split("\n") if ln.strip()]
        spans, at = [], 0
        for ln in lines:
            at = text.index(ln, at)
            spans.append((at, at + len(ln)))
            at += len(ln)
        return dict(zip(lines, classify_passages(text, spans)))

    en = sections_of(GENERAL_EN)
    assert en["Guide to Reading Long Documents"] is Section.TITLE
    assert en["1. Introduction"] is Section.HEADING and en["0. Definitions."] is Section.HEADING
    assert en["Figure 3"] is Section.HEADING
    assert en["Copyright (C) 2024 Example Corp. All rights reserved."] is Section.LEGAL
    for body in ("It works.", "the following items, which are listed below,",
                 'A "passage" is a paragraph or, where the text has none, a sentence.'):
        assert en[body] is Section.BODY, body
    ja = sections_of(GENERAL_JA)
    assert ja["審査基準の読み方"] is Section.TITLE and ja["第 2 節 進歩性"] is Section.HEADING
    assert ja["この基準は、公表の日から適用する。"] is Section.BODY  # no article before 附則: not a statute
    statute = "（目的）\n第一条　この法律は、目的を定める。\n附　則\n（施行期日）\n第一条　この法律は、公布の日から施行する。\n"
    st = sections_of(statute)
    assert st["第一条　この法律は、目的を定める。"] is Section.BODY
    assert st["第一条　この法律は、公布の日から施行する。"] is Section.SUPPLEMENTARY


def test_prose_about_claims_is_not_a_patent():
    essay = ("Abstract\nWe study how examiners read claims. Claim 1 of the patent was narrow.\n"
             "Background\nFIG. 1 shows the survey. The applicant amended claim 2.\n")
    assert not is_patent(essay)
    assert not is_patent("")


# --------------------------------------------------------------------------- synthetic documents

JP_PUBLICATION = """【書誌事項】
【発行国】日本国特許庁（ＪＰ）
【公報種別】公開特許公報（Ａ）
【公開番号】特開２０２０－９９９９９９（Ｐ２０２０－９９９９９９Ａ）
【公開日】令和２年９月２４日（２０２０．９．２４）
【発明の名称】バルーンカテーテル
【出願人】
【氏名又は名称】例示医療株式会社
【要約】
【課題】挿入時の患者の不快感が少ないバルーンカテーテルを提供する。
【解決手段】カテーテル本体２０と、バルーン部４０とを有するバルーンカテーテル。
【選択図】図３
【技術分野】
【０００１】
　本発明は、バルーンカテーテルに関する。
【背景技術】
【０００２】
　従来、尿道に挿入されるバルーンカテーテルが知られている（特許文献１）。
【先行技術文献】
【特許文献】
【０００３】
【特許文献１】特開２０１０－１２３４５６号公報
【発明の概要】
【発明が解決しようとする課題】
【０００４】
　従来のカテーテルは、挿入時に患者に不快感を与えるという問題があった。
【課題を解決するための手段】
【０００５】
　本発明のバルーンカテーテルは、第一流路及び第二流路を備えたカテーテル本体と、バルーン部とを有する。
【発明の効果】
【０００６】
　本発明によれば、挿入時の患者の不快感を低減できる。
【図面の簡単な説明】
【０００７】
【図１】本発明の一実施形態に係るバルーンカテーテルの正面図である。
【図２】図１のＡ－Ａ線断面図である。
【発明を実施するための形態】
【０００８】
　以下、図１を参照して本発明の一実施形態について説明する。カテーテル本体２０は、第一流路２２と第二流路２３とを備える。
【実施例】
【０００９】
　シリコーン製のチューブ４１を用いてバルーン部４０を作製し、挿入試験を行った。
【００１０】
　なお、本発明は上記実施形態に限定されるものではなく、本発明の要旨を逸脱しない範囲で種々の変更が可能である。
【符号の説明】
【００１１】
２０　カテーテル本体
４０　バルーン部
【特許請求の範囲】
【請求項１】
　第一流路及び第二流路を備えたカテーテル本体と、バルーン部とを有するバルーンカテーテルであって、前記バルーン部が可撓性のチューブからなるバルーンカテーテル。
【請求項２】
　前記チューブがシリコーンからなる、請求項１に記載のバルーンカテーテル。
【請求項３】
　カテーテル本体と、膨張可能なバルーン部と、を備える尿道用カテーテル。
"""

JP_EXPECTED = [  # (text the passage contains, section)
    ("本発明は、バルーンカテーテルに関する。", Section.FIELD),
    ("尿道に挿入されるバルーンカテーテルが知られている", Section.BACKGROUND),
    ("【特許文献１】特開２０１０", Section.BACKGROUND),
    ("挿入時に患者に不快感を与えるという問題", Section.SUMMARY),
    ("本発明のバルーンカテーテルは、第一流路", Section.SUMMARY),
    ("本発明によれば、挿入時の患者の不快感を低減できる。", Section.SUMMARY),
    ("【図１】本発明の一実施形態", Section.DRAWINGS),
    ("【図２】図１のＡ－Ａ線断面図", Section.DRAWINGS),
    ("以下、図１を参照して", Section.DETAILED),
    ("シリコーン製のチューブ４１を用いて", Section.DETAILED),
    ("本発明は上記実施形態に限定されるものではなく", Section.LEGAL),
    ("２０　カテーテル本体", Section.DRAWINGS),
    ("前記バルーン部が可撓性のチューブからなるバルーンカテーテル。", Section.INDEPENDENT_CLAIM),
    ("請求項１に記載のバルーンカテーテル。", Section.DEPENDENT_CLAIM),
    ("膨張可能なバルーン部と、を備える尿道用カテーテル。", Section.INDEPENDENT_CLAIM),
]


def _section_of(text: str, spans, sections, needle: str) -> Section:
    hits = [s for p, s in zip(spans, sections) if needle in text[_start(p):_end(p)]]
    assert len(hits) == 1, needle
    return hits[0]


def _start(p) -> int:
    return p.start if isinstance(p, PassageSpan) else p[0]


def _end(p) -> int:
    return p.end if isinstance(p, PassageSpan) else p[1]


def test_synthetic_japanese_publication_with_passage_spans():
    assert is_patent(JP_PUBLICATION)
    spans = passage_spans(JP_PUBLICATION, "ja")
    sections = classify_passages(JP_PUBLICATION, spans)
    for needle, expected in JP_EXPECTED:
        assert _section_of(JP_PUBLICATION, spans, sections, needle) is expected, needle
    assert sections[0] is Section.META  # 【書誌事項】【発行国】…
    heads = [JP_PUBLICATION[p.start:p.end] for p, s in zip(spans, sections) if s is Section.HEADING]
    assert "【背景技術】" in heads and "【発明を実施するための形態】" in heads


def test_synthetic_japanese_publication_line_by_line():
    """One span per line: every 【…】 heading, title and bibliographic line gets its own section."""
    text = JP_PUBLICATION
    spans, pos = [], 0
    for line in text.split("\n"):
        if line.strip():
            spans.append((pos, pos + len(line)))
        pos += len(line) + 1
    sections = classify_passages(text, spans)
    by_line = {text[s:e].strip(): sec for (s, e), sec in zip(spans, sections)}
    assert by_line["【発明の名称】バルーンカテーテル"] is Section.TITLE
    assert by_line["【書誌事項】"] is Section.META
    assert by_line["【公報種別】公開特許公報（Ａ）"] is Section.META
    assert by_line["【出願人】"] is Section.META
    assert by_line["【課題】挿入時の患者の不快感が少ないバルーンカテーテルを提供する。"] is Section.ABSTRACT
    assert by_line["【選択図】図３"] is Section.DRAWINGS
    for heading in ["【技術分野】", "【背景技術】", "【発明の概要】", "【図面の簡単な説明】", "【符号の説明】",
                    "【特許請求の範囲】", "【実施例】"]:
        assert by_line[heading] is Section.HEADING, heading
    for needle, expected in JP_EXPECTED:
        hits = [sec for (s, e), sec in zip(spans, sections) if needle in text[s:e]]
        assert hits and hits[0] is expected, needle
    # 【請求項２】 alone on its line starts claim 2; the next line continues it
    label = next(i for i, (s, e) in enumerate(spans) if text[s:e] == "【請求項２】")
    assert sections[label] is sections[label + 1] is Section.DEPENDENT_CLAIM


EN_SMALL = """US09999999B2
Publication date: 20200101
Title: Pump with valve

ABSTRACT
A pump has a valve that controls the flow of a fluid.

CLAIMS
1. A pump comprising a housing and a valve configured to control a flow.

2. The pump of claim 1, wherein the valve is a check valve.

3. A pump according to claim 2 further comprising a motor.

4. The pump as recited in claim 1, wherein the housing is metal.

5. The pump as claimed in any one of the preceding claims, wherein the flow is a liquid.

6. Claim 1, wherein the motor is electric.

7. A method of pumping a fluid, comprising opening a valve and driving a motor.

DESCRIPTION

BACKGROUND OF THE INVENTION
[0001] Pumps are known. FIG. 1 of U.S. Pat. No. 1,234,567 shows a prior pump.

SUMMARY OF THE INVENTION
[0002] In one aspect, a pump comprises a housing and a valve configured to control a flow.
FIG. 2 shows a perspective view of the pump.

BRIEF DESCRIPTION OF THE DRAWINGS
[0003] FIG. 1 is a sectional view of the pump.
[0004] FIGS. 2 and 3 show the valve.

DETAILED DESCRIPTION
[0005] FIG. 3 shows the valve 211 in a closed state; the valve 211 closes the port 214a.
[0006] FIG. 4 is a sectional view along line A-A showing the housing 210.
[0007] The housing 210 is cast aluminium and the valve 211 is a ball valve seated in the port 214a.
[0008] The terminology used herein is for the purpose of describing particular embodiments only and is not intended to be limiting.
[0009] While the invention has been described with reference to exemplary embodiments, various changes may be made without departing from the scope of the invention.
"""


def test_synthetic_english_patent():
    text = EN_SMALL
    assert is_patent(text)
    spans = passage_spans(text, "en")
    sections = classify_passages(text, spans)

    def of(needle: str) -> Section:
        return _section_of(text, spans, sections, needle)

    assert of("Title: Pump with valve") is Section.TITLE
    assert of("A pump has a valve") is Section.ABSTRACT
    assert of("1. A pump comprising") is Section.INDEPENDENT_CLAIM
    for claim in ["2. The pump of claim 1", "3. A pump according to claim 2", "4. The pump as recited in claim 1",
                  "5. The pump as claimed in any one of the preceding", "6. Claim 1, wherein"]:
        assert of(claim) is Section.DEPENDENT_CLAIM, claim
    assert of("7. A method of pumping") is Section.INDEPENDENT_CLAIM
    assert of("Pumps are known") is Section.BACKGROUND
    assert of("In one aspect, a pump") is Section.SUMMARY
    assert of("FIG. 1 is a sectional view") is Section.DRAWINGS
    assert of("FIGS. 2 and 3 show") is Section.DRAWINGS
    assert of("FIG. 3 shows the valve 211") is Section.DETAILED  # a figure mentioned in the embodiment
    assert of("FIG. 4 is a sectional view along") is Section.DETAILED
    assert of("The housing 210 is cast") is Section.DETAILED
    assert of("The terminology used herein") is Section.LEGAL
    assert of("While the invention has been described") is Section.LEGAL
    assert [s for p, s in zip(spans, sections) if text[p.start:p.end] == "DESCRIPTION"] == [Section.HEADING]


def test_captions_without_a_drawings_heading_and_spans_out_of_order():
    text = EN_SMALL.replace("BRIEF DESCRIPTION OF THE DRAWINGS\n", "")
    spans = passage_spans(text, "en")
    sections = classify_passages(text, spans)
    caption = next(i for i, p in enumerate(spans) if "FIG. 1 is a sectional" in text[p.start:p.end])
    assert sections[caption] is Section.DRAWINGS  # a caption paragraph after the summary
    shuffled = list(reversed([(p.start, p.end) for p in spans]))
    assert classify_passages(text, shuffled) == list(reversed(sections))
    assert classify_passages(text, []) == []


PRINTED_FRONT_PAGE = """(12) United States Patent
Smith et al.
(10) Patent No.: US 9,999,999 B2
(45) Date of Patent: Jan. 1, 2020
(54) PUMP WITH CHECK VALVE

(57) ABSTRACT
A pump has a valve that controls the flow of a fluid through a housing.

BACKGROUND
Pumps are known in the art. Conventional pumps leak when stopped.

SUMMARY
In one aspect, a pump comprises a housing and a check valve that prevents back flow.

BRIEF DESCRIPTION OF THE DRAWINGS
FIG. 1 is a sectional view of the pump.
FIG. 2 is a perspective view of the valve.

DETAILED DESCRIPTION
Referring to FIG. 1, the pump 10 includes a housing 12 and a valve 14. The valve 14 is a ball valve.

Summary of Test Results
The pump held pressure for ten hours in every test, and the valve 14 never leaked.

Figures
FIG. 2 is referred to here only as a figure name inside the embodiment.

What is claimed is:
1. A pump comprising a housing and a check valve configured to prevent back flow.
2. The pump of claim 1, wherein the check valve is a ball valve.
3. A method of pumping comprising driving a motor.
"""


def test_printed_front_page_with_claims_at_the_end():
    """PDF layout: INID-coded front page, claims after the description, title-case sub-headings inside it."""
    text = PRINTED_FRONT_PAGE
    assert is_patent(text)
    lines, pos = [], 0
    for line in text.split("\n"):
        if line:
            lines.append((pos, pos + len(line)))
        pos += len(line) + 1
    sections = dict(zip((text[s:e] for s, e in lines), classify_passages(text, lines), strict=True))
    assert sections["(12) United States Patent"] is Section.META
    assert sections["Smith et al."] is Section.META
    assert sections["(54) PUMP WITH CHECK VALVE"] is Section.TITLE
    assert sections["A pump has a valve that controls the flow of a fluid through a housing."] is Section.ABSTRACT
    assert sections["FIG. 1 is a sectional view of the pump."] is Section.DRAWINGS
    assert sections["Summary of Test Results"] is Section.HEADING
    assert sections["The pump held pressure for ten hours in every test, and the valve 14 never leaked."] \
        is Section.DETAILED  # a title-case "Summary…" inside the embodiment does not reopen the summary
    assert sections["FIG. 2 is referred to here only as a figure name inside the embodiment."] is Section.DETAILED
    assert sections["What is claimed is:"] is Section.HEADING
    assert sections["1. A pump comprising a housing and a check valve configured to prevent back flow."] \
        is Section.INDEPENDENT_CLAIM
    assert sections["2. The pump of claim 1, wherein the check valve is a ball valve."] is Section.DEPENDENT_CLAIM
    assert sections["3. A method of pumping comprising driving a motor."] is Section.INDEPENDENT_CLAIM
    spans = passage_spans(text, "en")
    by_passage = classify_passages(text, spans)
    claims = [s for p, s in zip(spans, by_passage, strict=True) if re.match(r"\d\. ", text[p.start:p.end])]
    assert claims == [Section.INDEPENDENT_CLAIM, Section.DEPENDENT_CLAIM, Section.INDEPENDENT_CLAIM]


def test_japanese_claim_dependency_forms():
    text = ("【特許請求の範囲】\n【請求項１】\nＡを備える装置。\n【請求項２】\n前記Ａが金属である請求項１に記載の装置。\n"
            "【請求項３】\n請求項１又は２に記載の装置を用いる方法。\n【請求項４】\nＢを備える方法。\n"
            "【発明の詳細な説明】\n【技術分野】\n【０００１】\n本発明は装置に関する。\n")
    assert is_patent(text)
    spans = passage_spans(text, "ja")
    sections = classify_passages(text, spans)
    claims = [s for p, s in zip(spans, sections) if "【請求項" in text[p.start:p.end]]
    assert claims == [Section.INDEPENDENT_CLAIM, Section.DEPENDENT_CLAIM, Section.DEPENDENT_CLAIM,
                      Section.INDEPENDENT_CLAIM]
    assert sections[-1] is Section.FIELD


# --------------------------------------------------------------------------- the read-first prior


def test_read_first_weight_is_a_prior_over_every_section():
    assert set(READ_FIRST_WEIGHT) == set(Section)
    for promoted in (Section.SUMMARY, Section.INDEPENDENT_CLAIM, Section.DETAILED):
        assert READ_FIRST_WEIGHT[promoted] > 1.0
    assert READ_FIRST_WEIGHT[Section.BODY] == 1.0
    assert 0.5 <= READ_FIRST_WEIGHT[Section.ABSTRACT] < 1.0
    for demoted in (Section.TITLE, Section.META, Section.DRAWINGS, Section.LEGAL, Section.CROSS_REFERENCE,
                    Section.BACKGROUND, Section.HEADING, Section.DEPENDENT_CLAIM, Section.FIELD,
                    Section.SUPPLEMENTARY):
        assert READ_FIRST_WEIGHT[demoted] <= 0.25, demoted
    assert READ_FIRST_WEIGHT[Section.INDEPENDENT_CLAIM] > 4 * READ_FIRST_WEIGHT[Section.DEPENDENT_CLAIM]
    with pytest.raises(TypeError):
        READ_FIRST_WEIGHT[Section.TITLE] = 5.0  # type: ignore[index]


def test_prior_puts_summary_claims_and_embodiment_first(corpus):
    """Attention-like scores that favour short, term-dense passages still rank the right passages first."""
    text = read(corpus, "en/US08930553B2.txt")
    spans = passage_spans(text, "en")
    sections = classify_passages(text, spans)
    # a caricature of the problem: shorter passages get more attention
    attention = [1.0 / (p.end - p.start) ** 0.5 for p in spans]
    ranked = sorted(range(len(spans)), key=lambda i: -attention[i] * READ_FIRST_WEIGHT[sections[i]])
    top = {sections[i] for i in ranked[:5]}
    assert top <= {Section.SUMMARY, Section.INDEPENDENT_CLAIM, Section.DETAILED, Section.ABSTRACT}
    unweighted = {sections[i] for i in sorted(range(len(spans)), key=lambda i: -attention[i])[:5]}
    assert unweighted & {Section.HEADING, Section.TITLE, Section.DRAWINGS, Section.DEPENDENT_CLAIM}


# --------------------------------------------------------------------------- duplicates


def _spans_of(pieces: list[str]) -> tuple[str, list[tuple[int, int]]]:
    text, spans = "", []
    for piece in pieces:
        spans.append((len(text), len(text) + len(piece)))
        text += piece + "\n\n"
    return text, spans


def test_duplicates_keep_the_first():
    claim = ("1. A system for processing messages, the system comprising a receiver configured to receive a "
             "message and a processor configured to create a new session for the message.")
    copy = ("[0004] A system for processing messages, the system comprising a receiver configured to receive a "
            "message and a processor configured to create a new session for the message.")
    other = "[0005] The processor may be a general purpose computer running any operating system at all."
    shouted = ("CLAIMS\n8. A SYSTEM FOR PROCESSING MESSAGES, the system comprising: a receiver configured to "
               "receive a message and a processor configured to create a new session for the message!")
    text, spans = _spans_of([claim, other, copy, "SUMMARY", "SUMMARY", shouted])
    assert duplicate_passages(text, spans) == {2, 5}
    # the first occurrence is kept whichever kind it is
    text, spans = _spans_of([copy, claim])
    assert duplicate_passages(text, spans) == {1}


def test_near_duplicates_need_ninety_percent_overlap():
    words = [f"w{i}" for i in range(60)]
    base = " ".join(words)
    one_word = " ".join(words[:30] + ["changed"] + words[31:])  # 3 of 58 trigrams differ: J ≈ 0.90
    many = " ".join(words[:20] + ["x", "y", "z", "q"] + words[24:])
    text, spans = _spans_of([base, one_word, many])
    assert duplicate_passages(text, spans) == {1}
    assert duplicate_passages(*_spans_of(["a b c", "a b c"])) == set()  # too short to count
    assert duplicate_passages("", []) == set()


def test_japanese_duplicates_and_full_width_forms():
    a = "【０００５】本発明のバルーンカテーテルは、第一流路及び第二流路を備えたカテーテル本体と、バルーン部とを有する。"
    b = "【請求項１】\n本発明のバルーンカテーテルは、第一流路及び第二流路を備えたカテーテル本体と、バルーン部とを有する。"
    c = "【０００９】シリコーン製のチューブを用いてバルーン部を作製し、挿入試験を行った。"
    d = "[0001] Valve ２１１ closes port ２１４ａ when the pump stops running."
    e = "[0002] Valve 211 closes port 214a when the pump stops running."
    text, spans = _spans_of([a, c, b, d, e, "はい。", "はい。"])
    assert duplicate_passages(text, spans) == {2, 4}


def test_corpus_summary_copied_into_best_mode(corpus):
    text = read(corpus, "en/US08927118B2.txt")
    spans = passage_spans(text, "en")
    dups = duplicate_passages(text, spans)
    label = {p.label: i for i, p in enumerate(spans)}
    assert label["[0061]"] in dups and label["[0033]"] not in dups  # same sentence, summary first
    assert label["[0045]"] not in dups


# --------------------------------------------------------------------------- words shading leaves out


@pytest.mark.parametrize("word", ["the", "of", "said", "wherein", "thereof", "The", "211", "214a", "S101", "102A",
                                  ",", "(", "don't"])
def test_english_unshaded(word):
    assert is_unshaded_word(word, "en")


@pytest.mark.parametrize("word", ["catheter", "balloon", "valve", "10mg", "5V", "CO2", "R1", "1.5", "comprising"])
def test_english_shaded(word):
    assert not is_unshaded_word(word, "en")


@pytest.mark.parametrize("word", ["は", "を", "。", "、", "が", "の", "です", "た", "１２", "２０", "ｂ", "Ｓ１０１", "前記",
                                  "第", "六十", "七", "二十", "百"])
def test_japanese_unshaded(word):
    assert is_unshaded_word(word, "ja")


@pytest.mark.parametrize("word", ["カテーテル", "バルーン", "流路", "膨張", "チューブ", "一般", "十分", "条", "次第"])
def test_japanese_shaded(word):
    assert not is_unshaded_word(word, "ja")


def test_japanese_part_of_speech_from_context_wins():
    assert is_unshaded_word("で", "ja", pos="助詞")
    assert not is_unshaded_word("カテーテル", "ja", pos="名詞")
    assert is_unshaded_word("前記", "ja", pos="名詞")  # patent "said"
