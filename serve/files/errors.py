"""What can go wrong with an uploaded document or a stored file; each carries a message for the client.

``FileError`` and its subclasses are the client's fault: the route answers 400 ``{"error": str(e)}``.
``StoredFileNotFound`` is a download of an unknown or expired name: 404.
"""

from __future__ import annotations


class FileError(ValueError):
    """A document the service will not translate (400)."""


class UnsupportedFileType(FileError):
    """The file name's extension is not one of the supported formats."""


class FileTooLarge(FileError):
    """Over the byte, character or unpacked-size limit."""


class CorruptFile(FileError):
    """The bytes are not a valid document of the type its name says (bad .docx, non-UTF-8 text, bad .srt)."""


class InvalidFileName(FileError):
    """A download name that could escape the store (``..``, ``/``) or was never made by it."""


class StoredFileNotFound(KeyError):
    """No such translated file, or it expired (404)."""

    def __str__(self) -> str:  # KeyError's str() quotes its argument
        return str(self.args[0]) if self.args else "file not found"
