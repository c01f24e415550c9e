"""Ingestion against real documents and hostile uploads: every failure must be a typed, named IngestError."""
from __future__ import annotations

import io
import random
import unicodedata
import zipfile
from pathlib import Path

import pytest

from attn_core.errors import (
    CorruptFileError,
    EmptyDocumentError,
    EncodingDetectionError,
    EncryptedFileError,
    FileTooLargeError,
    IngestError,
    NoTextLayerError,
    UnsafeFileError,
    UnsupportedFormatError,
)
from attn_core.ingest import (
    SUPPORTED_EXTENSIONS,
    IngestLimits,
    ingest_bytes,
    ingest_path,
    nfkc_with_map,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SHARED_CORPUS = REPO_ROOT.parent / "shared" / "corpus"
needs_shared = pytest.mark.skipif(not SHARED_CORPUS.is_dir(), reason=f"shared corpus not found at {SHARED_CORPUS}")

JA_EXCERPT = DATA / "ja_patent_excerpt_JP2020151139A_llmjp.txt"
USPTO_EXCERPT = DATA / "uspto_US08930553_excerpt.xml"
AOZORA_SAMPLE = DATA / "aozora_style_sample_sjis.txt"


def _corpus_files() -> list[Path]:
    if not SHARED_CORPUS.is_dir():
        return []
    return sorted(p for p in SHARED_CORPUS.rglob("*") if p.is_file() and p.suffix in (".txt", ".pdf", ".xml"))


# --------------------------------------------------------------------------- real documents


@needs_shared
@pytest.mark.parametrize("path", _corpus_files(), ids=lambda p: p.name)
def test_every_corpus_file_ingests_with_the_right_language(path: Path) -> None:
    doc = ingest_path(path)
    expected = "ja" if path.parent.name == "ja" else "en"
    assert doc.language == expected
    assert doc.name == path.name
    assert doc.chars > 500
    assert doc.text.strip()
    assert "\r" not in doc.text
    assert len(doc.sha256) == 64
    assert doc.notes
    for p in doc.paragraphs:
        assert 0 <= p.start < p.end <= len(doc.text)


@needs_shared
def test_aozora_corpus_files_lose_all_markup() -> None:
    for path in sorted((SHARED_CORPUS / "ja").glob("*aozora*_sjis.txt")):
        doc = ingest_path(path)
        assert doc.source_format == "aozora"
        assert doc.encoding == "cp932"
        for mark in ("《", "》", "［＃", "｜", "底本：", "-------"):
            assert mark not in doc.text, (path.name, mark)
        assert any("Shift_JIS" in n for n in doc.notes)
        assert any("Aozora" in n for n in doc.notes)


@needs_shared
def test_uspto_xml_matches_the_corpus_text_made_from_it() -> None:
    doc = ingest_path(SHARED_CORPUS / "en" / "raw_xml" / "US08930553.xml")
    reference = (SHARED_CORPUS / "en" / "US08930553B2.txt").read_text(encoding="utf-8")
    assert doc.text == reference
    assert doc.source_format == "uspto-xml"


@needs_shared
def test_real_japanese_pdf_paragraphs_pages_and_headers() -> None:
    path = SHARED_CORPUS / "ja" / "ja_jpo_exam_guidelines_III-2-2_inventive_step.pdf"
    doc = ingest_path(path)
    assert doc.source_format == "pdf" and doc.language == "ja"
    assert "(2020.12)" not in doc.text  # page footer "- 3 - (2020.12)" dropped
    assert doc.text.count("第 III 部 第 2 章") + doc.text.count("第III 部 第 2 章") == 0  # running header dropped
    # hard-wrapped Japanese lines are joined without spaces
    assert "通常の知識を有する者" in doc.text
    pages = [p.page for p in doc.paragraphs]
    assert pages == sorted(pages) and pages[0] == 1 and pages[-1] >= 13
    assert any("header" in n for n in doc.notes)


# --------------------------------------------------------------------------- encodings

ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "cp932", "euc_jp", "iso2022_jp"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_same_japanese_text_decodes_identically_in_every_encoding(encoding: str) -> None:
    reference = JA_EXCERPT.read_text(encoding="utf-8")
    doc = ingest_bytes(reference.encode(encoding), "excerpt.txt")
    assert doc.text == reference
    assert doc.language == "ja"
    assert doc.paragraphs and doc.paragraphs[0].label == "【請求項１】"


def test_crlf_is_converted_and_reported() -> None:
    doc = ingest_bytes("line one\r\nline two\rline three\r\n".encode(), "a.txt")
    assert doc.text == "line one\nline two\nline three\n"
    assert any("CRLF" in n for n in doc.notes)


def test_plain_text_is_not_rewritten() -> None:
    text = "  ＡＢＣ１２３　全角  and\ttabs\n\n\n[0001] Keep   spacing.\n"
    doc = ingest_bytes(text.encode("utf-8"), "keep.txt")
    assert doc.text == text
    assert doc.paragraphs[0].label == "[0001]"
    assert doc.text[doc.paragraphs[0].start:doc.paragraphs[0].end] == "[0001] Keep   spacing."


def test_cp1252_smart_quotes_are_not_read_as_japanese_mojibake() -> None:
    text = "The \u201cprocessor\u201d is configured \u2014 as claimed \u2014 to run. " * 20
    doc = ingest_bytes(text.encode("cp1252"), "western.txt")
    assert doc.text == text
    assert doc.language == "en"


def test_undecodable_bytes_raise_encoding_error() -> None:
    data = bytes([0x81, 0x20, 0xFF, 0xFE, 0x85, 0x0A]) * 3 + b"\xa0\x30\xef"
    with pytest.raises((EncodingDetectionError, CorruptFileError)) as err:
        ingest_bytes(data, "bad.txt")
    assert err.value.filename == "bad.txt"


# --------------------------------------------------------------------------- hostile and empty inputs


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n  ", "\u3000\u3000\n".encode("utf-8"), b"\xef\xbb\xbf"])
def test_empty_or_blank_file(data: bytes) -> None:
    with pytest.raises(EmptyDocumentError) as err:
        ingest_bytes(data, "empty.txt")
    assert err.value.filename == "empty.txt"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes_are_rejected_with_a_typed_error(seed: int) -> None:
    data = random.Random(seed).randbytes(4096)
    with pytest.raises((UnsupportedFormatError, EncodingDetectionError, CorruptFileError)) as err:
        ingest_bytes(data, "random.txt")
    assert "Traceback" not in str(err.value)
    assert str(err.value).startswith("random.txt: ")


def test_control_characters_without_nul_are_binary() -> None:
    data = bytes(range(1, 32)) * 50
    with pytest.raises(CorruptFileError):
        ingest_bytes(data, "ctrl.txt")


def test_fifty_megabyte_text_is_refused_before_decoding() -> None:
    data = b"a" * (50 * 1024 * 1024 + 1)
    with pytest.raises(FileTooLargeError) as err:
        ingest_bytes(data, "huge.txt")
    assert "50 MB" in err.value.message


def test_too_many_characters_after_decoding() -> None:
    with pytest.raises(FileTooLargeError) as err:
        ingest_bytes(b"word " * 1000, "long.txt", limits=IngestLimits(max_chars=100))
    assert "100" in err.value.message


def test_ingest_path_checks_size_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * 2048)
    with pytest.raises(FileTooLargeError):
        ingest_path(big, limits=IngestLimits(max_file_bytes=1024))


