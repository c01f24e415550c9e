"""Ingestion: uploaded bytes + file name -> `Document`, or a typed `IngestError` a reviewer can act on.

Everything here is defensive: uploads are untrusted. Size limits are enforced before any parsing,
text is decoded only by strict codecs (never silent mojibake), archives and XML are checked for
bombs before they are opened, and the file name is kept as an opaque label, never used as a path.

Plain text is kept exactly as decoded (only a BOM is stripped and CRLF/CR become LF) because
offsets into `Document.text` drive the highlighting. Formats with markup (HTML, Markdown, PDF,
DOCX, USPTO XML, Aozora Bunko) are turned into plain text first; `Document.notes` says what was done.
"""
from __future__ import annotations

import codecs
import io
import os
import re
import unicodedata
import zipfile
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from xml.etree import ElementTree as ET

from .document import Document, Paragraph, sha256_hex
from .errors import (
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
from .language import detect_language

SUPPORTED_EXTENSIONS: tuple[str, ...] = ("txt", "md", "markdown", "html", "htm", "pdf", "docx", "xml")

_MB = 1024 * 1024


@dataclass(frozen=True)
class IngestLimits:
    """Upper bounds checked before heavy work, so a hostile upload cannot exhaust memory or CPU."""

    max_file_bytes: int = 50 * _MB
    max_chars: int = 2_000_000
    max_docx_uncompressed: int = 200 * _MB


# --------------------------------------------------------------------------- entry points


def ingest_path(path: str | os.PathLike, **kw) -> Document:
    """Read a file from disk (size checked before reading) and ingest it under its base name."""
    name = os.path.basename(os.fspath(path))
    limits: IngestLimits = kw.get("limits") or IngestLimits()
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise IngestError(f"the file could not be read ({exc.strerror or exc})", filename=name) from None
    _check_size(size, name, limits)
    with open(path, "rb") as fh:
        data = fh.read(limits.max_file_bytes + 1)
    return ingest_bytes(data, name, **kw)


def ingest_bytes(
    data: bytes,
    filename: str,
    *,
    limits: IngestLimits = IngestLimits(),
    normalize: bool = False,
    language: str | None = None,
) -> Document:
    """Turn an upload into a `Document`; every failure is an `IngestError` naming the file."""
    name = str(filename)
    _check_size(len(data), name, limits)
    if not data:
        raise EmptyDocumentError("the file is empty", filename=name)
    fmt, notes = _choose_format(data, name)
    extracted = _EXTRACTORS[fmt](data, name, limits)
    text = extracted.text
    if not text.strip():
        raise EmptyDocumentError("the file contains no text (only whitespace or markup)", filename=name)
    _check_chars(len(text), name, limits)
    all_notes = list(notes) + list(extracted.notes)
    lang_text = text
    if normalize:
        lang_text = nfkc_with_map(text)[0]
        all_notes.append("Matching will use NFKC-normalised text (full-width letters and digits folded); the text is shown as written")
    return Document(
        name=name,
        text=text,
        language=language or detect_language(lang_text),
        sha256=sha256_hex(data),
        encoding=extracted.encoding,
        source_format=extracted.source_format,
        paragraphs=tuple(extracted.paragraphs),
        title=extracted.title,
        notes=tuple(all_notes),
    )


@dataclass
class _Extracted:
    text: str
    source_format: str
    encoding: str | None = None
    paragraphs: tuple[Paragraph, ...] = ()
    title: str | None = None
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------- limits and format choice


def _check_size(size: int, name: str, limits: IngestLimits) -> None:
    if size > limits.max_file_bytes:
        raise FileTooLargeError(
            f"the file is {size / _MB:.1f} MB; the limit is {limits.max_file_bytes / _MB:g} MB",
            filename=name,
        )


def _check_chars(n: int, name: str, limits: IngestLimits) -> None:
    if n > limits.max_chars:
        raise FileTooLargeError(
            f"the text has {n:,} characters; the limit is {limits.max_chars:,} characters", filename=name
        )


def _extension(name: str) -> str:
    """Lower-case extension of the last path component; the name itself is never opened."""
    base = re.split(r"[\\/]", name)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base.strip(".") else ""


_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_BINARY_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"II*\x00": "a TIFF image",
    b"MM\x00*": "a TIFF image",
    b"\x7fELF": "a program",
    b"MZ": "a Windows program",
    b"\x1f\x8b": "a gzip archive",
    b"Rar!": "a RAR archive",
    b"7z\xbc\xaf": "a 7-Zip archive",
}


