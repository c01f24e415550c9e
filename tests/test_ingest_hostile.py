"""Hostile uploads end in a correct document or a typed IngestError, in bounded time and memory.

Every input is generated here (the big ones are never committed). Each hostile case is read through
`ingest_isolated`, the path uploads take: its worker runs under a 1.5 GB address-space limit
(RLIMIT_AS), so a case that needed more memory would end in IngestMemoryError instead of the result
asserted, which bounds peak memory by 1.5 GB; the time each case takes is asserted too. Cases whose
result matters are also read in-process with `ingest_bytes` (the CLI's path), and
`test_peak_memory_of_the_heaviest_cases_in_a_subprocess` measures the peak RSS (VmHWM) of a plain subprocess.
"""
from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from attn_core.errors import (
    CorruptFileError,
    EmptyDocumentError,
    FileTooLargeError,
    IngestError,
    IngestMemoryError,
    IngestTimeoutError,
    UnsafeFileError,
    UnsupportedFormatError,
)
from attn_core.ingest import IngestLimits, ingest_bytes
from attn_core.ingest_worker import IngestWorkerPool, ingest_isolated

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
MEMORY_MB = 1536  # the bound the issue asks for: 1.5 GB

# --------------------------------------------------------------------------- generators

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="word/document.xml"/></Relationships>'
)


def utf16_entity_xml(refs: int = 300_000, entity_chars: int = 500) -> bytes:
    """UTF-16 USPTO-looking XML whose entity expands to refs × entity_chars characters (150 M by default).

    A comment made of the characters whose UTF-16 bytes spell `<us-patent-grant` got it past the old
    byte checks, and `<!ENTITY` in UTF-16 is not the bytes `<!ENTITY`.
    """
    marker = b"<us-patent-grant".decode("utf-16-le")
    xml = (
        f'<?xml version="1.0" encoding="UTF-16"?><!--{marker}-->'
        f'<!DOCTYPE us-patent-grant [<!ENTITY a "{"x" * entity_chars}">]>'
        f'<us-patent-grant><abstract><p>{"&a;" * refs}</p></abstract></us-patent-grant>'
    )
    return xml.encode("utf-16")


def billion_laughs(encoding: str = "utf-8") -> bytes:
    decls = '<!ENTITY l0 "ha">' + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    declared = "UTF-16" if encoding.startswith("utf-16") else encoding.upper()
    xml = (f'<?xml version="1.0" encoding="{declared}"?><!DOCTYPE us-patent-grant [{decls}]>'
           "<us-patent-grant><abstract><p>&l9;</p></abstract></us-patent-grant>")
    return xml.encode(encoding)


def deep_uspto_xml(depth: int) -> bytes:
    """A claim whose claim-text nests `depth` levels deep (each level adds 'a part')."""
    return (
        "<us-patent-grant><us-bibliographic-data-grant><invention-title>Deep claim</invention-title>"
        "</us-bibliographic-data-grant><abstract><p>A deeply nested claim.</p></abstract>"
        '<claims><claim num="00001"><claim-text>1. A device comprising:'
        + "<claim-text>a part" * depth + "</claim-text>" * depth
        + "</claim-text></claim></claims>"
        '<description><p num="0001">Only a paragraph.</p></description></us-patent-grant>'
    ).encode()


