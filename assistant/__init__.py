"""kommune-assistent: cited answers from Norwegian municipal documents.

    from assistant import Assistant
    bot = Assistant.open("index")
    bot.index(["corpus"])
    print(bot.ask("Hvordan kom den nye søknaden om sosialhjelp i stand?").text)

Importing this package loads no model and touches no file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (AssistantError, IndexCorruptError, IndexLockedError, IndexMismatchError,
                     MissingExtraError, QuestionError, ReadError)
from .settings import Settings
from .types import Answer, Chunk, Citation, Document, Hit, IndexReport, Section, Skipped

if TYPE_CHECKING:
    from .core import Assistant, IndexInfo

__all__ = [
    "Assistant", "IndexInfo", "Settings",
    "Answer", "Chunk", "Citation", "Document", "Hit", "IndexReport", "Section", "Skipped",
    "AssistantError", "IndexCorruptError", "IndexLockedError", "IndexMismatchError", "MissingExtraError",
    "QuestionError", "ReadError",
]


def __getattr__(name: str) -> Any:
    # `Assistant` pulls in numpy and FAISS; import it on first use, not with the package.
    if name in ("Assistant", "IndexInfo"):
        from . import core

        return getattr(core, name)
    raise AttributeError(f"module 'assistant' has no attribute {name!r}")
