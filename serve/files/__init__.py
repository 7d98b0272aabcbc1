"""Document translation for ``/translate_file`` (.txt, .html, .srt, .docx) and the store of translated files.

Route wiring: ``parse_document`` (FileError -> 400), translate ``unique_texts``, ``render_unique``;
``stored_name`` + ``FileStore.put``; ``GET /download_file/<name>``: ``FileStore.get`` (InvalidFileName -> 400,
StoredFileNotFound -> 404) sent as an attachment named ``download_name(name)``.
"""

from serve.files.documents import (
    SUPPORTED_EXTENSIONS,
    Limits,
    parse_document,
    render_unique,
    request_cost,
    translate_document,
    unique_texts,
)
from serve.files.errors import (
    CorruptFile,
    FileError,
    FileTooLarge,
    InvalidFileName,
    StoredFileNotFound,
    UnsupportedFileType,
)
from serve.files.filestore import (
    DEFAULT_TTL,
    FileStore,
    LocalFileStore,
    RedisFileStore,
    check_name,
    download_name,
    open_file_store,
    stored_name,
)
from serve.files.plain import Document

__all__ = [
    "DEFAULT_TTL", "SUPPORTED_EXTENSIONS", "CorruptFile", "Document", "FileError", "FileStore", "FileTooLarge",
    "InvalidFileName", "Limits", "LocalFileStore", "RedisFileStore", "StoredFileNotFound", "UnsupportedFileType",
    "check_name", "download_name", "open_file_store", "parse_document", "render_unique", "request_cost",
    "stored_name", "translate_document", "unique_texts",
]  # fmt: skip