@pytest.mark.parametrize(
    "filename",
    ['<script>alert(1)</script>.txt', '"><img src=x onerror=alert(1)>.txt', "../../etc/passwd.txt", "名前 with spaces.txt"],
)
def test_file_names_are_kept_as_plain_labels(filename: str) -> None:
    doc = ingest_bytes(b"A short English text about a processor.", filename)
    assert doc.name == filename


def test_xss_file_name_in_error_is_plain_too() -> None:
    name = "<script>alert(1)</script>.exe"
    with pytest.raises(UnsupportedFormatError) as err:
        ingest_bytes(b"MZ\x90\x00", name)
    assert err.value.filename == name


@pytest.mark.parametrize(
    ("data", "filename", "error"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "figure.txt", UnsupportedFormatError),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 50, "old.doc", UnsupportedFormatError),
        (b"plain words", "slides.pptx", UnsupportedFormatError),
        (b"not a pdf at all", "paper.pdf", CorruptFileError),
        (b"not a zip at all", "letter.docx", CorruptFileError),
    ],
)
def test_wrong_or_unsupported_formats(data: bytes, filename: str, error: type[IngestError]) -> None:
    with pytest.raises(error):
        ingest_bytes(data, filename)


def test_supported_extensions() -> None:
    assert set(SUPPORTED_EXTENSIONS) == {"txt", "md", "markdown", "html", "htm", "pdf", "docx", "xml"}