def _choose_format(data: bytes, name: str) -> tuple[str, list[str]]:
    """Pick an extractor from the content first (a PDF renamed .txt is still a PDF), then the extension."""
    ext = _extension(name)
    supported = ", ".join("." + e for e in SUPPORTED_EXTENSIONS)
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"%PDF-") or (ext == "pdf" and b"%PDF-" in data[:1024]):
        return "pdf", ([] if ext == "pdf" else [f"The file is a PDF although its name ends in .{ext or '(none)'}"])
    if data.startswith(b"PK\x03\x04"):
        if ext == "docx" or _zip_has(data, "word/document.xml"):
            return "docx", ([] if ext == "docx" else ["The file is a Word .docx document"])
        raise UnsupportedFormatError(f"this is a ZIP archive, not a Word .docx document; supported: {supported}", filename=name)
    if data.startswith(_OLE_MAGIC):
        if ext == "docx":
            raise EncryptedFileError(
                "this Word file is password-protected (or is an old .doc file): remove the password or save it as .docx",
                filename=name,
            )
        raise UnsupportedFormatError(
            f"this is an old Microsoft Office file (.doc/.xls/.ppt): save it as .docx or PDF; supported: {supported}",
            filename=name,
        )
    for magic, what in _BINARY_MAGIC.items():
        if data.startswith(magic):
            raise UnsupportedFormatError(f"this file is {what}, not a document; supported: {supported}", filename=name)
    if ext == "pdf":
        raise CorruptFileError("this is not a valid PDF (the %PDF header is missing)", filename=name)
    if ext == "docx":
        raise CorruptFileError("this is not a valid .docx file (it is not a ZIP package)", filename=name)
    if ext in ("html", "htm"):
        return "html", []
    if ext in ("md", "markdown"):
        return "md", []
    if ext == "xml":
        return "xml", []
    if ext in ("txt", ""):
        if b"<us-patent-grant" in head or b"<us-patent-application" in head:
            return "xml", ["The file is USPTO patent XML"]
        if re.match(rb"\s*(<!doctype html|<html)", head, re.I):
            return "html", ["The file is an HTML page"]
        return "txt", []
    raise UnsupportedFormatError(f".{ext} files are not supported; supported: {supported}", filename=name)


def _zip_has(data: bytes, member: str) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return member in zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


# --------------------------------------------------------------------------- text decoding

_ENCODING_LABELS = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8 (with BOM)",
    "utf-16": "UTF-16",
    "utf-16-le": "UTF-16 LE (no BOM)",
    "utf-16-be": "UTF-16 BE (no BOM)",
    "utf-32": "UTF-32",
    "cp932": "Shift_JIS (cp932)",
    "shift_jis_2004": "Shift_JIS (JIS X 0213)",
    "euc_jp": "EUC-JP",
    "euc_jis_2004": "EUC-JP (JIS X 0213)",
    "iso2022_jp": "ISO-2022-JP (JIS)",
    "iso2022_jp_2": "ISO-2022-JP-2",
    "iso2022_jp_ext": "ISO-2022-JP (extended)",
    "iso2022_jp_2004": "ISO-2022-JP-2004",
}
_JAPANESE_CANDIDATES = ("cp932", "euc_jp", "shift_jis_2004", "euc_jis_2004")
# Western codecs charset-normalizer may pick for non-Japanese text (English with accents or smart quotes).
# Chinese/Korean/UTF-16 guesses are refused: on Japanese/English uploads they only ever mean mojibake.
_FALLBACK_ALLOWED = {"cp1252", "latin_1", "iso8859_15", "cp1250", "iso8859_2", "mac_roman"}
_DECLARED_ALLOWED = {
    "utf_8": "utf-8", "shift_jis": "cp932", "cp932": "cp932", "euc_jp": "euc_jp", "iso2022_jp": "iso2022_jp",
    "cp1252": "cp1252", "latin_1": "cp1252", "iso8859_1": "cp1252", "ascii": "utf-8",
    "shift_jis_2004": "shift_jis_2004", "euc_jis_2004": "euc_jis_2004",
}


def _strict(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding, errors="strict")
    except (UnicodeDecodeError, LookupError):
        return None


def _kana_ratio(text: str) -> float:
    """Share of non-ASCII characters that are kana or Japanese punctuation: near 0 for mojibake."""
    non_ascii = [c for c in text if ord(c) > 0x7F]
    if not non_ascii:
        return 1.0
    jp = sum(
        1 for c in non_ascii
        if 0x3000 <= ord(c) <= 0x30FF or 0xFF01 <= ord(c) <= 0xFF5E
    )
    return jp / len(non_ascii)


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 saved without a BOM shows NUL bytes in every other position (for mostly-ASCII text)."""
    if len(data) < 4 or len(data) % 2:
        return None
    even, odd = data[0::2].count(0), data[1::2].count(0)
    half = len(data) // 2
    if odd > 0.3 * half and even < 0.02 * half:
        return "utf-16-le"
    if even > 0.3 * half and odd < 0.02 * half:
        return "utf-16-be"
    return None


def _declared_encoding(data: bytes) -> str | None:
    """The charset an HTML/XML file declares in its first bytes, if it is one we trust."""
    m = re.search(rb"""(?:charset|encoding)\s*=\s*["']?\s*([A-Za-z0-9_\-]+)""", data[:2048])
    if not m:
        return None
    try:
        canonical = codecs.lookup(m.group(1).decode("ascii")).name.replace("-", "_")
    except (LookupError, UnicodeDecodeError):
        return None
    return _DECLARED_ALLOWED.get(canonical)


