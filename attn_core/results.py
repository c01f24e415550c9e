"""What an analysis returns: plain data the dashboard, the exports and the CLI all read."""
from __future__ import annotations

import enum
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .document import Document
from .errors import SettingsError

if TYPE_CHECKING:
    from .faithfulness import Faithfulness


class Method(enum.StrEnum):
    """How attention is reduced to one score per token (METHODS below describes each)."""

    RECEIVED = "received"
    NORM = "norm"
    CLS = "cls"
    MAX = "max"
    ROLLOUT = "rollout"
    QUERY = "query"  # query-guided reading (guided.py): the attention the query pays each token


# The reductions a user can pick, described (here, not in attention.py, so the sidebar and the CLI's parser
# can list them without importing torch).
METHODS: dict[Method, str] = {
    Method.RECEIVED: "Attention received: mean over queries of each token's column (sinks removed)",
    Method.NORM: "Norm-weighted received: each head's weight times ||v·W_O|| (Kobayashi et al. 2020)",
    Method.CLS: "[CLS] row: what the first token (last token for causal models) attends to",
    Method.MAX: "Max: the strongest attention any query pays to the token",
    Method.ROLLOUT: "Attention rollout across all layers (Abnar & Zuidema 2020)",
}
LAYER_CHOICES = ("last", "all")
HEAD_CHOICES = ("mean", "max")


class Runtime(enum.StrEnum):
    """What runs the analysis forward pass (runtime.py); named here so the CLI parser needs no torch."""

    AUTO = "auto"  # fp32 ONNX Runtime once its export is verified against torch, torch until then
    TORCH = "torch"
    ONNX = "onnx"  # fp32
    ONNX_INT8 = "onnx-int8"  # dynamic int8 quantisation of the fp32 export

    @classmethod
    def parse(cls, value: "str | Runtime") -> "Runtime":
        """SettingsError for a name that is not a runtime."""
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise SettingsError(f"unknown runtime {str(value)[:20]!r}: use one of "
                                f"{', '.join(r.value for r in cls)}") from None

    @classmethod
    def default(cls) -> "Runtime":
        """$CHUMOKU_RUNTIME (a server's choice for every session), else auto."""
        return cls.parse(os.environ.get("CHUMOKU_RUNTIME", "").strip() or cls.AUTO)

    @classmethod
    def chosen(cls, value: "str | Runtime | None") -> "Runtime":
        """The runtime asked for (--runtime, a session's pick), else the server's default: None or "" asks
        for none."""
        return cls.parse(value) if value else cls.default()


class ModelKind(enum.StrEnum):
    """What a model is, which decides how it is read and how faithfulness is measured."""

    ENCODER = "encoder"
    CAUSAL = "causal"
    CLASSIFIER = "classifier"


class QueryMode(enum.StrEnum):
    """How a query was read against a document."""

    WHOLE = "whole"  # the whole query in one pass
    ELEMENTS = "elements"  # one pass per claim element, combined by max
    ELEMENT = "element"  # one chosen element


@dataclass(frozen=True)
class Settings:
    """How attention is reduced to one score per token. Part of every cache key."""

    method: Method = Method.RECEIVED  # see METHODS
    layer: str | int = "last"  # "last" | "all" | layer index
    head: str | int = "mean"  # "mean" | "max" | head index
    drop_special: bool = True  # exclude [CLS]/[SEP]/BOS/padding and renormalise
    chunk_tokens: int | None = None  # None: the model's own budget
    overlap: int = 32  # tokens shared by neighbouring chunks

    def key(self) -> str:
        return repr(sorted((k, str(v) if isinstance(v, enum.Enum) else v) for k, v in asdict(self).items()))


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
    section: str | None = None  # sections.Section: a patent's part (summary, claim…), else body/heading/title…
    element: int | None = None  # query mode: the claim element this passage answers best (0-based)


def _passage_json(p: Passage) -> dict[str, Any]:
    out: dict[str, Any] = {"start": p.start, "end": p.end, "score": round(p.score, 6), "rank": p.rank,
                           "label": p.label, "page": p.page}
    if p.section is not None:
        out["section"] = p.section
    if p.element is not None:
        out["element"] = p.element
    return out


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
    kind: ModelKind
    device: str
    fallback_reason: str | None = None
    max_tokens: int = 512
    # How the model was trained to be read (models.model_profile): E5 models expect "query: " before a
    # query and "passage: " before a document; "" for models without prefixes.
    query_prefix: str = ""
    passage_prefix: str = ""
    attribution: str | None = None  # model, authors and licence, shown wherever its scores are (MIT for e5)


def document_json(d: Document) -> dict[str, Any]:
    """The "document" block of the JSON contract."""
    return {"name": d.name, "sha256": d.sha256, "language": d.language, "chars": d.chars, "encoding": d.encoding,
            "format": d.source_format}


@dataclass(frozen=True)
class QueryRun:
    """How a query-guided reading was run: the query, its passes and the token budget they left."""

    text: str
    elements: tuple[str, ...]
    language: str
    mode: QueryMode
    element: int | None  # the element read alone (mode ELEMENT)
    combine: str | None  # how several passes were combined ("max"), None for one pass
    passes: tuple[str, ...]  # the text of each pass
    query_tokens: tuple[int, ...]  # tokens of each pass
    document_tokens_per_chunk: int
    truncated: bool  # a pass was cut to the query's share of the window
    ranking: str = "attention"  # what ranks the passages: "attention" or "relevance" (see relevance.py)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["elements"], d["passes"], d["query_tokens"] = list(self.elements), list(self.passes), list(self.query_tokens)
        d["mode"] = str(self.mode)
        return d


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
    query: QueryRun | None = None  # set for a query-guided reading
    faithfulness: "Faithfulness | None" = None  # set once the deletion test was asked for

    def read_first(self, k: int | None = None) -> list[Passage]:
        ranked = sorted(self.passages, key=lambda p: p.rank)
        return ranked if k is None else ranked[:k]

    def to_json(self) -> dict[str, Any]:
        """The CLI/export contract (see the engine issue)."""
        out: dict[str, Any] = {
            "document": document_json(self.document),
            "model": {
                "id": self.model.id,
                "identity": self.model.identity,
                "kind": str(self.model.kind),
                "device": self.model.device,
                "fallback_reason": self.model.fallback_reason,
                **({"attribution": self.model.attribution} if self.model.attribution else {}),
            },
            "settings": {k: str(v) if isinstance(v, enum.Enum) else v for k, v in asdict(self.settings).items()},
            "words": [
                {"text": w.text, "start": w.start, "end": w.end, "score": round(w.score, 6), "raw": w.raw}
                for w in self.words
            ],
            "passages": [_passage_json(p) for p in self.passages],
            "unk_rate": self.unk_rate,
            "chunks": len(self.chunks),
        }
        if self.label is not None:
            out["label"] = self.label
            out["probability"] = self.probability
            out["chunk_labels"] = [
                {"index": c.index, "label": c.label, "probability": c.probability} for c in self.chunks
            ]
        if self.query is not None:
            out["query"] = self.query.to_json()
        if self.faithfulness is not None:
            out["faithfulness"] = self.faithfulness.to_json()
        return out