# --------------------------------------------------------------------------- Aozora Bunko


def test_aozora_markup_is_removed_from_own_sample() -> None:
    doc = ingest_path(AOZORA_SAMPLE)
    assert doc.source_format == "aozora" and doc.encoding == "cp932" and doc.language == "ja"
    for mark in ("《", "》", "［＃", "｜", "※", "底本", "テキスト中に現れる記号", "入力："):
        assert mark not in doc.text, mark
    assert "審査官は朝早く特許庁へ出かけた。" in doc.text
    assert "厲しい顔で請求項を読んだ。" in doc.text  # gaiji 第3水準1-14-84 resolved
    assert doc.text.startswith("試験の記\n")
    assert "\n　発明の要旨を認定する。\n" in doc.text  # annotation-only lines vanish


# --------------------------------------------------------------------------- HTML and Markdown


def test_html_drops_scripts_styles_and_unescapes_entities() -> None:
    html = (
        "<!doctype html><html><head><title>Claim &amp; Spec</title><style>p{color:red}</style>"
        "<script>alert(1)</script></head><body><h1>Summary</h1><p>A&nbsp;processor &lt;b&gt; and "
        "<b>memory</b>.</p><script type='text/javascript'>alert(1)</script><p>特許&#x8acb;求</p></body></html>"
    )
    doc = ingest_bytes(html.encode("utf-8"), "page.html")
    assert "alert" not in doc.text and "color" not in doc.text
    assert "A\u00a0processor <b> and memory." in doc.text
    assert "特許請求" in doc.text
    assert doc.title == "Claim & Spec"
    assert doc.source_format == "html"


def test_html_declared_shift_jis() -> None:
    html = '<html><head><meta charset="shift_jis"></head><body><p>進歩性の判断</p></body></html>'
    doc = ingest_bytes(html.encode("cp932"), "jp.htm")
    assert doc.text.strip() == "進歩性の判断"
    assert doc.encoding == "cp932"


def test_markdown_markup_is_stripped() -> None:
    md = (
        "# Title of the invention\n\nSome **bold** and *italic* and _under_ words, a [link](http://x.example) "
        "and `code`.\n\n```python\nprint('kept')\n```\n\n- item one\n> quoted text\n\n[ref]: http://x.example\n"
    )
    doc = ingest_bytes(md.encode(), "notes.md")
    assert doc.source_format == "md"
    for mark in ("#", "**", "](", "```", "`", "[ref]"):
        assert mark not in doc.text, mark
    for word in ("Title of the invention", "bold", "italic", "under", "link", "code", "print('kept')", "item one", "quoted text"):
        assert word in doc.text, word
    assert "snake_case_name" in ingest_bytes(b"use snake_case_name here", "a.markdown").text


# --------------------------------------------------------------------------- USPTO XML


def test_uspto_xml_title_abstract_claims_and_numbered_paragraphs() -> None:
    doc = ingest_path(USPTO_EXCERPT)
    assert doc.source_format == "uspto-xml" and doc.language == "en"
    assert doc.title == "Managing mid-dialog session initiation protocol (SIP) messages"
    assert doc.text.startswith("US08930553B2\nPublication date: 20150106\nTitle: Managing mid-dialog")
    labels = [p.label for p in doc.paragraphs]
    assert labels[:2] == ["Title", "Abstract"]
    assert [lab for lab in labels if lab.startswith("Claim")] == ["Claim 1", "Claim 2", "Claim 3"]
    numbered = [p for p in doc.paragraphs if p.label.startswith("[")]
    assert [p.label for p in numbered] == [f"[{i:04d}]" for i in range(1, 9)]
    first = numbered[0]
    assert doc.text[first.start:first.end].startswith("[0001] The present invention relates to computer networks")
    claim1 = next(p for p in doc.paragraphs if p.label == "Claim 1")
    assert doc.text[claim1.start:claim1.end].startswith("1. A system for processing mid-dialog SIP messages, the system comprising: an incoming")
    assert doc.text.index("CLAIMS") < doc.text.index("DESCRIPTION")


def test_xml_with_entity_declarations_is_refused() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE us-patent-grant [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><us-patent-grant><abstract><p>&b;</p></abstract></us-patent-grant>'
    )
    with pytest.raises(UnsafeFileError):
        ingest_bytes(bomb, "laughs.xml")


