"""Typed errors: every failure a user can cause has a class and a message a reviewer understands."""
from __future__ import annotations


class ChumokuError(Exception):
    """Base of all errors the engine raises on purpose; `message` is safe to show in the UI."""

    code = "error"

    def __init__(self, message: str, *, filename: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.filename = filename

    def __str__(self) -> str:
        return f"{self.filename}: {self.message}" if self.filename else self.message


class IngestError(ChumokuError):
    """A file could not be turned into a document."""

    code = "ingest"


class EmptyDocumentError(IngestError):
    code = "empty"


class UnsupportedFormatError(IngestError):
    code = "unsupported_format"


class EncodingDetectionError(IngestError):
    code = "encoding"


class FileTooLargeError(IngestError):
    code = "too_large"


class CorruptFileError(IngestError):
    code = "corrupt"


class EncryptedFileError(IngestError):
    code = "encrypted"


class UnsafeFileError(IngestError):
    """A file built to exhaust memory (zip bomb, XML entity expansion): refused before it is parsed."""

    code = "unsafe"


class NoTextLayerError(IngestError):
    """A scanned PDF: the reviewer must run OCR first."""

    code = "needs_ocr"


class IngestTimeoutError(IngestError):
    """Reading the file took longer than allowed: it was stopped so other work on the server is not affected."""

    code = "ingest_timeout"


class IngestMemoryError(IngestError):
    """Reading the file needed more memory than allowed: it was stopped so other work on the server is not affected."""

    code = "ingest_memory"


class ModelLoadError(ChumokuError):
    code = "model"


class ModelConversionError(ModelLoadError):
    """A bundled model file could not be converted into a Hugging Face folder (corrupt, truncated, disk full)."""

    code = "model_conversion"


class QueryError(ChumokuError):
    """An empty query, or one the model cannot read."""

    code = "query"


class SettingsError(ChumokuError):
    """A reading setting the model cannot honour (an unknown method, layer 99 of a 6-layer model…)."""

    code = "settings"


class CancelledError(ChumokuError):
    """The reviewer stopped a long run; every finished chunk is kept in the cache, so a rerun resumes."""

    code = "cancelled"