def decode_text(data: bytes, name: str, *, declared: bool = False) -> tuple[str, str, list[str]]:
    """Decode bytes with the first strict codec that fits; returns (text, encoding, notes).

    Order: BOM, the file's own declaration (HTML), ISO-2022-JP when ESC sequences are present,
    UTF-8, then the Japanese legacy codecs (charset-normalizer breaks ties), then charset-normalizer's
    best guess if it is clean. Raises EncodingDetectionError rather than guess into mojibake.
    """
    for bom, enc in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                     (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            text = _strict(data, enc)
            if text is None:
                raise EncodingDetectionError(
                    f"the file starts with a {_ENCODING_LABELS[enc]} byte-order mark but is not valid {_ENCODING_LABELS[enc]}",
                    filename=name,
                )
            text = text.lstrip("\ufeff")
            return _checked(text, enc, name), enc, [f"Decoded as {_ENCODING_LABELS[enc]}", "Removed the byte-order mark"]

    if b"\x00" in data:
        enc = _utf16_without_bom(data)
        text = _strict(data, enc) if enc else None
        if text is None:
            raise UnsupportedFormatError(
                "this looks like a binary file (it contains NUL bytes), not a text document", filename=name
            )
        return _checked(text, enc, name), enc, [f"Decoded as {_ENCODING_LABELS[enc]}"]

    tried: list[str] = []
    if declared:
        enc = _declared_encoding(data)
        if enc and enc != "utf-8":
            text = _strict(data, enc)
            if text is not None:
                return _checked(text, enc, name), enc, [f"Decoded as {_ENCODING_LABELS.get(enc, enc)} (declared in the file)"]
            tried.append(enc)

    # ISO-2022-JP is 7-bit and therefore also valid UTF-8 (with ESC controls): try it first.
    if b"\x1b" in data and max(data) < 0x80:
        for enc in ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2004", "iso2022_jp_2"):
            text = _strict(data, enc)
            if text is not None:
                return _checked(text, enc, name), enc, [f"Decoded as {_ENCODING_LABELS[enc]}"]

    text = _strict(data, "utf-8")
    if text is not None:
        return _checked(text, "utf-8", name), "utf-8", ["Decoded as UTF-8"]

    decoded = {enc: t for enc in _JAPANESE_CANDIDATES if (t := _strict(data, enc)) is not None}
    japanese = {enc: t for enc, t in decoded.items() if _kana_ratio(t) >= 0.2}
    # The JIS X 0213 codecs are supersets: only consider them when the JIS X 0208 ones fail.
    for base, ext in (("cp932", "shift_jis_2004"), ("euc_jp", "euc_jis_2004")):
        if base in japanese:
            japanese.pop(ext, None)
    if japanese:
        enc = _pick_with_charset_normalizer(data, list(japanese)) if len(japanese) > 1 else next(iter(japanese))
        return _checked(japanese[enc], enc, name), enc, [f"Decoded as {_ENCODING_LABELS[enc]}"]

    guess = _charset_normalizer_guess(data) if len(data) >= 32 else None  # too short to guess honestly
    if guess is not None:
        enc, text = guess
        if enc in decoded or enc in _FALLBACK_ALLOWED:
            label = _ENCODING_LABELS.get(enc, enc)
            return _checked(text, enc, name), enc, [f"Decoded as {label} (detected automatically: check accents and symbols)"]

    raise EncodingDetectionError(
        "the text encoding could not be recognised (tried UTF-8, UTF-16, Shift_JIS, EUC-JP, ISO-2022-JP): "
        "save the file as UTF-8 and upload it again",
        filename=name,
    )


def _pick_with_charset_normalizer(data: bytes, candidates: list[str]) -> str:
    """Let charset-normalizer choose among codecs that all decode strictly; fall back to the kana ratio."""
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(data, cp_isolation=candidates).best()
        if best is not None and best.encoding in candidates:
            return best.encoding
    except Exception:  # noqa: BLE001 - a detector failure must not hide a clean decode
        pass
    return max(candidates, key=lambda e: _kana_ratio(data.decode(e)))


def _charset_normalizer_guess(data: bytes) -> tuple[str, str] | None:
    """charset-normalizer's guess, kept only if it is confident and decodes strictly."""
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(data).best()
    except Exception:  # noqa: BLE001
        return None
    if best is None or best.chaos > 0.1:
        return None
    text = _strict(data, best.encoding)
    return (best.encoding, text) if text is not None else None


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")


def _checked(text: str, encoding: str, name: str) -> str:
    """Reject decodes that are mostly control characters: that is binary data, not a document."""
    sample = text[:100_000]
    if sample and len(_CONTROL.findall(sample)) > max(8, 0.01 * len(sample)):
        raise CorruptFileError(
            "the file contains binary data (many control characters), not readable text", filename=name
        )
    return text


def _normalize_newlines(text: str) -> tuple[str, list[str]]:
    """CRLF and lone CR become LF: the only rewrite applied to plain text."""
    if "\r" not in text:
        return text, []
    return text.replace("\r\n", "\n").replace("\r", "\n"), ["Converted CRLF/CR line endings to LF"]


# --------------------------------------------------------------------------- plain text and Aozora Bunko


def _extract_txt(data: bytes, name: str, limits: IngestLimits) -> _Extracted:
    text, enc, notes = decode_text(data, name)
    _check_chars(len(text), name, limits)
    text, nl_notes = _normalize_newlines(text)
    notes += nl_notes
    if is_aozora(text):
        text, az_notes = strip_aozora(text)
        return _Extracted(text, "aozora", enc, numbered_paragraphs(text), _first_line(text), tuple(notes + az_notes))
    return _Extracted(text, "txt", enc, numbered_paragraphs(text), None, tuple(notes))


def _first_line(text: str) -> str | None:
    for line in text.split("\n"):
        if line.strip():
            return line.strip()[:200]
    return None


_AOZORA_RUBY_HINT = re.compile(r"[\u3400-\u9fff々〆ヶ]《[\u3041-\u30ff・ー]+》")


def is_aozora(text: str) -> bool:
    """Aozora Bunko files carry ［＃…］ annotations or kanji《よみ》 ruby."""
    return "［＃" in text or len(_AOZORA_RUBY_HINT.findall(text[:200_000])) >= 2


_DASH_LINE = re.compile(r"^-{10,}\s*$", re.M)
_GAIJI = re.compile(r"※［＃([^［］]*?)］")
_ANNOTATION = re.compile(r"［＃[^［］]*］")
_RUBY = re.compile(r"《[^《》\n]*》")
_MEN_KU_TEN = re.compile(r"(?<![\d-])([12])-(\d{1,2})-(\d{1,2})(?![\d-])")
_UNICODE_REF = re.compile(r"U\+([0-9A-Fa-f]{4,6})")


def _gaiji_char(annotation: str) -> str:
    """The character an Aozora gaiji note describes (JIS X 0213 men-ku-ten or U+XXXX), else 〓."""
    m = _UNICODE_REF.search(annotation)
    if m:
        return chr(int(m.group(1), 16))
    m = _MEN_KU_TEN.search(annotation)
    if m:
        men, ku, ten = (int(g) for g in m.groups())
        raw = bytes([0xA0 + ku, 0xA0 + ten])
        if men == 2:
            raw = b"\x8f" + raw
        ch = _strict(raw, "euc_jis_2004")
        if ch:
            return ch
    return "〓"


def strip_aozora(text: str) -> tuple[str, list[str]]:
    """Remove Aozora Bunko markup so ruby readings and editor notes never become 'words'.

    Drops the symbol legend between the dashed lines, the 底本： colophon at the end, ruby 《…》 and
    the ｜ ruby-start marker, and ［＃…］ annotations; gaiji notes ※［＃…］ become the character they describe.
    """
    notes: list[str] = []
    dashes = list(_DASH_LINE.finditer(text[:20_000]))
    if len(dashes) >= 2:
        text = text[: dashes[0].start()] + text[dashes[1].end():].lstrip("\n")
        notes.append("Removed the Aozora Bunko header (symbol legend)")
    colophons = list(re.finditer(r"^[ \t\u3000]*底本[：:]", text, re.M))
    colophon = colophons[-1] if colophons else None
    if colophon and re.search(r"入力[：:]|青空文庫", text[colophon.start():]):
        text = text[: colophon.start()].rstrip() + "\n"
        notes.append("Removed the Aozora Bunko colophon (底本 and credits)")

    text, n_gaiji = _GAIJI.subn(lambda m: _gaiji_char(m.group(1)), text)
    n_ann = 0
    while True:  # annotations can nest: ［＃「※［＃…］」に傍点］
        text, n = _ANNOTATION.subn("", text)
        n_ann += n
        if not n:
            break
    text, n_ruby = _RUBY.subn("", text)
    n_bar = text.count("｜")
    text = text.replace("｜", "")
    # Lines that held only an annotation (［＃ここから２字下げ］) are now empty: drop them, keep real blank lines.
    text = re.sub(r"\n[ \t\u3000]*(?=\n)", "\n", text) if n_ann else text
    if n_ruby or n_bar or n_ann or n_gaiji:
        notes.append("Removed Aozora Bunko ruby and annotations")
    if n_gaiji:
        notes.append(f"Replaced {n_gaiji} gaiji notes with the characters they describe")
    return text, notes


# --------------------------------------------------------------------------- numbered patent paragraphs

_LABEL = re.compile(r"^[ \t\u3000]*(\[\d{4,5}\]|【[0-9０-９]{4,5}】|【請求項[0-9０-９]+】)", re.M)


def numbered_paragraphs(text: str) -> tuple[Paragraph, ...]:
    """Spans of numbered patent paragraphs ([0001], 【０００１】, 【請求項１】), each up to the next label or blank line."""
    starts = [(m.start(1), m.group(1)) for m in _LABEL.finditer(text)]
    paragraphs = []
    for i, (start, label) in enumerate(starts):
        limit = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        blank = re.compile(r"\n[ \t\u3000]*\n|\n(?=【)").search(text, start + len(label), limit)
        end = blank.start() if blank else limit
        while end > start and text[end - 1] in " \t\n\u3000":
            end -= 1
        paragraphs.append(Paragraph(start, end, label))
    return tuple(paragraphs)


def _label_of(paragraph_text: str) -> str | None:
    m = _LABEL.match(paragraph_text)
    return m.group(1) if m else None


# --------------------------------------------------------------------------- Markdown


def _extract_md(data: bytes, name: str, limits: IngestLimits) -> _Extracted:
    text, enc, notes = decode_text(data, name)
    _check_chars(len(text), name, limits)
    text, nl_notes = _normalize_newlines(text.lstrip("\ufeff"))
    text = markdown_to_text(text)
    return _Extracted(text, "md", enc, numbered_paragraphs(text), None,
                      tuple(notes + nl_notes + ["Removed Markdown markup"]))


_MD_INLINE = [
    (re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)"), r"\1"),  # images -> alt text
    (re.compile(r"\[([^\]\n]+)\]\([^)\n]*\)"), r"\1"),  # links -> link text
    (re.compile(r"\[([^\]\n]+)\]\[[^\]\n]*\]"), r"\1"),  # reference links
    (re.compile(r"<((?:https?|mailto):[^>\s]+)>"), r"\1"),  # autolinks
    (re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>"), ""),  # inline HTML tags
    (re.compile(r"`+([^`\n]+?)`+"), r"\1"),  # inline code
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # bold
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), r"\1"),  # *italic*
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), r"\1"),  # _italic_
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),  # strikethrough
]
_MD_BLOCK_DROP = re.compile(r"^\s*(?:```.*|~~~.*|[-=*_]{3,}\s*|\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*|\[[^\]]+\]:\s*\S+.*)$")


