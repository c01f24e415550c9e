"""The document every stage works on: text plus the structure ingestion could recover."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Paragraph:
    """A span of `Document.text` that ingestion knows is a unit (a numbered patent paragraph, a PDF page block…)."""

    start: int
    end: int
    label: str | None = None  # e.g. "[0001]", "Claims", "ABSTRACT"
    page: int | None = None  # 1-based PDF page where the paragraph starts


@dataclass(frozen=True)
class Document:
    name: str
    text: str
    language: str  # "ja" | "en"
    sha256: str  # of the original bytes (identifies the upload)
    encoding: str | None = None  # encoding used to decode a text file
    source_format: str = "txt"  # txt, md, html, pdf, docx, uspto-xml, aozora
    paragraphs: tuple[Paragraph, ...] = field(default_factory=tuple)
    title: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)  # what ingestion did, shown to the user

    @property
    def chars(self) -> int:
        return len(self.text)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def document_from_text(text: str, name: str = "text.txt", language: str | None = None) -> Document:
    """A document from a string already in memory (tests, pasted text)."""
    from .language import detect_language

    return Document(
        name=name,
        text=text,
        language=language or detect_language(text),
        sha256=sha256_hex(text.encode("utf-8")),
        encoding="utf-8",
    )
