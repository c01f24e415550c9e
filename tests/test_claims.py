"""Claims and queries: extraction from real patents, element splitting in both languages (pure, no model)."""
from __future__ import annotations

import pytest

from attn_core import QueryError, document_from_text, ingest_path
from attn_core.claims import (
    Query,
    claims_region,
    extract_claims,
    make_query,
    normalize_text,
    split_elements,
    without_claims,
)

US_PATENTS = ["US06859910B2", "US07272630B2", "US08926509B2", "US08927118B2", "US08930553B2", "US20050004974A1"]


def test_us_full_text_claims_are_found_in_order(corpus):
    doc = ingest_path(corpus / "en" / "US08930553B2.txt")
    claims = extract_claims(doc)
    assert [c.number for c in claims] == list(range(1, 9))
    c1 = claims[0]
    assert doc.text[c1.start:c1.end] == c1.text
    assert c1.text.startswith("A system for processing mid-dialog SIP messages")
    assert c1.text.endswith("will accept the mid-dialog SIP message.")


@pytest.mark.parametrize("name", US_PATENTS)
def test_every_corpus_patent_has_claim_one(corpus, name):
    doc = ingest_path(corpus / "en" / f"{name}.txt")
    claims = extract_claims(doc)
    assert claims and claims[0].number == 1 and claims[0].text[:2] in ("A ", "An")
    assert "DESCRIPTION" not in claims[-1].text


def test_uspto_xml_claims_come_from_paragraph_labels(corpus):
    xml = ingest_path(corpus / "en" / "raw_xml" / "US08930553.xml")
    txt = ingest_path(corpus / "en" / "US08930553B2.txt")
    a, b = extract_claims(xml), extract_claims(txt)
    assert [c.number for c in a] == [c.number for c in b]
    assert normalize_text(a[0].text) == normalize_text(b[0].text)


def test_english_claim_elements(corpus):
    doc = ingest_path(corpus / "en" / "US20050004974A1.txt")
    q = make_query(extract_claims(doc)[0].text)
    assert q.language == "en"
    assert q.elements == ("A device model agent (DMA)",
                          "at least one device API through which the agent communicates with a device",
                          "a core device model including at least one CIM provider",
                          "a service environment")


def test_english_elements_split_at_semicolons_and_wherein(corpus):
    doc = ingest_path(corpus / "en" / "US06859910B2.txt")
    els = split_elements(extract_claims(doc)[0].text, "en")
    assert els[0] == "A method of executing an electronic transaction"
    assert "establishing a persistent connection to a server" in els
    assert "wherein the server has a capability of executing an electronic transaction" in els
    assert els[-1].startswith("upon interaction of the user with the display")  # leading "and" dropped
    assert not any(e.endswith((" and", ";", ",")) for e in els)


def test_japanese_claim_elements(corpus):
    doc = ingest_path(corpus / "ja" / "ja_patent_excerpt_JP2020151139A_llmjp.txt")
    claims = extract_claims(doc)
    assert [c.number for c in claims] == [1]
    q = make_query(claims[0].text)
    assert q.language == "ja"
    assert q.elements[0].startswith("内部に第一流路及び第二流路を備えたカテーテル本体と")
    assert q.elements[0].endswith("バルーンカテーテル")  # preamble up to 「であって、」
    assert "前記排出口端面の近傍で前記チューブが反転された反転部" in q.elements
    assert q.elements[-1] == "前記チューブの軸方向の他端部が、前記カテーテル本体の外壁に接続された第二接続部"
    # hard-wrapped lines are joined: バルーンカテ／ーテル is one word again
    assert all("\n" not in e and " " not in e for e in q.elements)
    assert "前記バルーン部が" in q.elements[1]


def test_japanese_closing_phrase_is_dropped(corpus):
    doc = ingest_path(corpus / "ja" / "ja_patent_excerpt_JP2020151725A_llmjp.txt")
    els = split_elements(extract_claims(doc)[0].text, "ja")
    assert len(els) == 3
    assert els[1].endswith("状態観測部") and els[2].endswith("学習する学習部")
    assert not any("を備える" in e for e in els[1:])


def test_japanese_conditional_to_is_not_an_element_boundary():
    els = split_elements("データを受信すると、前記データを記憶する記憶部と、前記データを表示する表示部とを備える装置。", "ja")
    assert els == ["データを受信すると、前記データを記憶する記憶部", "前記データを表示する表示部"]


def test_free_text_query_is_one_element():
    q = make_query("balloon catheter inserted into a blood vessel")
    assert q.elements == (q.text,)


def test_pasted_claim_number_is_dropped():
    assert make_query("1. A widget comprising: a gear; a spring").elements == ("A widget", "a gear", "a spring")
    assert make_query("【請求項１】\nバルーンと、チューブとを備えるカテーテル。").text.startswith("バルーン")


@pytest.mark.parametrize("text", ["", "   \n\t ", "。、；"])
def test_empty_query_is_an_error(text):
    with pytest.raises(QueryError):
        make_query(text)


def test_edited_elements_replace_the_split():
    q = make_query("A widget comprising: a gear; a spring").with_elements(["a gear", " ", "a lever"])
    assert q.elements == ("a gear", "a lever")
    assert Query("free text").elements == ("free text",)


def test_without_claims_removes_the_claims_section(corpus):
    doc = ingest_path(corpus / "en" / "US08930553B2.txt")
    claim1 = extract_claims(doc)[0].text
    stripped = without_claims(doc)
    assert claim1 not in stripped.text and "\nCLAIMS\n" not in stripped.text
    assert "ABSTRACT" in stripped.text and "DESCRIPTION" in stripped.text
    assert extract_claims(stripped) == [] and stripped.sha256 != doc.sha256
    # paragraphs after the cut still point at the same text
    for p_old, p_new in zip(doc.paragraphs[-3:], stripped.paragraphs[-3:]):
        assert doc.text[p_old.start:p_old.end] == stripped.text[p_new.start:p_new.end]


def test_without_claims_on_xml_and_japanese(corpus):
    xml = ingest_path(corpus / "en" / "raw_xml" / "US08930553.xml")
    s = without_claims(xml)
    assert not any((p.label or "").startswith("Claim ") for p in s.paragraphs)
    assert "\nCLAIMS\n" not in s.text and "Abstract" in [p.label for p in s.paragraphs]
    ja = ingest_path(corpus / "ja" / "ja_patent_excerpt_JP2020151139A_llmjp.txt")
    s = without_claims(ja)
    assert "【請求項" not in s.text and "【特許請求の範囲】" not in s.text and "【要約】" in s.text


def test_document_without_claims_is_unchanged():
    doc = document_from_text("Just a note. Nothing claimed here.\n")
    assert extract_claims(doc) == [] and claims_region(doc) is None and without_claims(doc) is doc
