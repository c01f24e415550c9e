"""Small bundled documents with clear licences, so a demo needs no upload (see sample_data/SOURCES.md)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .document import Document
from .ingest import ingest_path

SAMPLE_DIR = Path(__file__).with_name("sample_data")


@dataclass(frozen=True)
class Sample:
    file: str
    title: str
    language: str
    licence: str


SAMPLES: tuple[Sample, ...] = (
    Sample("US08930553B2.txt", "US 8,930,553 B2 · SIP mid-dialog messages (patent, English)", "en",
           "public domain (US Government work)"),
    Sample("ja_patent_excerpt_JP2020151139A_llmjp.txt", "特開2020-151139 抄録・請求項 (patent, Japanese)", "ja",
           "CC BY 4.0, LLM-jp Corpus Building WG"),
    Sample("ja_patent_act_art29.txt", "特許法 第二十九条 (statute, Japanese)", "ja",
           "public domain (著作権法第13条)"),
)


def sample_documents() -> list[Document]:
    return [ingest_path(SAMPLE_DIR / s.file) for s in SAMPLES]
