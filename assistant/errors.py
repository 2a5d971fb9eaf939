"""Errors the library raises. Each carries a one-line message fit for a user."""

from __future__ import annotations


class AssistantError(Exception):
    """Base class: the CLI prints these as one line, `Error: ...`, without a traceback."""


class ReadError(AssistantError):
    """A file could not be turned into a document. The message is the one-line reason."""


class IndexMismatchError(AssistantError):
    """The index on disk was built with other settings (model, format, chunking)."""


class IndexLockedError(AssistantError):
    """Another process is writing this index."""


class IndexCorruptError(AssistantError):
    """The index store cannot be read; it must be rebuilt."""


class MissingExtraError(AssistantError):
    """An optional dependency is not installed; the message names the pip command."""


class QuestionError(AssistantError):
    """A question that cannot be answered as asked (empty, too long)."""


class IndexWriteError(AssistantError):
    """Writing the index failed (disk full, quota); the previous index is intact."""
