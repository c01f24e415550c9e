"""What an analysis returns: plain data the dashboard, the exports and the CLI all read."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .document import Document


@dataclass(frozen=True)
class Settings:
    """How attention is reduced to one score per token. Part of every cache key."""

    method: str = "received"  # see attention.METHODS
    layer: str | int = "last"  # "last" | "all" | layer index
    head: str | int = "mean"  # "mean" | "max" | head index
    drop_special: bool = True  # exclude [CLS]/[SEP]/BOS/padding and renormalise
    chunk_tokens: int | None = None  # None: the model's own budget
    overlap: int = 32  # tokens shared by neighbouring chunks

    def key(self) -> str:
        return repr(sorted(asdict(self).items()))


@dataclass(slots=True)  # tens of thousands per document: slots, and no frozen-init cost
class TokenScore:
    text: str  # the model's token, e.g. "##ing", "[UNK]"
    start: int  # character span in Document.text
    end: int
    score: float  # raw reduced attention (renormalised within its chunk)
    chunk: int  # chunk the score was taken from
    unk: bool = False


@dataclass(slots=True)
class WordScore:
    text: str  # == document.text[start:end]
    start: int
    end: int
    score: float  # percentile within the document, 0..1
    raw: float  # max raw score of the word's tokens


@dataclass(frozen=True)
class Passage:
    start: int
    end: int
    score: float  # 0..1, see scoring.passage_score
    rank: int  # 1 = read first
    label: str | None = None  # "[0001]" when the text numbers its paragraphs
    page: int | None = None


@dataclass(frozen=True)
class ChunkInfo:
    index: int
    start: int  # character span of the chunk's tokens
    end: int
    core_start: int  # the characters whose scores come from this chunk
    core_end: int
    n_tokens: int
    label: str | None = None  # classifier models only
    probability: float | None = None


@dataclass(frozen=True)
class ModelInfo:
    id: str  # what was asked for, or the offline default
    identity: str  # id + weights hash: what caches are keyed on
    kind: str  # "encoder" | "causal" | "classifier"
    device: str
    fallback_reason: str | None = None
    max_tokens: int = 512


@dataclass
class AnalysisResult:
    document: Document
    model: ModelInfo
    settings: Settings
    tokens: list[TokenScore]
    words: list[WordScore]
    passages: list[Passage]  # in text order; sort by rank for "read first"
    chunks: list[ChunkInfo]
    unk_rate: float
    label: str | None = None  # classifier models: document-level prediction
    probability: float | None = None
    cached_chunks: int = 0  # how many chunks came from the cache
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def read_first(self, k: int | None = None) -> list[Passage]:
        ranked = sorted(self.passages, key=lambda p: p.rank)
        return ranked if k is None else ranked[:k]

    def to_json(self) -> dict[str, Any]:
        """The CLI/export contract (see the engine issue)."""
        d = self.document
        out: dict[str, Any] = {
            "document": {
                "name": d.name,
                "sha256": d.sha256,
                "language": d.language,
                "chars": d.chars,
                "encoding": d.encoding,
                "format": d.source_format,
            },
            "model": {
                "id": self.model.id,
                "identity": self.model.identity,
                "kind": self.model.kind,
                "device": self.model.device,
                "fallback_reason": self.model.fallback_reason,
            },
            "settings": asdict(self.settings),
            "words": [
                {"text": w.text, "start": w.start, "end": w.end, "score": round(w.score, 6), "raw": w.raw}
                for w in self.words
            ],
            "passages": [
                {"start": p.start, "end": p.end, "score": round(p.score, 6), "rank": p.rank,
                 "label": p.label, "page": p.page}
                for p in self.passages
            ],
            "unk_rate": self.unk_rate,
            "chunks": len(self.chunks),
        }
        if self.label is not None:
            out["label"] = self.label
            out["probability"] = self.probability
            out["chunk_labels"] = [
                {"index": c.index, "label": c.label, "probability": c.probability} for c in self.chunks
            ]
        out.update(self.extra)
        return out