def _docx_zip(document_chunks, *, compresslevel: int = 6, padding: int = 0,
              compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A minimal DOCX whose word/document.xml (first member) is streamed from `document_chunks`.

    `padding` random bytes are stored right after it, so a compressed size that is declared too large
    still points inside the archive.
    """
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression, compresslevel=compresslevel) as zf:
        with zf.open("word/document.xml", "w", force_zip64=True) as fh:
            for chunk in document_chunks:
                fh.write(chunk)
        if padding:
            zf.writestr(zipfile.ZipInfo("word/media/padding.bin"), random.Random(3).randbytes(padding))
        zf.writestr("[Content_Types].xml", _CONTENT_TYPES)
        zf.writestr("_rels/.rels", _RELS)
    return out.getvalue()


def _document_stream(paragraph_block: bytes, total_bytes: int):
    yield f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="{W_NS}"><w:body>'.encode()
    written = 0
    while written < total_bytes:
        yield paragraph_block
        written += len(paragraph_block)
    yield b"</w:body></w:document>"


def docx_bomb(xml_mb: int = 199) -> bytes:
    """About 40:1: a 5 MB DOCX whose word/document.xml is `xml_mb` MB of text, under the size and ratio checks."""
    rng = random.Random(7)
    paras = []
    for _ in range(4000):
        token = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5))
        paras.append(f"<w:p><w:pPr><w:jc w:val=\"both\"/></w:pPr><w:r><w:rPr><w:sz w:val=\"21\"/></w:rPr>"
                     f"<w:t>The claimed sensor {token} comprises a flexible substrate and a transmitter "
                     f"configured to send data to a remote station.</w:t></w:r></w:p>")
    block = "".join(paras).encode()
    return _docx_zip(_document_stream(block, xml_mb * 1024 * 1024))


def _patch_central_directory(data: bytes, member: bytes, *, compress_size: int, file_size: int) -> bytes:
    """Rewrite the sizes the central directory declares for `member`: a zip that lies."""
    buf = bytearray(data)
    pos = buf.find(b"PK\x01\x02")
    while pos != -1:
        name_len = int.from_bytes(buf[pos + 28:pos + 30], "little")
        if bytes(buf[pos + 46:pos + 46 + name_len]) == member:
            buf[pos + 20:pos + 24] = compress_size.to_bytes(4, "little")
            buf[pos + 24:pos + 28] = file_size.to_bytes(4, "little")
            extra = pos + 46 + name_len
            if int.from_bytes(buf[pos + 30:pos + 32], "little"):
                buf[extra:extra + 2] = b"\xff\xfe"  # hide the ZIP64 sizes so the 32-bit lie is read
        pos = buf.find(b"PK\x01\x02", pos + 4)
    return bytes(buf)


def docx_lying_about_sizes(xml_mb: int = 150, *, declared_size: int | None = None) -> bytes:
    """word/document.xml really inflates to `xml_mb` MB of tiny paragraphs; the central directory declares
    a compressed size that makes it look 100:1 (or, with `declared_size`, a much smaller member)."""
    block = b"<w:p><w:r><w:t>a</w:t></w:r></w:p>" * 30_000
    data = _docx_zip(_document_stream(block, xml_mb * 1024 * 1024), compresslevel=9,
                     padding=xml_mb * 1024 * 1024 // 100)
    real = zipfile.ZipFile(io.BytesIO(data)).getinfo("word/document.xml").file_size
    size = declared_size if declared_size is not None else real
    return _patch_central_directory(data, b"word/document.xml", compress_size=max(size // 100, 1), file_size=size)


def docx_bzip2(xml_mb: int = 2) -> bytes:
    """document.xml compressed with bzip2, which zipfile inflates without bounding a read; sizes lie 100:1."""
    block = b"<w:p><w:r><w:t>bz</w:t></w:r></w:p>" * 30_000
    data = _docx_zip(_document_stream(block, xml_mb * 1024 * 1024), compression=zipfile.ZIP_BZIP2,
                     padding=xml_mb * 1024 * 1024 // 100)
    real = zipfile.ZipFile(io.BytesIO(data)).getinfo("word/document.xml").file_size
    return _patch_central_directory(data, b"word/document.xml", compress_size=real // 100, file_size=real)


def markdown_bold_runs(n: int = 20_000) -> bytes:
    return ("**a " * n).encode()


def markdown_hostile(total: int = 1_990_000) -> bytes:
    """2 MB (just under the 2,000,000-character limit) of constructs that made backtracking regexes quadratic."""
    pieces = ["**a ", "__a ", "*a ", "_a ", "~~a ", "`a ", "[a ", "![a ", "[a](", "[a][", "<http:a", "<a "]
    per = total // (len(pieces) + 1)
    lines = [(p * (per // len(p))) for p in pieces]
    lines.append("# a" + " " * (per - 4) + "b")
    return "\n".join(lines).encode()


def aozora_nested_notes(n: int = 40_000) -> bytes:
    return ("［＃" * n + "注" + "］" * n + "\n本文です。\n").encode("utf-8")


def sjis_text(total_mb: int = 48) -> bytes:
    line = "【０００１】本発明は、バルーンカテーテルに関する。従来の技術では問題があった。\n"
    unit = line.encode("cp932")
    return unit * (total_mb * 1024 * 1024 // len(unit))


def japanese_text(lines: int = 40) -> str:
    return "".join(
        f"【{i:04d}】本発明は、バルーンカテーテルに関する。従来のカテーテルでは血管の損傷が問題となっていた。\n"
        .translate(str.maketrans("0123456789", "０１２３４５６７８９"))
        for i in range(1, lines + 1)
    )


def _docx_bytes() -> bytes:
    import docx

    document = docx.Document()
    document.core_properties.title = "明細書"
    document.add_paragraph("【０００１】本発明は、バルーンカテーテルに関する。")
    table = document.add_table(rows=2, cols=2)
    table.rows[0].cells[0].text = "符号"
    table.rows[0].cells[1].text = "名称"
    table.cell(1, 0).merge(table.cell(1, 1)).text = "結合"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


# Cases measured by test_peak_memory_of_the_heaviest_cases_in_a_subprocess (name -> (input, file name)).
HEAVY = {
    "utf16_entity_xml": lambda: (utf16_entity_xml(), "bomb.xml"),
    "docx_bomb": lambda: (docx_bomb(), "bomb.docx"),
    "sjis_48mb": lambda: (sjis_text(), "big.txt"),
}


def isolated(data: bytes, name: str, *, seconds: float, **kw) -> object:
    """ingest_isolated under the 1.5 GB limit, asserting it answered within `seconds`; returns doc or error."""
    started = time.perf_counter()
    try:
        result: object = ingest_isolated(data, name, memory_mb=MEMORY_MB, timeout_s=max(30.0, seconds * 3), **kw)
    except IngestError as exc:
        result = exc
    elapsed = time.perf_counter() - started
    assert elapsed < seconds, f"{name} took {elapsed:.2f} s"
    assert not isinstance(result, (IngestMemoryError, IngestTimeoutError)), result
    return result


def timed(fn, seconds: float):  # noqa: ANN001, ANN201
    started = time.perf_counter()
    try:
        result = fn()
    except IngestError as exc:
        result = exc
    elapsed = time.perf_counter() - started
    assert elapsed < seconds, f"took {elapsed:.2f} s"
    return result


# --------------------------------------------------------------------------- XML


def test_utf16_xml_with_an_entity_declaration_is_refused_after_decoding() -> None:
    small = utf16_entity_xml(refs=10, entity_chars=10)
    assert b"<!ENTITY" not in small and b"<us-patent-grant" in small[:4096]  # what fooled the byte checks
    assert isinstance(timed(lambda: ingest_bytes(small, "small.xml"), 1), UnsafeFileError)
    # the real thing: 1.8 MB that expanded to 150 M characters (813 MB, 2.8 s) before
    error = isolated(utf16_entity_xml(), "bomb.xml", seconds=5)
    assert isinstance(error, UnsafeFileError) and "entities" in error.message and error.filename == "bomb.xml"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-be"])
def test_billion_laughs_is_refused_in_any_encoding(encoding: str) -> None:
    assert isinstance(isolated(billion_laughs(encoding), "laughs.xml", seconds=5), UnsafeFileError)


def test_xml_in_an_encoding_expat_cannot_read_is_a_typed_error() -> None:
    xml = '<?xml version="1.0" encoding="Shift_JIS"?><us-patent-grant><abstract><p>発明</p></abstract></us-patent-grant>'
    with pytest.raises(UnsupportedFormatError):
        ingest_bytes(xml.encode("cp932"), "sjis.xml")


def test_parameter_entities_and_external_entities_are_refused_too() -> None:
    for decl in ('<!ENTITY % p "x">', '<!ENTITY e SYSTEM "file:///etc/passwd">'):
        xml = f'<?xml version="1.0"?><!DOCTYPE us-patent-grant [{decl}]><us-patent-grant/>'.encode()
        with pytest.raises(UnsafeFileError):
            ingest_bytes(xml, "e.xml")


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_deeply_nested_uspto_claim_is_read_without_recursion(depth: int) -> None:
    data = deep_uspto_xml(depth)
    doc = timed(lambda: ingest_bytes(data, "deep.xml"), 5)
    assert not isinstance(doc, Exception), doc
    claim = next(p for p in doc.paragraphs if p.label == "Claim 1")
    assert doc.text[claim.start:claim.end] == "1. A device comprising: " + " ".join(["a part"] * depth)
    assert doc.title == "Deep claim" and "[0001] Only a paragraph." in doc.text
    assert isolated(data, "deep.xml", seconds=10) == doc


def test_xml_with_millions_of_elements_is_refused_by_the_element_budget() -> None:
    data = b"<us-patent-grant><abstract><p>" + b"<b/>" * 200_001 + b"</p></abstract></us-patent-grant>"
    error = timed(lambda: ingest_bytes(data, "many.xml", limits=IngestLimits(max_xml_elements=200_000)), 5)
    assert isinstance(error, FileTooLargeError) and "elements" in error.message


# --------------------------------------------------------------------------- DOCX


def test_docx_bomb_40_to_1_stops_at_the_character_budget() -> None:
    data = docx_bomb()
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo("word/document.xml")
    assert len(data) < 6 * 1024 * 1024 and info.file_size > 190 * 1024 * 1024
    assert 30 < info.file_size / info.compress_size < 200  # under the ratio check; 1.9 GB and 5.6 s before
    error = isolated(data, "bomb.docx", seconds=5)
    assert isinstance(error, FileTooLargeError) and "2,000,000" in error.message


def test_docx_lying_about_its_sizes_stops_at_the_budget() -> None:
    data = docx_lying_about_sizes()
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo("word/document.xml")
    assert info.file_size / info.compress_size < 200  # the lie passes the ratio check; 2.65 GB and 78 s before
    error = isolated(data, "lying.docx", seconds=15)
    assert isinstance(error, FileTooLargeError), error
    # a member declared smaller than it is: zipfile stops at the declared size and the CRC gives it away
    small = isolated(docx_lying_about_sizes(20, declared_size=1000), "small.docx", seconds=5)
    assert isinstance(small, CorruptFileError)


def test_docx_with_bzip2_members_is_refused_before_inflating() -> None:
    error = isolated(docx_bzip2(), "bz.docx", seconds=5)
    assert isinstance(error, UnsafeFileError) and "compression" in error.message


def test_docx_streamed_reader_keeps_python_docx_text_rules() -> None:
    doc = ingest_bytes(_docx_bytes(), "spec.docx")
    # a cell merged across two columns is repeated, as python-docx reported it
    assert doc.text == "【０００１】本発明は、バルーンカテーテルに関する。\n符号 | 名称\n結合 | 結合\n"
    assert doc.title == "明細書" and doc.paragraphs[0].label == "【０００１】"


def test_docx_with_millions_of_empty_runs_hits_the_element_budget() -> None:
    block = b"<w:p>" + b"<w:r/>" * 10_000 + b"</w:p>"
    data = _docx_zip(_document_stream(block, 3 * 1024 * 1024))
    error = timed(lambda: ingest_bytes(data, "runs.docx", limits=IngestLimits(max_xml_elements=100_000)), 5)
    assert isinstance(error, FileTooLargeError) and "elements" in error.message


def test_zip_with_a_huge_central_directory_is_refused_before_listing() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for i in range(10_001):
            zf.writestr(f"p/{i}", b"")
    with pytest.raises(UnsafeFileError):
        ingest_bytes(out.getvalue(), "many.docx")


# --------------------------------------------------------------------------- Markdown and Aozora


def test_markdown_with_20000_bold_openers_is_linear() -> None:
    data = markdown_bold_runs()
    doc = timed(lambda: ingest_bytes(data, "bold.md"), 1.0)  # 14.5 s before
    assert doc.text == data.decode() + "\n"  # nothing there closes: the text is kept as written
    assert isolated(data, "bold.md", seconds=2) == doc


def test_two_megabytes_of_hostile_markdown_is_linear() -> None:
    data = markdown_hostile()
    doc = timed(lambda: ingest_bytes(data, "hostile.md"), 3.0)  # more than 120 s (killed) before
    assert not isinstance(doc, Exception), doc
    assert doc.source_format == "md" and doc.chars > 1_500_000
    assert isolated(data, "hostile.md", seconds=5) == doc


def test_markdown_results_are_unchanged() -> None:
    md = ("# Title #\n\nSome **bold**, __strong__, *it*, _it_, ~~gone~~, `code`, ![alt](i.png), "
          "[link](http://x), [ref][r], <https://x.example/a>, <span class='x'>html</span>.\n"
          "| a | b |\n|---|:---:|\n[r]: http://x.example\n- [x] done\n> quoted\n")
    assert ingest_bytes(md.encode(), "m.md").text == (
        "Title\n\nSome bold, strong, it, it, gone, code, alt, link, ref, https://x.example/a, html.\n"
        "| a | b |\ndone\nquoted\n"
    )


def test_aozora_nested_notes_are_linear() -> None:
    data = aozora_nested_notes()
    doc = timed(lambda: ingest_bytes(data, "notes.txt"), 1.0)  # 13.4 s before
    assert doc.source_format == "aozora" and doc.text.strip() == "本文です。"
    assert isolated(data, "notes.txt", seconds=2) == doc
    nested = "前［＃「※［＃「てへん＋劣」、第3水準1-84-77］」に傍点］後\n".encode()
    assert ingest_bytes(nested, "n.txt").text == "前後\n"


# --------------------------------------------------------------------------- plain text


def test_48_mb_shift_jis_text_is_refused_before_decoding() -> None:
    data = sjis_text()
    assert 48 * 1024 * 1024 - 200 < len(data) <= 48 * 1024 * 1024
    error = timed(lambda: ingest_bytes(data, "big.txt"), 1.0)  # 2.46 GB and 13.8 s before
    assert isinstance(error, FileTooLargeError) and "2,000,000" in error.message
    assert isinstance(isolated(data, "big.txt", seconds=5), FileTooLargeError)


def test_text_that_fits_the_character_limit_is_still_decoded() -> None:
    limits = IngestLimits(max_chars=1000)
    text = "本発明は、" * 200  # 1,000 characters, 3,000 bytes in UTF-8
    assert ingest_bytes(text.encode(), "fits.txt", limits=limits).text == text
    with pytest.raises(FileTooLargeError):
        ingest_bytes((text + "。").encode(), "over.txt", limits=limits)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_japanese_without_bom_is_accepted(encoding: str) -> None:
    text = japanese_text()
    data = text.encode(encoding)
    assert data.count(0) < 0.1 * len(data)  # too few NUL bytes for the ASCII heuristic
    doc = ingest_bytes(data, "ja.txt")
    assert doc.text == text and doc.encoding == encoding and doc.language == "ja"
    assert doc.paragraphs[0].label == "【０００１】"
    assert isolated(data, "ja.txt", seconds=5) == doc


def test_utf16_japanese_without_bom_and_without_any_ascii() -> None:
    text = "本発明は、バルーンカテーテルに関する。" * 20  # no newline: not a single NUL byte
    data = text.encode("utf-16-le")
    assert 0 not in data
    assert ingest_bytes(data, "ja.txt").text == text


def test_legacy_japanese_encodings_are_not_mistaken_for_utf16() -> None:
    text = japanese_text(3)
    for encoding in ("cp932", "euc_jp"):
        doc = ingest_bytes(text.encode(encoding), "ja.txt")
        assert doc.text == text and doc.encoding == encoding


# --------------------------------------------------------------------------- ingest_isolated


def test_isolated_returns_the_same_document_as_ingest_bytes() -> None:
    samples = [
        (b"A short English text about a processor.\r\n[0001] Second line.", "a.txt"),
        (japanese_text(5).encode("cp932"), "ja.txt"),
        ((TESTS / "data" / "uspto_US08930553_excerpt.xml").read_bytes(), "patent.xml"),
        (_docx_bytes(), "spec.docx"),
        (b"# Title\n\nSome **bold** text.", "notes.md"),
    ]
    for data, name in samples:
        assert ingest_isolated(data, name) == ingest_bytes(data, name), name
    data = "ＡＢＣ　テスト".encode()
    assert ingest_isolated(data, "n.txt", normalize=True, language="en") == ingest_bytes(
        data, "n.txt", normalize=True, language="en")


@pytest.mark.parametrize(
    ("data", "name", "error"),
    [
        (b"", "empty.txt", EmptyDocumentError),
        (b"MZ\x90\x00", "prog.exe", UnsupportedFormatError),
        (billion_laughs(), "laughs.xml", UnsafeFileError),
        (b"word " * 1000, "long.txt", FileTooLargeError),
    ],
)
def test_isolated_maps_errors_to_the_same_type(data: bytes, name: str, error: type[IngestError]) -> None:
    limits = IngestLimits(max_chars=100)
    with pytest.raises(error) as caught:
        ingest_isolated(data, name, limits=limits)
    with pytest.raises(error) as direct:
        ingest_bytes(data, name, limits=limits)
    assert type(caught.value) is type(direct.value)
    assert caught.value.message == direct.value.message and caught.value.filename == name


def test_isolated_stops_a_file_that_needs_too_much_memory() -> None:
    # 600,000 XML elements are a tree of about 60 MB: more than a 64 MB worker (about 60 MB is Python) has
    data = b"<us-patent-grant><abstract><p>" + b"<b>x</b>" * 600_000 + b"</p></abstract></us-patent-grant>"
    with pytest.raises(IngestMemoryError) as caught:
        ingest_isolated(data, "big.xml", memory_mb=64)
    assert "memory" in caught.value.message and caught.value.filename == "big.xml"
    assert ingest_isolated(b"still fine", "next.txt").text == "still fine"  # a fresh worker took over


def slow_html() -> bytes:
    """Legitimate but slow to read: HTMLParser spends about 2 µs on each of 1.9 M `<` (linear, 2-4 s)."""
    return b"<html><body>" + b"<" * 1_900_000 + b"</body></html>"


def _in_thread(fn) -> tuple[threading.Thread, list]:  # noqa: ANN001
    """Run fn in a thread; the list receives its result or the IngestError it raised."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(fn())
        except IngestError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_isolated_stops_a_file_that_takes_too_long_and_recovers() -> None:
    started = time.perf_counter()
    with pytest.raises(IngestTimeoutError) as caught:
        ingest_isolated(slow_html(), "slow.html", timeout_s=0.3)
    assert time.perf_counter() - started < 3
    assert "longer than 0.3 s" in caught.value.message and caught.value.filename == "slow.html"
    assert ingest_isolated(b"still fine", "next.txt").text == "still fine"


def test_a_hostile_upload_does_not_delay_another_one() -> None:
    pool = IngestWorkerPool(max_workers=2)
    try:
        pool.ingest(b"warm", "warm.txt")
        slow, outcome = _in_thread(lambda: pool.ingest(slow_html(), "slow.html", timeout_s=1.0))
        time.sleep(0.1)
        started = time.perf_counter()
        assert pool.ingest(b"a quick upload", "quick.txt").text == "a quick upload"
        assert time.perf_counter() - started < 1.0
        slow.join()
        assert isinstance(outcome[0], IngestTimeoutError)
    finally:
        pool.close()


def test_a_full_pool_says_it_is_busy() -> None:
    pool = IngestWorkerPool(max_workers=1)
    try:
        slow, outcome = _in_thread(lambda: pool.ingest(slow_html(), "slow.html", timeout_s=1.0))
        time.sleep(0.3)
        with pytest.raises(IngestTimeoutError) as caught:
            pool.ingest(b"waiting", "wait.txt", timeout_s=0.05)
        assert "busy" in caught.value.message
        slow.join()
        assert isinstance(outcome[0], IngestTimeoutError)
        assert pool.ingest(b"free again", "free.txt").text == "free again"
    finally:
        pool.close()


# --------------------------------------------------------------------------- memory measured in a subprocess


def test_peak_memory_of_the_heaviest_cases_in_a_subprocess() -> None:
    """The heaviest cases read in-process by a plain subprocess: its peak RSS, VmHWM (not ru_maxrss, which
    Linux carries over from the forking parent: a pytest process holding models would count), which includes
    generating the inputs and importing the engine with torch) must stay under 1.5 GB."""
    code = (
        "import json, resource, sys, time\n"
        f"sys.path[:0] = [{str(REPO)!r}, {str(TESTS)!r}]\n"
        "import test_ingest_hostile as cases\n"
        "from attn_core.ingest import ingest_bytes\n"
        "out = {}\n"
        "for key, make in cases.HEAVY.items():\n"
        "    data, name = make()\n"
        "    t = time.perf_counter()\n"
        "    try:\n"
        "        ingest_bytes(data, name); out[key] = 'ok'\n"
        "    except Exception as exc:\n"
        "        out[key] = type(exc).__name__\n"
        "    out[key + '_s'] = time.perf_counter() - t\n"
        "hwm = next(ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:'))\n"
        "out['peak_mb'] = int(hwm.split()[1]) / 1024\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["utf16_entity_xml"] == "UnsafeFileError"
    assert out["docx_bomb"] == out["sjis_48mb"] == "FileTooLargeError"
    assert out["peak_mb"] < MEMORY_MB, out
    assert all(out[k + "_s"] < 15 for k in HEAVY), out