def markdown_to_text(md: str) -> str:
    """Markdown without its markup: headings, emphasis, links, code fences and bullets lose their markers."""
    out = []
    for line in md.split("\n"):
        if _MD_BLOCK_DROP.match(line):
            continue
        line = re.sub(r"^\s{0,3}(?:>\s?)+", "", line)  # blockquotes
        line = re.sub(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", r"\1", line)  # ATX headings
        line = re.sub(r"^(\s*)[-*+]\s+(?:\[[ xX]\]\s+)?", r"\1", line)  # bullets and task boxes
        for pattern, repl in _MD_INLINE:
            line = pattern.sub(repl, line)
        out.append(line)
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"


# --------------------------------------------------------------------------- HTML

_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section",
    "article", "header", "footer", "nav", "aside", "blockquote", "pre", "dd", "dt", "dl", "hr", "main",
    "figure", "figcaption", "form", "address", "caption", "title",
}
# <head> is not skipped: browsers accept a missing </head>; its only text (<title>) is handled apart.
_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "math", "iframe", "object"}


class _HTMLText(HTMLParser):
    """Collects visible text; script/style contents are skipped and entities unescaped by the parser."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        self.pre_depth = 0
        self.in_title = False
        self.title: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        if tag == "title":
            self.in_title = True
        elif tag in _SKIP_TAGS:
            self.skip_depth += 1
        if tag == "pre":
            self.pre_depth += 1
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_startendtag(self, tag, attrs):  # noqa: ANN001
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag):  # noqa: ANN001
        if tag == "title":
            self.in_title = False
        elif tag in _SKIP_TAGS and self.skip_depth:
            self.skip_depth -= 1
        if tag == "pre" and self.pre_depth:
            self.pre_depth -= 1
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data):  # noqa: ANN001
        if self.in_title:
            self.title.append(data)
            return
        if self.skip_depth:
            return
        self.parts.append(data if self.pre_depth else re.sub(r"[ \t\r\n\f]+", " ", data))


def html_to_text(html: str) -> tuple[str, str | None]:
    """Visible text of an HTML page and its <title>; script and style contents are dropped."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    lines = [line.strip(" ") for line in "".join(parser.parts).split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    title = re.sub(r"\s+", " ", "".join(parser.title)).strip() or None
    return (text + "\n" if text else ""), title