def test_broken_and_foreign_xml() -> None:
    with pytest.raises(CorruptFileError):
        ingest_bytes(b"<us-patent-grant><abstract><p>unclosed</abstract>", "broken.xml")
    with pytest.raises(UnsupportedFormatError):
        ingest_bytes(b"<?xml version='1.0'?><rss><item>news</item></rss>", "feed.xml")


# --------------------------------------------------------------------------- PDF


def _pdf_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_text_pdf(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF with one Helvetica line per string, top to bottom, one list per page."""
    n = len(pages)
    font_id, pages_id = 3 + 2 * n, 2
    objects: dict[int, bytes] = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
    objects[pages_id] = f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode()
    for i, lines in enumerate(pages):
        page_id, content_id = 3 + 2 * i, 4 + 2 * i
        ops = ["BT", "/F1 10 Tf", "14 TL", "50 750 Td"]
        for line in lines:
            ops.append(f"({_pdf_escape(line)}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects[content_id] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
        objects[page_id] = (
            f"<< /Type /Page /Parent {pages_id} 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> /Contents {content_id} 0 R >>"
        ).encode()
    objects[font_id] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for oid in sorted(objects):
        offsets[oid] = out.tell()
        out.write(b"%d 0 obj\n" % oid + objects[oid] + b"\nendobj\n")
    xref = out.tell()
    size = max(objects) + 1
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % size)
    for oid in range(1, size):
        out.write(b"%010d 00000 n \n" % offsets[oid])
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref))
    return out.getvalue()


SUBJECTS = ["sensor patch", "battery module", "antenna array"]


def _body(subject: str) -> list[str]:
    return [
        f"The claimed {subject} comprises a flexible sub-",
        "strate and a wireless transmitter configured to send",
        "physiological data to a remote station.",
        f"A second paragraph about the {subject} starts here and is",
        f"long enough to wrap onto a line about the {subject}.",
    ]


def _three_page_pdf() -> bytes:
    return make_text_pdf([["ACME Patent Review Report", *_body(s), f"- {i} -"] for i, s in enumerate(SUBJECTS, 1)])


def test_pdf_paragraphs_join_dehyphenate_and_drop_headers() -> None:
    doc = ingest_bytes(_three_page_pdf(), "report.pdf")
    assert doc.source_format == "pdf" and doc.language == "en" and doc.encoding is None
    assert "ACME Patent Review Report" not in doc.text
    assert "- 2 -" not in doc.text
    assert "a flexible substrate and a wireless transmitter configured to send physiological data" in doc.text
    texts = [doc.text[p.start:p.end] for p in doc.paragraphs]
    assert len(texts) == 6
    assert texts[1] == "A second paragraph about the sensor patch starts here and is long enough to wrap onto a line about the sensor patch."
    assert [p.page for p in doc.paragraphs] == [1, 1, 2, 2, 3, 3]
    assert any("header" in n for n in doc.notes)


def test_single_page_pdf_drops_a_page_number_line() -> None:
    doc = ingest_bytes(make_text_pdf([[*_body("valve"), "Page 7 of 9"]]), "one.pdf")
    assert "Page 7" not in doc.text and "valve" in doc.text
    assert any("page-number" in n for n in doc.notes)


def test_truncated_pdf_is_corrupt() -> None:
    data = _three_page_pdf()
    with pytest.raises(CorruptFileError):
        ingest_bytes(data[: len(data) // 2], "truncated.pdf")


def test_garbage_pdf_with_header_and_eof_is_corrupt() -> None:
    with pytest.raises(CorruptFileError):
        ingest_bytes(b"%PDF-1.7\n" + random.Random(3).randbytes(3000) + b"\n%%EOF\n", "garbage.pdf")


def _encrypted(data: bytes, user: str, owner: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user, owner_password=owner, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_encrypted_pdf_needs_a_password() -> None:
    data = _encrypted(_three_page_pdf(), "secret", "owner-secret")
    with pytest.raises(EncryptedFileError) as err:
        ingest_bytes(data, "locked.pdf")
    assert "password" in err.value.message


def test_pdf_with_only_an_owner_password_opens() -> None:
    data = _encrypted(_three_page_pdf(), "", "owner-secret")
    assert "wireless transmitter" in ingest_bytes(data, "permissions-only.pdf").text


def test_scanned_pdf_without_text_layer() -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(2):
        writer.add_blank_page(width=595, height=842)
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(NoTextLayerError) as err:
        ingest_bytes(out.getvalue(), "scan.pdf")
    assert "OCR" in err.value.message


def test_pdf_renamed_txt_is_still_read_as_pdf() -> None:
    doc = ingest_bytes(_three_page_pdf(), "report.txt")
    assert doc.source_format == "pdf"
    assert any("PDF" in n for n in doc.notes)


# --------------------------------------------------------------------------- DOCX


def _docx_bytes() -> bytes:
    import docx

    document = docx.Document()
    document.core_properties.title = "明細書"
    document.add_heading("発明の詳細な説明", level=1)
    document.add_paragraph("【０００１】本発明は、バルーンカテーテルに関する。")
    document.add_paragraph("")
    document.add_paragraph("【０００２】従来、カテーテルは広く用いられている。")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "符号"
    table.rows[0].cells[1].text = "名称"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_docx_paragraphs_tables_and_labels() -> None:
    doc = ingest_bytes(_docx_bytes(), "spec.docx")
    assert doc.source_format == "docx" and doc.language == "ja" and doc.title == "明細書"
    assert doc.text == (
        "発明の詳細な説明\n【０００１】本発明は、バルーンカテーテルに関する。\n"
        "【０００２】従来、カテーテルは広く用いられている。\n符号 | 名称\n"
    )
    labels = [p.label for p in doc.paragraphs]
    assert labels == [None, "【０００１】", "【０００２】", None]


def _with_extra_member(docx_data: bytes, name: str, payload: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(docx_data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename))
        dst.writestr(name, payload)
    return out.getvalue()


def test_zip_bomb_docx_is_refused_by_compression_ratio() -> None:
    data = _with_extra_member(_docx_bytes(), "word/media/bomb.bin", b"\x00" * (20 * 1024 * 1024))
    assert len(data) < 200_000
    with pytest.raises(UnsafeFileError) as err:
        ingest_bytes(data, "bomb.docx")
    assert "zip bomb" in err.value.message


def test_docx_over_the_uncompressed_limit_is_refused() -> None:
    data = _with_extra_member(_docx_bytes(), "word/media/big.bin", random.Random(5).randbytes(300_000))
    with pytest.raises(UnsafeFileError):
        ingest_bytes(data, "big.docx", limits=IngestLimits(max_docx_uncompressed=200_000))


def test_zip_that_is_not_a_word_document() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(UnsupportedFormatError):
        ingest_bytes(out.getvalue(), "archive.docx")


# --------------------------------------------------------------------------- language and NFKC


def test_language_override_and_normalize_note() -> None:
    doc = ingest_bytes("ＡＢＣ　テスト".encode(), "x.txt", language="en", normalize=True)
    assert doc.language == "en"
    assert doc.text == "ＡＢＣ　テスト"
    assert any("NFKC" in n for n in doc.notes)


@pytest.mark.parametrize(
    "text",
    ["ＡＢＣ１２３ｶﾞｷﾞ①㍻", "cafe\u0301 ﬁne ㈱", "か\u3099き plain ascii", "", JA_EXCERPT.read_text(encoding="utf-8")],
)
def test_nfkc_with_map_matches_unicodedata_and_maps_back(text: str) -> None:
    norm, index = nfkc_with_map(text)
    assert norm == unicodedata.normalize("NFKC", text)
    assert len(index) == len(norm)
    assert index == sorted(index)
    assert all(0 <= i < len(text) for i in index)


def test_nfkc_match_maps_to_shown_offsets() -> None:
    shown = "前記ｾﾝｻﾞ部２０ｂは"
    norm, index = nfkc_with_map(shown)
    start = norm.index("センザ部20b")
    end = start + len("センザ部20b")
    assert shown[index[start]:index[end - 1] + 1] == "ｾﾝｻﾞ部２０ｂ"


def test_html_without_closing_head_keeps_the_body() -> None:
    doc = ingest_bytes(b"<html><head><title>T</title><body><p>Hello <i>world</i></p></body></html>", "nohead.html")
    assert doc.text.strip() == "Hello world"


def test_utf16_without_bom_is_recognised() -> None:
    text = "A processor and a memory. " * 10
    assert ingest_bytes(text.encode("utf-16-le"), "u16.txt").text == text


def test_content_wins_over_a_wrong_extension() -> None:
    doc = ingest_bytes(USPTO_EXCERPT.read_bytes(), "patent.txt")
    assert doc.source_format == "uspto-xml"
