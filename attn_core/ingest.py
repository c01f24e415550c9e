"""Ingestion: uploaded bytes + file name -> `Document`, or a typed `IngestError` a reviewer can act on.

Everything here is defensive: uploads are untrusted. Size limits are enforced before any parsing,
text is decoded only by strict codecs (never silent mojibake), archives and XML are checked for
bombs before they are opened, and the file name is kept as an opaque label, never used as a path.

Work and memory are bounded by construction, not by hoping the checks catch everything: every
parser here is a single pass (no backtracking regex on untrusted text, no recursion over untrusted
trees), XML entity declarations are refused after decoding, ZIP members are inflated under a hard
byte budget whatever sizes the archive declares, and Word's document.xml is streamed under
character and element budgets. `attn_core.ingest_worker.ingest_isolated` runs all this in a
separate process with a memory limit and a timeout, for uploads on a shared server.

Plain text is kept exactly as decoded (only a BOM is stripped and CRLF/CR become LF) because
offsets into `Document.text` drive the highlighting. Formats with markup (HTML, Markdown, PDF,
DOCX, USPTO XML, Aozora Bunko) are turned into plain text first; `Document.notes` says what was done.
"""
from __future__ import annotations

import bisect
import codecs
import io
import os
import re
import unicodedata
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from xml.etree import ElementTree as ET
from xml.parsers import expat

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
    # Bytes actually inflated from a .docx (counted while decompressing, whatever the archive declares).
    max_docx_uncompressed: int = 200 * _MB
    # XML elements in one USPTO file or one Word document.xml: about 2 s of parsing and, for USPTO
    # (kept as a tree), about 400 MB; real patents and specifications stay well under 1,000,000.
    max_xml_elements: int = 4_000_000


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


# No codec accepted here spends more than 4 bytes on a character (UTF-8 and UTF-16 surrogate pairs
# at most 4, Shift_JIS 2, EUC-JP 3); a byte-order mark adds at most 4 bytes.
_MAX_BYTES_PER_CHAR = 4