def _extract_html(data: bytes, name: str, limits: IngestLimits) -> _Extracted:
    raw, enc, notes = decode_text(data, name, declared=True)
    _check_chars(len(raw), name, limits)
    raw, _ = _normalize_newlines(raw)
    text, title = html_to_text(raw)
    return _Extracted(text, "html", enc, numbered_paragraphs(text), title,
                      tuple(notes + ["Removed HTML markup, scripts and styles"]))


# --------------------------------------------------------------------------- PDF


def _extract_pdf(data: bytes, name: str, limits: IngestLimits) -> _Extracted:
    pages = _pdf_page_lines(data, name, limits)
    non_space = sum(len(re.sub(r"\s", "", line)) for page in pages for line in page)
    if non_space < 5 * max(1, len(pages)):
        raise NoTextLayerError(
            "this PDF has no text layer (it looks scanned): run OCR first, then upload the searchable PDF",
            filename=name,
        )
    pages, notes = drop_running_lines(pages)
    sample = "".join(line for page in pages[:5] for line in page)
    japanese = detect_language(sample) == "ja"
    text, paragraphs = join_pdf_lines(pages, japanese=japanese)
    notes.append("Joined hard-wrapped PDF lines into paragraphs" + (" (no spaces added for Japanese)" if japanese else ""))
    return _Extracted(text, "pdf", None, tuple(paragraphs), None, tuple(notes))


