"""The one table from what went wrong to the exit code a script sees.

  0  done
  1  unavailable: something facecast needs is missing or broken (Triton down, a model not loaded, the store file
     locked or unreadable, the server environment, a bad FACECAST_* setting); retry once it is there
  2  bad input: the input cannot be used as given (a file that is not a usable image or video, an unknown style,
     an empty query, bad arguments: argparse uses 2 too); nothing was done with it
  3  not ready: `status` found no ready server
  4  partial: some inputs were done and some failed; each failure is printed with its reason
130  interrupted (Ctrl-C): nothing half-stored
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_UNAVAILABLE = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_READY = 3
EXIT_PARTIAL = 4
EXIT_INTERRUPTED = 130


class UsageError(ValueError):
    """A command asked for something it cannot do as given (no files in a folder, a missing option)."""


def error_classes() -> tuple[tuple[tuple[type[BaseException], ...], int], ...]:
    """(error classes, exit code), most specific first; imported lazily so `facecast --help` stays fast."""
    from facecast.clients.embedders import QueryError as EmbeddingQueryError
    from facecast.config import ConfigError
    from facecast.library.errors import LibraryError
    from facecast.library.feedback import FeedbackError
    from facecast.mapping import MappingInputError
    from facecast.media.images import ImageDecodeError
    from facecast.media.video import AnalysisCancelled, MediaError
    from facecast.serving.errors import TritonError, TritonServerError
    from facecast.store.backup import BackupError
    from facecast.store.engagement_models import ModelNotActivatable
    from facecast.store.errors import StoreError
    from facecast.tokenizer import QueryTextError, TokenizerMissing

    return (
        ((AnalysisCancelled,), EXIT_INTERRUPTED),
        ((TritonError, TritonServerError, StoreError, TokenizerMissing, ConfigError), EXIT_UNAVAILABLE),
        (
            (
                UsageError,
                MediaError,
                ImageDecodeError,
                MappingInputError,
                LibraryError,
                FeedbackError,
                QueryTextError,
                EmbeddingQueryError,
                BackupError,
                ModelNotActivatable,
            ),
            EXIT_BAD_INPUT,
        ),
    )


def exit_code_for(error: BaseException) -> int | None:
    """The exit code of an error facecast raises on purpose; None for anything else (a bug: let it show)."""
    for classes, code in error_classes():
        if isinstance(error, classes):
            return code
    return None


def outcome(done: int, failed: int) -> int:
    """Exit code of a command over several inputs: all done, some failed, or nothing could be done."""
    if failed == 0:
        return EXIT_OK
    return EXIT_PARTIAL if done else EXIT_BAD_INPUT
