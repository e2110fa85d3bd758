"""What the library raises on purpose; each message says why in one sentence."""

from __future__ import annotations


class LibraryError(ValueError):
    """A library request that cannot be done as asked; the message says why in one sentence."""


class QueryError(LibraryError):
    """A search query that cannot be run (empty, unknown emotion or style, unreadable query image...)."""


class LabelsError(LibraryError):
    """A labels CSV / manifest that cannot be used (the message names the file, row and problem)."""