def _pdf_page_lines(data: bytes, name: str, limits: IngestLimits) -> list[list[str]]:
    """Text-layer lines per page; maps pypdf's many failure modes onto our typed errors."""
    import logging

    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    if b"%%EOF" not in data[-2048:]:
        raise CorruptFileError("this PDF is truncated or damaged (its end-of-file marker is missing)", filename=name)
    pypdf_log = logging.getLogger("pypdf")
    old_level = pypdf_log.level
    pypdf_log.setLevel(logging.ERROR)  # pypdf warns on every quirk; our notes/errors say what matters
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except (DependencyError, NotImplementedError):
                opened = 0
            if not opened:
                raise EncryptedFileError(
                    "this PDF is password-protected: remove the password (or print it to a new PDF) and upload again",
                    filename=name,
                )
        pages: list[list[str]] = []
        total = 0
        for page in reader.pages:
            text = page.extract_text() or ""
            total += len(text)
            _check_chars(total, name, limits)
            pages.append(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
        return pages
    except IngestError:
        raise
    except FileNotDecryptedError:
        raise EncryptedFileError("this PDF is password-protected", filename=name) from None
    except Exception as exc:  # noqa: BLE001 - any other parser failure (PdfReadError, KeyError…) means a damaged file
        raise CorruptFileError(f"this PDF is damaged and could not be read ({type(exc).__name__})", filename=name) from None
    finally:
        pypdf_log.setLevel(old_level)


_PAGE_NUMBER = re.compile(
    r"^[\s\-–—－]*(?:\d{1,4}|[ivxlcdm]{1,7}|page\s*\d+(?:\s*(?:of|/)\s*\d+)?|\d+\s*/\s*\d+|p\.\s*\d+)[\s\-–—－]*$",
    re.I,
)


def _line_key(line: str) -> str:
    """Lines compared across pages ignore spacing and digits (page numbers, '第III 部' vs '第 III 部')."""
    return re.sub(r"\d+", "#", re.sub(r"\s+", "", line))


def drop_running_lines(pages: list[list[str]], zone: int = 2) -> tuple[list[list[str]], list[str]]:
    """Remove running headers/footers (same line at the top or bottom of most pages) and page numbers."""
    def edge_indexes(lines: list[str]) -> list[int]:
        filled = [i for i, line in enumerate(lines) if line.strip()]
        return sorted(set(filled[:zone] + filled[-zone:]))

    counts: Counter[str] = Counter()
    for lines in pages:
        counts.update({_line_key(lines[i]) for i in edge_indexes(lines)})
    n = len(pages)
    threshold = max(2, -(-n // 2))
    repeated = {k for k, c in counts.items() if n >= 2 and c >= threshold and k}
    dropped_running = dropped_numbers = 0
    out = []
    for lines in pages:
        drop = set()
        for i in edge_indexes(lines):
            if _line_key(lines[i]) in repeated:
                drop.add(i)
                dropped_running += 1
            elif _PAGE_NUMBER.match(lines[i]):
                drop.add(i)
                dropped_numbers += 1
        out.append([line for i, line in enumerate(lines) if i not in drop])
    notes = []
    if dropped_running:
        notes.append(f"Dropped a repeated page header/footer ({dropped_running} lines)")
    if dropped_numbers:
        notes.append(f"Dropped {dropped_numbers} page-number lines")
    return out, notes


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x2E80 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0xFF00 <= o <= 0xFFEF


_PARA_START = re.compile(
    r"^(?:\(?[0-9０-９]{1,3}[.)）]\s|[（(](?:[0-9０-９]{1,3}|[ivxIVX]{1,5}|[a-zA-Z])[）)]|[・●○■□◆◇•※]|【|\[\d{4}\]|"
    r"第\s*[0-9０-９一二三四五六七八九十IVX]+\s*[章節部条]|例\s*[0-9０-９]+|\(注\s*\d+\))"
)
_SENTENCE_END = tuple("。．.!?！？：:」』)）")


def join_pdf_lines(pages: list[list[str]], *, japanese: bool) -> tuple[str, list[Paragraph]]:
    """Join hard-wrapped lines into paragraphs; Japanese joins without a space, English de-hyphenates.

    A paragraph ends at a blank line, before a line that starts like a list item or heading, or after
    a clearly short line (shorter than the usual line width) that ends a sentence.
    """
    stream = [(p, line.strip()) for p, lines in enumerate(pages, 1) for line in lines]
    widths = sorted(len(line) for _, line in stream if line)
    width = widths[int(len(widths) * 0.8)] if widths else 0
    paragraphs: list[tuple[int, str]] = []
    current, page_of_current, prev_line = "", 0, ""
    for page, line in stream:
        if not line:
            if current:
                paragraphs.append((page_of_current, current))
            current = ""
            continue
        if current and _breaks_between(prev_line, line, width):
            paragraphs.append((page_of_current, current))
            current = ""
        if not current:
            current, page_of_current = line, page
        else:
            current = _join_two(current, line, japanese)
        prev_line = line
    if current:
        paragraphs.append((page_of_current, current))

    text_parts, spans, pos = [], [], 0
    for page, para in paragraphs:
        spans.append(Paragraph(pos, pos + len(para), _label_of(para), page))
        text_parts.append(para)
        pos += len(para) + 1
    return "\n".join(text_parts) + ("\n" if text_parts else ""), spans


def _breaks_between(prev_line: str, line: str, width: int) -> bool:
    """Whether `line` starts a new paragraph after the raw line `prev_line`."""
    if _PARA_START.match(line):
        return True
    if len(prev_line) < 0.5 * width:
        return True
    return prev_line.endswith(_SENTENCE_END) and len(prev_line) < 0.85 * width


def _join_two(a: str, b: str, japanese: bool) -> str:
    if re.search(r"[A-Za-z]-$", a) and b[:1].islower():
        return a[:-1] + b
    if _is_cjk(a[-1]) or _is_cjk(b[0]):
        return a + b
    if japanese and not (a[-1].isalpha() and b[0].isalpha()):
        return a + b if (a[-1].isdigit() and b[0].isdigit()) else a + " " + b
    return a + " " + b


# --------------------------------------------------------------------------- DOCX


def check_zip_safety(data: bytes, name: str, limits: IngestLimits) -> None:
    """Refuse zip bombs before any member is inflated: total size, member count and compression ratio."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise CorruptFileError("this .docx file is damaged (its ZIP structure is broken)", filename=name) from None
    if len(infos) > 10_000:
        raise UnsafeFileError(f"this .docx holds {len(infos):,} parts, far more than any real document", filename=name)
    total = sum(i.file_size for i in infos)
    if total > limits.max_docx_uncompressed:
        raise UnsafeFileError(
            f"this .docx would expand to {total / _MB:,.0f} MB; the limit is {limits.max_docx_uncompressed / _MB:g} MB "
            "(possible zip bomb)",
            filename=name,
        )
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > 4 * _MB and ratio > 200:
            raise UnsafeFileError(
                f"a part of this .docx is compressed {ratio:,.0f} to 1, which only zip bombs do", filename=name
            )
    if "word/document.xml" not in {i.filename for i in infos}:
        raise UnsupportedFormatError("this ZIP file is not a Word .docx document (word/document.xml is missing)", filename=name)


def _extract_docx(data: bytes, name: str, limits: IngestLimits) -> _Extracted:
    check_zip_safety(data, name, limits)
    try:
        import docx
        from docx.table import Table
        from docx.text.paragraph import Paragraph as DocxParagraph

        document = docx.Document(io.BytesIO(data))
        blocks: list[str] = []
        total = 0
        for child in document.element.body.iterchildren():
            tag = child.tag.rsplit("}", 1)[-1]
            if tag == "p":
                blocks.append(DocxParagraph(child, document).text)
            elif tag == "tbl":
                for row in Table(child, document).rows:
                    cells = [c.text.replace("\n", " ").strip() for c in row.cells]
                    blocks.append(" | ".join(c for c in cells if c))
            total += len(blocks[-1]) if blocks else 0
            _check_chars(total, name, limits)
        title = (document.core_properties.title or "").strip() or None
    except IngestError:
        raise
    except Exception as exc:  # noqa: BLE001 - python-docx/lxml raise many types for damaged files
        raise CorruptFileError(f"this .docx file is damaged and could not be read ({type(exc).__name__})", filename=name) from None

    parts, spans, pos = [], [], 0
    for block in blocks:
        block = block.replace("\r", "").replace("\v", "\n").strip()
        if not block:
            continue
        spans.append(Paragraph(pos, pos + len(block), _label_of(block)))
        parts.append(block)
        pos += len(block) + 1
    text = "\n".join(parts) + ("\n" if parts else "")
    return _Extracted(text, "docx", None, tuple(spans), title, ("Read the Word paragraphs and tables (one per line)",))


# --------------------------------------------------------------------------- USPTO XML


def _extract_xml(data: bytes, name: str, limits: IngestLimits) -> _Extracted:
    if b"<!ENTITY" in data or b"<!entity" in data:
        raise UnsafeFileError(
            "this XML declares its own entities, which is refused for safety (entity-expansion attacks)", filename=name
        )
    head = data[:4096]
    if b"<us-patent-grant" not in head and b"<us-patent-application" not in head:
        raise UnsupportedFormatError(
            "only USPTO full-text patent XML (us-patent-grant / us-patent-application) is supported; "
            "save other XML as text or PDF",
            filename=name,
        )
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        line = getattr(exc, "position", (None,))[0]
        raise CorruptFileError(f"the XML is not well-formed (error near line {line})", filename=name) from None
    text, paragraphs, title = uspto_to_text(root)
    _check_chars(len(text), name, limits)
    return _Extracted(text, "uspto-xml", "utf-8", tuple(paragraphs), title,
                      ("Read USPTO patent XML: title, abstract, claims (one per paragraph) and description",))


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _inline(elem: ET.Element) -> str:
    """Text of an element with inline markup flattened; tables and image-only chemistry get placeholders."""
    tag = elem.tag
    if tag in ("tables", "table"):
        rows = []
        for row in elem.iter("row"):
            cells = [_squash(_inline_children(e)) for e in row.iter("entry")]
            rows.append(" | ".join(c for c in cells if c))
        return "[TABLE] " + " / ".join(r for r in rows if r) + " [/TABLE]"
    if tag in ("chemistry", "chem") and not "".join(elem.itertext()).strip():
        return "[CHEMISTRY]"
    if tag in ("img", "figure", "drawings"):
        return ""
    return _inline_children(elem)


def _inline_children(elem: ET.Element) -> str:
    parts = [elem.text or ""]
    for child in elem:
        parts.append(" " + _inline(child) + " " if child.tag in ("claim-text", "li", "tables", "maths") else _inline(child))
        parts.append(child.tail or "")
    return "".join(parts)


def uspto_to_text(root: ET.Element) -> tuple[str, list[Paragraph], str | None]:
    """USPTO grant/application XML laid out like the corpus .txt files, with paragraph spans."""
    out: list[str] = []
    spans: list[Paragraph] = []

    def emit(line: str, label: str | None = None) -> None:
        start = sum(len(x) for x in out)
        out.append(line + "\n")
        if label is not None:
            spans.append(Paragraph(start, start + len(line), label))

    doc_id = root.find("./*/publication-reference/document-id")
    if doc_id is not None:
        number = "".join((doc_id.findtext(t) or "").strip() for t in ("country", "doc-number", "kind"))
        emit(number)
        if doc_id.findtext("date"):
            emit(f"Publication date: {doc_id.findtext('date').strip()}")
    title_el = root.find(".//invention-title")
    title = _squash(_inline(title_el)) if title_el is not None else None
    if title:
        start = sum(len(x) for x in out) + len("Title: ")
        emit(f"Title: {title}")
        spans.append(Paragraph(start, start + len(title), "Title"))

    abstract = root.find("abstract")
    if abstract is not None:
        emit("")
        emit("ABSTRACT")
        for p in abstract.iter("p"):
            line = _squash(_inline(p))
            if line:
                emit(line, "Abstract")

    claims = root.find("claims")
    if claims is not None:
        emit("")
        emit("CLAIMS")
        for i, claim in enumerate(claims.findall("claim"), 1):
            num = (claim.get("num") or str(i)).lstrip("0") or str(i)
            line = _squash(_inline(claim))
            if line:
                emit(line, f"Claim {num}")
                emit("")

    description = root.find("description")
    if description is not None:
        if out and out[-1] != "\n":
            emit("")
        emit("DESCRIPTION")
        _emit_description(description, emit)
    return "".join(out).rstrip("\n") + "\n", spans, title


def _emit_description(elem: ET.Element, emit) -> None:  # noqa: ANN001
    for child in elem:
        if child.tag == "heading":
            emit("")
            emit(_squash(_inline(child)))
        elif child.tag == "p":
            body = _squash(_inline(child))
            num = child.get("num")
            if num and num.isdigit() and num.strip("0"):
                label = f"[{num}]"
                emit(f"{label} {body}", label)
            elif body:
                emit(body)
        elif child.tag in ("tables", "table", "maths", "chemistry"):
            body = _squash(_inline(child))
            if body:
                emit(body)
        elif len(child):
            _emit_description(child, emit)


# --------------------------------------------------------------------------- NFKC with an offset map


def _continues_cluster(ch: str) -> bool:
    """Characters that NFKC may compose with the one before (combining marks, ﾞ/ﾟ, Hangul vowels/finals)."""
    if 0x1160 <= ord(ch) <= 0x11FF or ch in "\uff9e\uff9f":
        return True
    norm = unicodedata.normalize("NFKC", ch)
    return bool(norm) and unicodedata.combining(norm[0]) != 0


def nfkc_with_map(text: str) -> tuple[str, list[int]]:
    """NFKC-normalise `text` and return, for every normalised character, the index of its source character.

    Matching runs on the normalised string (full-width ＡＢＣ１２３ fold to ABC123); the map turns a match
    back into offsets of the text shown to the reviewer. Normalisation is done per base character plus
    its combining marks, so composition (カ + ﾞ -> ガ) is mapped to the base character.
    """
    out: list[str] = []
    index: list[int] = []
    i, n = 0, len(text)
    while i < n:
        j = i + 1
        while j < n and _continues_cluster(text[j]):
            j += 1
        cluster = text[i:j]
        norm = cluster if cluster.isascii() else unicodedata.normalize("NFKC", cluster)
        out.append(norm)
        index.extend([i] * len(norm))
        i = j
    return "".join(out), index


_EXTRACTORS = {
    "txt": _extract_txt,
    "md": _extract_md,
    "html": _extract_html,
    "pdf": _extract_pdf,
    "docx": _extract_docx,
    "xml": _extract_xml,
}