def _check_text_bytes(size: int, name: str, limits: IngestLimits) -> None:
    """Refuse text whose byte count alone proves it has more characters than allowed, before decoding it.

    Decoding first cost 2.4 GB for a 48 MB Shift_JIS file (every candidate codec decoded it whole);
    more than 4 bytes per allowed character cannot fit under any codec, so no decode is needed to say no.
    """
    if size > _MAX_BYTES_PER_CHAR * limits.max_chars + 4:
        raise FileTooLargeError(
            f"the text is {size / _MB:.1f} MB, more than {limits.max_chars:,} characters (the limit) in any encoding",
            filename=name,
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
        if ext == "docx" or _zip_has(data, "word/document.xml", name):
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


def _zip_has(data: bytes, member: str, name: str) -> bool:
    _check_zip_directory(data, name)
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


def _is_japanese_text_char(o: int) -> bool:
    """Characters Japanese (or English) text is made of: kana, kanji, CJK and full-width punctuation, ASCII."""
    return (
        0x20 <= o <= 0x7E or o in (0x09, 0x0A, 0x0D)
        or 0x3000 <= o <= 0x30FF  # CJK punctuation, hiragana, katakana
        or 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF  # kanji
        or 0xFF00 <= o <= 0xFFEF  # full-width forms, half-width katakana
    )


def _japanese_utf16_without_bom(data: bytes) -> tuple[str, str] | None:
    """(encoding, text) when the bytes are Japanese text in UTF-16 saved without a byte-order mark.

    The NUL-byte test of `_utf16_without_bom` only sees mostly-ASCII text: Japanese UTF-16 has few NUL
    bytes, so it was refused as binary. A strict decode in either byte order is accepted only when nearly
    every character is one Japanese text is made of and kana are present: Shift_JIS or EUC-JP read as
    UTF-16 come out as kanji-like code points without kana, and random bytes fail the share test.
    """
    if len(data) < 4 or len(data) % 2:
        return None
    best: tuple[float, str] | None = None
    for enc in ("utf-16-le", "utf-16-be"):
        try:  # judge the first 200 KB before decoding everything
            sample = codecs.getincrementaldecoder(enc)("strict").decode(data[:200_000], final=False)
        except UnicodeDecodeError:
            continue
        if not sample:
            continue
        plausible = kana = non_ascii = 0
        for ch in sample:
            o = ord(ch)
            if _is_japanese_text_char(o):
                plausible += 1
            if o > 0x7F:
                non_ascii += 1
                if 0x3041 <= o <= 0x30FA:
                    kana += 1
        share = plausible / len(sample)
        if share >= 0.95 and non_ascii and kana >= 0.1 * non_ascii and (best is None or share > best[0]):
            best = (share, enc)
    if best is None:
        return None
    text = _strict(data, best[1])
    return (best[1], text) if text is not None else None


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
        if text is None and (found := _japanese_utf16_without_bom(data)) is not None:
            enc, text = found
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

    # Japanese UTF-16 with no ASCII at all has no NUL byte either; it is never valid UTF-8 with kanji in it.
    if (found := _japanese_utf16_without_bom(data)) is not None:
        enc, text = found
        return _checked(text, enc, name), enc, [f"Decoded as {_ENCODING_LABELS[enc]}"]

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
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - a detector failure must not hide a clean decode
        pass
    return max(candidates, key=lambda e: _kana_ratio(data.decode(e)))


def _charset_normalizer_guess(data: bytes) -> tuple[str, str] | None:
    """charset-normalizer's guess, kept only if it is confident and decodes strictly."""
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(data).best()
    except MemoryError:
        raise
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
    _check_text_bytes(len(data), name, limits)
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
_BRACKET_TOKEN = re.compile(r"［＃|［|］")
_RUBY = re.compile(r"《[^《》\n]*》")
_MEN_KU_TEN = re.compile(r"(?<![\d-])([12])-(\d{1,2})-(\d{1,2})(?![\d-])")
_UNICODE_REF = re.compile(r"U\+([0-9A-Fa-f]{4,6})")


def _gaiji_char(annotation: str) -> str:
    """The character an Aozora gaiji note describes (JIS X 0213 men-ku-ten or U+XXXX), else 〓."""
    m = _UNICODE_REF.search(annotation)
    if m:
        code = int(m.group(1), 16)
        # U+110000 and above do not exist (chr() raised an untyped ValueError); lone surrogates cannot be shown.
        return chr(code) if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "〓"
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


def _remove_annotations(text: str) -> tuple[str, int]:
    """Remove ［＃…］ annotations, nested ones included (［＃「※［＃…］」に傍点］), in one pass; returns (text, count).

    Same result as removing the innermost bracket-free ［＃…］ until none is left, which rescanned the
    whole text once per nesting level (40,000 nested notes took 13 s): here a stack holds the openers
    that can still close. A kept bracket (a plain ［ or a ］ that closes nothing) can never be removed, so
    no opener before it can close after it: the stack is emptied there.
    """
    out: list[str] = []
    openers: list[int] = []  # len(out) where each still-closable ［＃ was written
    removed = pos = 0
    for m in _BRACKET_TOKEN.finditer(text):
        out.append(text[pos:m.start()])
        pos = m.end()
        token = m.group()
        if token == "［＃":
            openers.append(len(out))
            out.append(token)
        elif token == "］" and openers:
            del out[openers.pop():]  # each piece is deleted at most once: linear overall
            removed += 1
        else:
            openers.clear()
            out.append(token)
    out.append(text[pos:])
    return "".join(out), removed


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
    text, n_ann = _remove_annotations(text)
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
    _check_text_bytes(len(data), name, limits)
    text, enc, notes = decode_text(data, name)
    _check_chars(len(text), name, limits)
    text, nl_notes = _normalize_newlines(text.lstrip("\ufeff"))
    text = markdown_to_text(text)
    return _Extracted(text, "md", enc, numbered_paragraphs(text), None,
                      tuple(notes + nl_notes + ["Removed Markdown markup"]))


# Markdown is stripped line by line with hand-written single-pass scanners. The regexes used before
# (`(\*\*|__)(?=\S)(.+?)(?<=\S)\1` and friends) rescanned the rest of the line from every unmatched
# opener: 20,000 `**a ` took 14.5 s and 2 MB of such text would take hours, holding the GIL. Each
# scanner below keeps the regex's meaning (same matches, left to right, non-overlapping) but finds the
# closing delimiter with a sorted position list, so a line costs O(n log n) whatever it contains.


def _positions(line: str, needle: str) -> list[int]:
    """Every index where `needle` starts in `line` (overlapping), in increasing order."""
    out, i = [], line.find(needle)
    while i != -1:
        out.append(i)
        i = line.find(needle, i + 1)
    return out


def _first_at_or_after(positions: list[int], start: int) -> int:
    """The smallest position >= start, or -1."""
    k = bisect.bisect_left(positions, start)
    return positions[k] if k < len(positions) else -1


def _is_word(ch: str) -> bool:
    r"""`re`'s \w for str patterns."""
    return ch.isalnum() or ch == "_"


def _md_bracketed(line: str, opener: str, *, empty_ok: bool, then: str) -> str:
    r"""`opener` TEXT `]` then `(…)` or `[…]` -> TEXT: images (alt text), links and reference links.

    Same as `!?\[([^\]\n]*)\]\([^)\n]*\)` (or `\]\[[^\]\n]*\]` for reference links): TEXT runs to the first
    `]`, the target to the first closing character after it.
    """
    if opener not in line:
        return line
    closes = _positions(line, "]")
    ends = closes if then == "[" else _positions(line, ")")
    out, i, done = [], 0, 0
    while True:
        i = line.find(opener, i)
        if i == -1:
            break
        body = i + len(opener)
        j = _first_at_or_after(closes, body)
        if j == -1:
            break  # no `]` left: no later opener can match either
        if (j > body or empty_ok) and line.startswith(then, j + 1):
            k = _first_at_or_after(ends, j + 2)
            if k != -1:
                out.append(line[done:i])
                out.append(line[body:j])
                done = i = k + 1
                continue
        i += 1
    out.append(line[done:])
    return "".join(out)


def _md_autolinks(line: str) -> str:
    r"""`<https://…>` and `<mailto:…>` -> the address, as `<((?:https?|mailto):[^>\s]+)>`."""
    if "<" not in line:
        return line
    gts = _positions(line, ">")
    spaces: list[int] | None = None  # computed once, at the first scheme
    out, i, done = [], 0, 0
    while (i := line.find("<", i)) != -1:
        m = _MD_SCHEME.match(line, i + 1)
        if m:
            if spaces is None:
                spaces = [w.start() for w in _MD_SPACE.finditer(line)]
            s0 = m.end()
            gt, sp = _first_at_or_after(gts, s0), _first_at_or_after(spaces, s0)
            if gt > s0 and (sp == -1 or gt < sp):
                out.append(line[done:i])
                out.append(line[i + 1:gt])
                done = i = gt + 1
                continue
        i += 1
    out.append(line[done:])
    return "".join(out)


_MD_SCHEME = re.compile(r"https?:|mailto:")
_MD_SPACE = re.compile(r"\s")
_MD_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_MD_ANGLE = re.compile(r"[<>]")
_MD_BACKTICKS = re.compile(r"`+")


def _md_html_tags(line: str) -> str:
    r"""Inline HTML tags removed, as `</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>`."""
    if "<" not in line:
        return line
    n = len(line)
    out, i, done = [], 0, 0
    while (i := line.find("<", i)) != -1:
        tag = _MD_TAG_NAME.match(line, i + 1 + line.startswith("/", i + 1))
        end = -1
        if tag:
            q = tag.end()
            if line.startswith(">", q):
                end = q
            elif line.startswith("/>", q):
                end = q + 1
            elif q < n and line[q].isspace():
                angle = _MD_ANGLE.search(line, q + 1)  # attributes run to the next < or >
                if angle and angle.group() == ">":
                    end = angle.start()
        if end != -1:
            out.append(line[done:i])
            done = i = end + 1
        else:
            i += 1
    out.append(line[done:])
    return "".join(out)


def _md_code_spans(line: str) -> str:
    r"""`code` -> code, as `` `+([^`\n]+?)`+ ``: an opening run of backticks up to the next backtick run."""
    if "`" not in line:
        return line
    out, i, done = [], 0, 0
    while (i := line.find("`", i)) != -1:
        e = _MD_BACKTICKS.match(line, i).end()
        f = line.find("`", e)
        if f == -1:
            break
        out.append(line[done:i])
        out.append(line[e:f])  # never empty: e ends a run of backticks, so line[e] is not one
        done = i = _MD_BACKTICKS.match(line, f).end()
    out.append(line[done:])
    return "".join(out)


def _md_paired(line: str, delims: tuple[str, ...]) -> str:
    r"""**bold**, __bold__ and ~~struck~~ -> the text, as `(D)(?=\S)(.+?)(?<=\S)D`.

    The closer is the first D after at least one character whose preceding character is not a space;
    closers are looked up in a sorted list, so unmatched openers cost O(log n) instead of the rest of the line.
    """
    if not any(d in line for d in delims):
        return line
    closers = {d: [k for k in _positions(line, d) if k > 0 and not line[k - 1].isspace()] for d in delims}
    n = len(line)
    out, done = [], 0
    for i in sorted(k for d in delims for k in _positions(line, d)):  # every place the regex could start
        if i < done or i + 2 >= n or line[i + 2].isspace():
            continue
        k = _first_at_or_after(closers[line[i:i + 2]], i + 3)
        if k != -1:
            out.append(line[done:i])
            out.append(line[i + 2:k])
            done = k + 2
    out.append(line[done:])
    return "".join(out)


def _md_single(line: str, mark: str) -> str:
    r"""*italic* / _italic_ -> the text, as `(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])` (likewise for _)."""
    if mark not in line:
        return line
    n = len(line)
    out, i, done = [], 0, 0
    while (i := line.find(mark, i)) != -1:
        f = line.find(mark, i + 1)
        if f == -1:
            break
        if (
            f > i + 1
            and (i == 0 or not (_is_word(line[i - 1]) or line[i - 1] == mark))
            and not line[i + 1].isspace()
            and not line[f - 1].isspace()
            and (f + 1 == n or not (_is_word(line[f + 1]) or line[f + 1] == mark))
        ):
            out.append(line[done:i])
            out.append(line[i + 1:f])
            done = i = f + 1
        else:
            i += 1
    out.append(line[done:])
    return "".join(out)


def _md_inline(line: str) -> str:
    """Inline Markdown of one line removed, in the order the constructs bind."""
    line = _md_bracketed(line, "![", empty_ok=True, then="(")  # images -> alt text
    line = _md_bracketed(line, "[", empty_ok=False, then="(")  # links -> link text
    line = _md_bracketed(line, "[", empty_ok=False, then="[")  # reference links
    line = _md_autolinks(line)
    line = _md_html_tags(line)
    line = _md_code_spans(line)
    line = _md_paired(line, ("**", "__"))  # bold
    line = _md_single(line, "*")  # *italic*
    line = _md_single(line, "_")  # _italic_
    return _md_paired(line, ("~~",))  # strikethrough


def _md_table_rule(s: str) -> bool:
    """A table's header rule: `| --- | :---: |` (cells of `:?-{3,}:?` between optional outer pipes)."""
    t = s.strip()
    t = t[1:] if t.startswith("|") else t
    t = t[:-1] if t.endswith("|") else t
    for cell in t.split("|"):
        c = cell.strip()
        c = c[1:] if c.startswith(":") else c
        c = c[:-1] if c.endswith(":") else c
        if len(c) < 3 or c.strip("-"):
            return False
    return True


def _md_drop_line(line: str) -> bool:
    """Lines with no text of their own: code fences, rules, table header rules, link reference definitions."""
    s = line.lstrip()
    if s.startswith(("```", "~~~")):
        return True
    t = s.rstrip()
    if len(t) >= 3 and not t.strip("-=*_"):
        return True
    if s.startswith(("|", ":", "-")) and _md_table_rule(s):
        return True
    if s.startswith("["):
        j = s.find("]", 1)
        return j > 1 and s.startswith(":", j + 1) and bool(s[j + 2:].strip())
    return False


_MD_HEADING = re.compile(r"\s{0,3}#{1,6}\s+")


def markdown_to_text(md: str) -> str:
    """Markdown without its markup: headings, emphasis, links, code fences and bullets lose their markers.

    Linear in the length of the text (see the scanners above), so a hostile upload cannot stall the server.
    """
    out = []
    for line in md.split("\n"):
        if _md_drop_line(line):
            continue
        line = re.sub(r"^\s{0,3}(?:>\s?)+", "", line)  # blockquotes
        heading = _MD_HEADING.match(line)
        if heading:  # ATX heading: the closing #s and surrounding spaces go too
            line = line[heading.end():].rstrip().rstrip("#").rstrip()
        line = re.sub(r"^(\s*)[-*+]\s+(?:\[[ xX]\]\s+)?", r"\1", line)  # bullets and task boxes
        out.append(_md_inline(line))
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
    _check_text_bytes(len(data), name, limits)
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
    except (IngestError, MemoryError):
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


# A central directory entry takes at least 46 bytes and zipfile keeps an object of ~500 bytes per entry:
# the directory is sized from the end record before zipfile reads it.
_MAX_ZIP_ENTRIES = 10_000
_MAX_ZIP_DIRECTORY = 4 * _MB


def _check_zip_directory(data: bytes, name: str) -> None:
    """Refuse a ZIP whose central directory is too large to list, before zipfile builds one object per entry."""
    eocd = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if eocd == -1 or eocd + 22 > len(data):
        return  # no end record: zipfile reports the damage
    entries = int.from_bytes(data[eocd + 10:eocd + 12], "little")
    size = int.from_bytes(data[eocd + 12:eocd + 16], "little")
    locator = eocd - 20
    if (entries == 0xFFFF or size == 0xFFFFFFFF) and locator >= 0 and data.startswith(b"PK\x06\x07", locator):
        record = int.from_bytes(data[locator + 8:locator + 16], "little")  # the ZIP64 end record
        if data.startswith(b"PK\x06\x06", record) and record + 56 <= len(data):
            entries = int.from_bytes(data[record + 32:record + 40], "little")
            size = int.from_bytes(data[record + 40:record + 48], "little")
    if entries > _MAX_ZIP_ENTRIES or size > _MAX_ZIP_DIRECTORY:
        raise UnsafeFileError(
            f"this archive lists {entries:,} parts in a {size / _MB:.1f} MB directory, far more than any real document",
            filename=name,
        )


def check_zip_safety(data: bytes, name: str, limits: IngestLimits) -> None:
    """Refuse obvious zip bombs before any member is inflated: directory size, declared total and ratio.

    These checks trust what the archive declares, so they are only a quick first answer: members are
    then inflated under a hard budget of bytes actually produced (`_InflateBudget`).
    """
    _check_zip_directory(data, name)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise CorruptFileError("this .docx file is damaged (its ZIP structure is broken)", filename=name) from None
    if len(infos) > _MAX_ZIP_ENTRIES:
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


class _InflateBudget:
    """Bytes that may still be inflated from one archive, counted as they leave the decompressor.

    Declared sizes are never trusted: a member that claims 1.5 MB compressed / 150 MB inflated (or any
    other lie) still stops here once the bytes it really produces pass the budget.
    """

    CHUNK = _MB

    def __init__(self, limit: int, name: str) -> None:
        self.limit = limit
        self.left = limit
        self.name = name

    def read(self, zf: zipfile.ZipFile, member: str) -> Iterator[bytes]:
        """The member's bytes in pieces of at most 1 MB; raises UnsafeFileError past the budget."""
        if zf.getinfo(member).compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            # zipfile inflates bzip2/LZMA without an output bound per read: one 1 MB read could be gigabytes.
            raise UnsafeFileError("this .docx uses a compression method Word never writes (bzip2 or LZMA)",
                                  filename=self.name)
        with zf.open(member) as fh:
            while chunk := fh.read(self.CHUNK):
                self.left -= len(chunk)
                if self.left < 0:
                    raise UnsafeFileError(
                        f"this .docx expands to more than {self.limit / _MB:g} MB, the limit (possible zip bomb)",
                        filename=self.name,
                    )
                yield chunk


def _feed(parser: "expat.XMLParserType", chunks: Iterable[bytes]) -> None:
    for chunk in chunks:
        parser.Parse(chunk, False)
    parser.Parse(b"", True)


_W_NAMESPACES = frozenset({
    "http://schemas.openxmlformats.org/wordprocessingml/2006/main",  # what Word writes
    "http://purl.oclc.org/ooxml/wordprocessingml/main",  # "Strict Open XML"
})
# What each element is to the reader, decided from its parent's role and its own name.
# Roles from _BODY_P on have work to do when their element ends.
(_IGNORE, _ROOT, _BODY, _RUN, _LINK, _TEXT, _TBL, _TR_PR, _TC_PR, _BODY_P, _CELL_P, _TC, _TR) = range(13)
_CHILD_ROLES: list[dict[str, int]] = [{} for _ in range(13)]  # parent role -> {local name: role}
_CHILD_ROLES[_ROOT] = {"body": _BODY}
_CHILD_ROLES[_BODY] = {"p": _BODY_P, "tbl": _TBL}
_CHILD_ROLES[_BODY_P] = _CHILD_ROLES[_CELL_P] = {"r": _RUN, "hyperlink": _LINK}
_CHILD_ROLES[_LINK] = {"r": _RUN}
_CHILD_ROLES[_RUN] = {"t": _TEXT}
_CHILD_ROLES[_TBL] = {"tr": _TR}
_CHILD_ROLES[_TR] = {"trPr": _TR_PR, "tc": _TC}
_CHILD_ROLES[_TC] = {"tcPr": _TC_PR, "p": _CELL_P}
_RUN_CHARS = {"tab": "\t", "ptab": "\t", "cr": "\n", "noBreakHyphen": "-"}


def _attr(attrs: dict[str, str], local: str) -> str | None:
    for key, value in attrs.items():
        if key == local or key.endswith("}" + local):
            return value
    return None


def _small_int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


class _DocxBodyReader:
    r"""Streams word/document.xml into text blocks under a character budget and an element budget.

    One block per body paragraph and per table row, with python-docx's text rules (which this
    replaced): a paragraph is its runs and hyperlink runs; a run is its w:t text, tabs ("\t"), line
    breaks and carriage returns ("\n") and non-breaking hyphens; a row is its cells joined by " | ",
    a cell spanning n grid columns repeated n times and a vertically merged cell repeating the cell
    above. Nothing is kept but the text, so memory is bounded by the character limit, not by the
    size of the XML (python-docx built the whole tree: 1.9 GB for a 199 MB document.xml).
    """

    def __init__(self, name: str, limits: IngestLimits) -> None:
        self.name = name
        self.limits = limits
        self.blocks: list[str] = []
        self.total = 0  # characters in self.blocks
        self.roles: list[int] = []
        self.elements = 0
        self.max_elements = limits.max_xml_elements
        self.locals: dict[str, str] = {}
        self.para: list[str] = []
        self.para_chars = 0
        self.cell_paras: list[str] = []
        self.cell_span, self.cell_merge = 1, None
        self.row: list[tuple[str, int]] = []
        self.row_chars = 0  # characters read into the current row's cells
        self.offset = 0
        self.grid: dict[int, tuple[str, int]] = {}
        self.grid_above: dict[int, tuple[str, int]] = {}
        self.parser = expat.ParserCreate(namespace_separator="}")
        self.parser.buffer_text = True
        _refuse_entity_declarations(self.parser, name)
        self.parser.StartElementHandler = self.start
        self.parser.EndElementHandler = self.end
        self.parser.CharacterDataHandler = self.data

    def _local(self, qname: str) -> str:
        """The local name of a WordprocessingML element, "" for any other namespace."""
        local = self.locals.get(qname)
        if local is None:
            uri, _, name = qname.rpartition("}")
            local = name if uri in _W_NAMESPACES else ""
            if len(self.locals) < 1000:  # element names come from the file: keep the cache small
                self.locals[qname] = local
        return local

    def _too_many_chars(self) -> FileTooLargeError:
        return FileTooLargeError(
            f"the text has more than {self.limits.max_chars:,} characters, the limit; the file was not read further",
            filename=self.name,
        )

    def _add(self, piece: str) -> None:
        self.para.append(piece)
        self.para_chars += len(piece)
        if self.total + self.row_chars + self.para_chars > self.limits.max_chars:
            raise self._too_many_chars()

    def start(self, qname: str, attrs: dict[str, str]) -> None:
        self.elements += 1
        if self.elements > self.max_elements:
            raise FileTooLargeError(
                f"this .docx has more than {self.limits.max_xml_elements:,} XML elements in its text; the limit "
                "keeps reading time bounded",
                filename=self.name,
            )
        roles = self.roles
        if not roles:  # the root (w:document)
            roles.append(_ROOT)
            return
        parent = roles[-1]
        if parent == _IGNORE or parent == _TEXT:  # most elements (run and paragraph properties) end here
            roles.append(_IGNORE)
            return
        local = self.locals.get(qname)
        if local is None:
            local = self._local(qname)
        role = _CHILD_ROLES[parent].get(local, _IGNORE)
        if parent == _RUN:
            if local in _RUN_CHARS:
                self._add(_RUN_CHARS[local])
            elif local == "br" and _attr(attrs, "type") in (None, "textWrapping"):
                self._add("\n")
        elif role == _TBL:
            self.grid_above = {}
        elif role == _TR:
            self.row, self.grid, self.offset = [], {}, 0
        elif role == _TC:
            self.cell_paras, self.cell_span, self.cell_merge = [], 1, None
        elif parent == _TR_PR:
            if local == "gridBefore":
                self.offset = max(0, _small_int(_attr(attrs, "val"), 0))
        elif parent == _TC_PR:
            if local == "gridSpan":
                self.cell_span = max(1, _small_int(_attr(attrs, "val"), 1))
            elif local == "vMerge":
                self.cell_merge = _attr(attrs, "val") or "continue"
        roles.append(role)

    def data(self, text: str) -> None:
        if self.roles and self.roles[-1] == _TEXT:
            self._add(text)

    def end(self, _qname: str) -> None:
        role = self.roles.pop()
        if role < _BODY_P:
            return
        if role == _BODY_P:
            self.blocks.append("".join(self.para))
            self.total += self.para_chars
            self.para, self.para_chars = [], 0
        elif role == _CELL_P:
            self.cell_paras.append("".join(self.para))
            self.row_chars += self.para_chars
            self.para, self.para_chars = [], 0
        elif role == _TC:
            if self.cell_merge == "continue":  # the rest of a vertical merge: python-docx repeats the cell above
                text, span = self.grid_above.get(self.offset, ("", 1))
            else:
                text, span = "\n".join(self.cell_paras), self.cell_span
            self.row.append((text, span))
            self.grid[self.offset] = (text, span)
            self.offset += self.cell_span
        elif role == _TR:
            cells = [(c, span) for text, span in self.row if (c := text.replace("\n", " ").strip())]
            # Spans and merges repeat text: size the row before building it (a span can claim any number).
            length = sum(len(c) * span for c, span in cells) + 3 * max(0, sum(span for _, span in cells) - 1)
            if self.total + length > self.limits.max_chars:
                raise self._too_many_chars()
            row = " | ".join(c for c, span in cells for _ in range(span))
            self.blocks.append(row)
            self.total += len(row)
            self.row, self.row_chars, self.grid_above = [], 0, self.grid


_DC_TITLE = "http://purl.org/dc/elements/1.1/}title"


def _docx_title(zf: zipfile.ZipFile, name: str) -> str | None:
    """dc:title from docProps/core.xml (the document's Title property), if the part is there and sane.

    The part is read under its own 1 MB budget; a missing, damaged, oversized or hostile part only
    costs the title, never the document.
    """
    if "docProps/core.xml" not in zf.NameToInfo:
        return None
    parts: list[str] = []
    in_title: list[bool] = []  # one entry per open element: is it the dc:title child of the root?
    parser = expat.ParserCreate(namespace_separator="}")
    _refuse_entity_declarations(parser, name)
    parser.StartElementHandler = lambda qname, _attrs: in_title.append(len(in_title) == 1 and qname == _DC_TITLE)
    parser.EndElementHandler = lambda _qname: in_title.pop()
    parser.CharacterDataHandler = lambda text: parts.append(text) if in_title and in_title[-1] else None
    try:
        _feed(parser, _InflateBudget(_MB, name).read(zf, "docProps/core.xml"))
    except (UnsafeFileError, expat.ExpatError, zipfile.BadZipFile, zlib.error, EOFError, ValueError):
        return None
    return "".join(parts).strip() or None


def _extract_docx(data: bytes, name: str, limits: IngestLimits) -> _Extracted:
    check_zip_safety(data, name, limits)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            budget = _InflateBudget(limits.max_docx_uncompressed, name)
            reader = _DocxBodyReader(name, limits)
            _feed(reader.parser, budget.read(zf, "word/document.xml"))
            blocks = reader.blocks
            title = _docx_title(zf, name)
    except (IngestError, MemoryError):
        raise
    except expat.ExpatError as exc:
        _raise_if_out_of_memory(exc)
        raise CorruptFileError(f"this .docx file is damaged and could not be read ({type(exc).__name__})",
                               filename=name) from None
    except RuntimeError as exc:  # zipfile: "File … is encrypted, password required for extraction"
        if "encrypted" in str(exc):
            raise EncryptedFileError("this .docx is password-protected: remove the password and upload again",
                                     filename=name) from None
        raise CorruptFileError(f"this .docx file is damaged and could not be read ({type(exc).__name__})",
                               filename=name) from None
    except Exception as exc:  # noqa: BLE001 - zipfile, zlib and expat raise many types for damaged files
        raise CorruptFileError(f"this .docx file is damaged and could not be read ({type(exc).__name__})",
                               filename=name) from None

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


_USPTO_ROOTS = ("us-patent-grant", "us-patent-application")
_ENTITY_REFUSAL = "this XML declares its own entities, which is refused for safety (entity-expansion attacks)"
_NOT_USPTO = (
    "only USPTO full-text patent XML (us-patent-grant / us-patent-application) is supported; "
    "save other XML as text or PDF"
)


def _refuse_entity_declarations(parser: "expat.XMLParserType", name: str) -> None:
    """Make `parser` refuse any entity declaration, seen after decoding (so in any encoding, UTF-16 included).

    Checking the raw bytes for `<!ENTITY` missed UTF-16 files (`<\0!\0E\0…`) and let a 2 MB upload expand
    to 150 M characters. Expat reports every declaration, general or parameter, internal or external, to
    these handlers before any reference to it can be expanded; this is what defusedxml does, on the C parser.
    """
    def refuse(*_args: object) -> None:
        raise UnsafeFileError(_ENTITY_REFUSAL, filename=name)

    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse


def _parse_uspto(data: bytes, name: str, limits: IngestLimits) -> ET.Element:
    """Parse USPTO XML into an ElementTree with entity declarations refused and the element count bounded.

    Expat feeds the C TreeBuilder directly (no Python per-element work but the count); the root element
    is checked first, so other XML is refused before it is built.
    """
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()
    parser.buffer_text = True
    _refuse_entity_declarations(parser, name)
    count = 0

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal count
        count += 1
        if count == 1 and tag not in _USPTO_ROOTS:
            raise UnsupportedFormatError(_NOT_USPTO, filename=name)
        if count > limits.max_xml_elements:
            raise FileTooLargeError(
                f"this XML has more than {limits.max_xml_elements:,} elements, far more than any patent", filename=name
            )
        builder.start(tag, attrs)

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
        return builder.close()
    except expat.ExpatError as exc:
        _raise_if_out_of_memory(exc)
        if count == 0:  # not even a root element: nothing says this is patent XML
            raise UnsupportedFormatError(_NOT_USPTO, filename=name) from None
        raise CorruptFileError(f"the XML is not well-formed (error near line {exc.lineno})", filename=name) from None
    except ValueError:  # pyexpat: "multi-byte encodings are not supported" (e.g. a declared Shift_JIS)
        raise UnsupportedFormatError(
            "this XML declares a text encoding that cannot be read here; save it as UTF-8 or UTF-16", filename=name
        ) from None


def _raise_if_out_of_memory(exc: "expat.ExpatError") -> None:
    """Expat reports a failed allocation as a parse error: make it the MemoryError it is (not 'damaged')."""
    if getattr(exc, "code", None) == expat.errors.codes.get(expat.errors.XML_ERROR_NO_MEMORY):
        raise MemoryError from None


def _extract_xml(data: bytes, name: str, limits: IngestLimits) -> _Extracted:
    root = _parse_uspto(data, name, limits)
    text, paragraphs, title = uspto_to_text(root)
    _check_chars(len(text), name, limits)
    return _Extracted(text, "uspto-xml", "utf-8", tuple(paragraphs), title,
                      ("Read USPTO patent XML: title, abstract, claims (one per paragraph) and description",))


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


_INLINE_WRAPPED = frozenset({"claim-text", "li", "tables", "maths"})  # set off by spaces from their neighbours
_INLINE_DROPPED = frozenset({"img", "figure", "drawings"})
_TABLE_TAGS = frozenset({"tables", "table"})
_CHEMISTRY_TAGS = frozenset({"chemistry", "chem"})


class _TextSink:
    """Pieces of text, remembering where the last non-blank one is (for the empty-chemistry placeholder)."""

    __slots__ = ("parts", "last_text")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.last_text = -1

    def write(self, piece: str | None) -> None:
        if piece:
            self.parts.append(piece)
            if not piece.isspace():
                self.last_text = len(self.parts) - 1


class _TableText:
    """The table being flattened: finished rows, the current row's cells and the current cell's text."""

    __slots__ = ("rows", "cells", "cell")

    def __init__(self) -> None:
        self.rows: list[str] = []
        self.cells: list[str] | None = None
        self.cell: _TextSink | None = None


def _inline(elem: ET.Element) -> str:
    """Text of an element with inline markup flattened; tables and image-only chemistry get placeholders.

    Walks the tree with an explicit stack, writing each piece of text once, so a 100,000-deep tree
    neither recurses (it raised RecursionError at 2,000) nor costs quadratic time or memory.
    Tables become `[TABLE] cell | cell / row [/TABLE]` (a table nested inside a cell is read as text
    of that cell); chemistry without any text becomes `[CHEMISTRY]`; images and drawings are dropped.
    """
    sink = _TextSink()
    table: _TableText | None = None
    muted = 0  # > 0 inside a dropped element that is walked only to see whether it holds text
    chemistry_open = 0
    texts_seen = 0  # non-blank text nodes met so far: a chemistry element that saw none is an image

    def target() -> _TextSink | None:  # None: nothing is written here (muted, or a table outside its cells)
        if muted:
            return None
        return sink if table is None else table.cell

    def seen(piece: str | None) -> None:
        nonlocal texts_seen
        if piece and not piece.isspace():
            texts_seen += 1

    # ("open", element, wrapped, None) or ("close", element, wrapped, (kind, chemistry mark))
    stack: list[tuple[str, ET.Element, bool, tuple | None]] = [("open", elem, False, None)]
    while stack:
        action, e, wrapped, info = stack.pop()
        if action == "open":
            out = target()
            if wrapped and out is not None:
                out.write(" ")
            tag, kind, mark = e.tag, "plain", None
            in_table_frame = table is not None and table.cell is None and not muted
            if muted:
                pass
            elif tag in _INLINE_DROPPED and not in_table_frame:
                # Skipped, unless an open chemistry element must know whether there is text inside.
                kind = "muted" if chemistry_open else "dropped"
                muted += kind == "muted"
            elif table is None and tag in _TABLE_TAGS:
                table, kind = _TableText(), "table"
            elif in_table_frame:  # the frame of a table: only rows and their cells are read
                if tag == "row" and table.cells is None:
                    table.cells, kind = [], "row"
                elif tag == "entry" and table.cells is not None:
                    table.cell, kind = _TextSink(), "cell"
            elif tag in _CHEMISTRY_TAGS and out is not None:
                kind, mark = "chemistry", (out, len(out.parts), out.last_text, texts_seen)
                chemistry_open += 1
            stack.append(("close", e, wrapped, (kind, mark)))
            if kind != "dropped":
                seen(e.text)
                inner = target()
                if inner is not None:
                    inner.write(e.text)
                stack.extend(("open", child, child.tag in _INLINE_WRAPPED, None) for child in reversed(e))
            continue
        kind, mark = info
        if kind == "muted":
            muted -= 1
        elif kind == "table":
            rendered = "[TABLE] " + " / ".join(r for r in table.rows if r) + " [/TABLE]"
            table = None
            target().write(rendered)
        elif kind == "row":
            table.rows.append(" | ".join(c for c in table.cells if c))
            table.cells = None
        elif kind == "cell":
            table.cells.append(_squash("".join(table.cell.parts)))
            table.cell = None
        elif kind == "chemistry":
            chemistry_open -= 1
            out, start, last_text, seen_before = mark
            if texts_seen == seen_before:  # no text anywhere inside: the formula is an image
                del out.parts[start:]
                out.last_text = last_text
                out.write("[CHEMISTRY]")
        if e is not elem:
            seen(e.tail)
        out = target()
        if out is not None:
            if wrapped:
                out.write(" ")
            if e is not elem:
                out.write(e.tail)
    return "".join(sink.parts)


def _outermost(elem: ET.Element, tag: str) -> Iterator[ET.Element]:
    """Descendants named `tag` that are not inside another one, in document order, without recursion."""
    stack = list(reversed(elem))
    while stack:
        e = stack.pop()
        if e.tag == tag:
            yield e
        else:
            stack.extend(reversed(e))


def uspto_to_text(root: ET.Element) -> tuple[str, list[Paragraph], str | None]:
    """USPTO grant/application XML laid out like the corpus .txt files, with paragraph spans.

    Linear in the size of the tree: every element's text is read once (an abstract <p> nested in
    another <p> is read as part of the outer one) and offsets are kept as a running total.
    """
    out: list[str] = []
    spans: list[Paragraph] = []
    pos = 0

    def emit(line: str, label: str | None = None) -> None:
        nonlocal pos
        out.append(line + "\n")
        if label is not None:
            spans.append(Paragraph(pos, pos + len(line), label))
        pos += len(line) + 1

    doc_id = root.find("./*/publication-reference/document-id")
    if doc_id is not None:
        number = "".join((doc_id.findtext(t) or "").strip() for t in ("country", "doc-number", "kind"))
        emit(number)
        if doc_id.findtext("date"):
            emit(f"Publication date: {doc_id.findtext('date').strip()}")
    title_el = root.find(".//invention-title")
    title = _squash(_inline(title_el)) if title_el is not None else None
    if title:
        start = pos + len("Title: ")
        emit(f"Title: {title}")
        spans.append(Paragraph(start, start + len(title), "Title"))

    abstract = root.find("abstract")
    if abstract is not None:
        emit("")
        emit("ABSTRACT")
        for p in _outermost(abstract, "p"):
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
    """Headings, numbered paragraphs and tables of the description, in order; other containers are entered
    (with an explicit stack: a deeply nested description must not recurse)."""
    stack = [iter(elem)]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
        elif child.tag == "heading":
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
            stack.append(iter(child))


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
