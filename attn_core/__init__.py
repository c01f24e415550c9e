"""Chumoku's engine: long Japanese/English documents → word and passage attention scores.

ingest → chunk → model → attention reduction → word/passage scores → render/export. No Streamlit here.

The names below are imported on first use (PEP 562 module `__getattr__`), not when the package is: torch
and transformers take seconds to import, and `python -m attn_core --help`, a cached answer or an ingest
worker must not pay for them. `import attn_core as ac; ac.Reader` and `from attn_core import Reader` work
as before; a submodule (`ac.render`) is imported when first named.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

# public name -> the submodule that defines it
_EXPORTS: dict[str, tuple[str, ...]] = {
    "analysis": ("ChunkAttention", "analyze", "chunk_attention"),
    "cache": ("ResultStore", "data_dir", "default_store"),
    "claims": ("Claim", "Query", "extract_claims", "make_query", "split_elements", "without_claims"),
    "document": ("Document", "Paragraph", "document_from_text"),
    "errors": ("CancelledError", "ChumokuError", "CorruptFileError", "EmptyDocumentError", "EncodingDetectionError",
        "EncryptedFileError", "FileTooLargeError", "IngestError", "ModelLoadError", "NoTextLayerError",
        "QueryError", "SettingsError", "UnsafeFileError", "UnsupportedFormatError",),
    "faithfulness": ("Faithfulness", "measure_faithfulness"),
    "guided": ("guided_analyze", "guided_elements"),
    "ingest": ("SUPPORTED_EXTENSIONS", "IngestLimits", "ingest_bytes", "ingest_path", "nfkc_with_map"),
    "language": ("detect_language",),
    "models": ("AUTO_MODEL_ID", "DEFAULT_MODEL_ID", "MULTILINGUAL_MODEL_ID", "RECOMMENDED_MODELS", "LoadedModel",
        "RecommendedModel", "default_model_for", "load_model", "recommended_for", "resolve_model_id",),
    "progress": ("Cancel", "Progress"),
    "reader": ("Reader", "validate_settings"),
    "results": ("HEAD_CHOICES", "LAYER_CHOICES", "METHODS", "AnalysisResult", "ChunkInfo", "Method", "ModelInfo", "ModelKind", "Passage", "QueryMode", "QueryRun",
        "Settings", "TokenScore", "WordScore",),
    "retrieval": ("ElementMatch", "PassageIndex", "RankedDocument", "RankedPassage", "chart_column", "claim_chart_cells",
        "claim_chart_csv", "claim_chart_rows", "index_documents", "rank_documents",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

if TYPE_CHECKING:  # static analysers see the eager imports; at run time they are lazy
    from .analysis import ChunkAttention, analyze, chunk_attention
    from .cache import ResultStore, data_dir, default_store
    from .claims import Claim, Query, extract_claims, make_query, split_elements, without_claims
    from .document import Document, Paragraph, document_from_text
    from .errors import (
        CancelledError,
        ChumokuError,
        CorruptFileError,
        EmptyDocumentError,
        EncodingDetectionError,
        EncryptedFileError,
        FileTooLargeError,
        IngestError,
        ModelLoadError,
        NoTextLayerError,
        QueryError,
        SettingsError,
        UnsafeFileError,
        UnsupportedFormatError,
    )
    from .faithfulness import Faithfulness, measure_faithfulness
    from .guided import guided_analyze, guided_elements
    from .ingest import SUPPORTED_EXTENSIONS, IngestLimits, ingest_bytes, ingest_path, nfkc_with_map
    from .language import detect_language
    from .models import (
        AUTO_MODEL_ID,
        DEFAULT_MODEL_ID,
        MULTILINGUAL_MODEL_ID,
        RECOMMENDED_MODELS,
        LoadedModel,
        RecommendedModel,
        default_model_for,
        load_model,
        recommended_for,
        resolve_model_id,
    )
    from .progress import Cancel, Progress
    from .reader import Reader, validate_settings
    from .results import (
        HEAD_CHOICES,
        LAYER_CHOICES,
        METHODS,
        AnalysisResult,
        ChunkInfo,
        Method,
        ModelInfo,
        ModelKind,
        Passage,
        QueryMode,
        QueryRun,
        Settings,
        TokenScore,
        WordScore,
    )
    from .retrieval import (
        ElementMatch,
        PassageIndex,
        RankedDocument,
        RankedPassage,
        chart_column,
        claim_chart_cells,
        claim_chart_csv,
        claim_chart_rows,
        index_documents,
        rank_documents,
    )


def __getattr__(name: str) -> Any:
    """Import the submodule that defines `name` on first use and cache the value in the package."""
    module = _WHERE.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)  # a submodule, e.g. ac.render
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
    "AnalysisResult", "ChumokuError", "ChunkAttention", "ChunkInfo", "CorruptFileError", "DEFAULT_MODEL_ID",
    "Document", "EmptyDocumentError", "EncodingDetectionError", "EncryptedFileError", "FileTooLargeError",
    "HEAD_CHOICES", "IngestError", "IngestLimits", "SUPPORTED_EXTENSIONS", "UnsafeFileError", "ingest_bytes",
    "ingest_path", "nfkc_with_map", "LAYER_CHOICES", "LoadedModel", "METHODS", "ModelInfo", "ModelLoadError",
    "NoTextLayerError", "Paragraph", "Passage", "QueryError", "RECOMMENDED_MODELS", "RecommendedModel",
    "ResultStore", "Settings", "TokenScore", "UnsupportedFormatError", "WordScore", "analyze",
    "chunk_attention", "data_dir", "default_store", "detect_language", "document_from_text", "load_model",
    "recommended_for",
    "Claim", "Query", "extract_claims", "make_query", "split_elements", "without_claims", "guided_analyze",
    "guided_elements", "ElementMatch", "PassageIndex", "RankedDocument", "RankedPassage", "claim_chart_csv",
    "claim_chart_rows", "index_documents", "rank_documents", "Faithfulness", "measure_faithfulness",
    "CancelledError", "SettingsError", "Cancel", "Progress", "Reader", "validate_settings", "Method", "ModelKind",
    "QueryMode", "QueryRun", "chart_column", "claim_chart_cells", "AUTO_MODEL_ID", "MULTILINGUAL_MODEL_ID",
    "default_model_for", "resolve_model_id",
]
