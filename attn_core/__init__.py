"""Chumoku's engine: long Japanese/English documents → word and passage attention scores.

ingest → chunk → model → attention reduction → word/passage scores → render/export. No Streamlit here.
"""
from .analysis import ChunkAttention, analyze, chunk_attention
from .attention import HEAD_CHOICES, LAYER_CHOICES, METHODS
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
