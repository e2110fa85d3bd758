"""Every error facecast.serving raises on purpose, in two families.

* :class:`TritonServerError`: running a local server went wrong (its environment, ports, model loading, stopping).
* :class:`TritonError`: a model client could not get an answer (no endpoint reachable, model missing, model error).

Both carry a message fit for a user; the CLI maps each class to one exit code (facecast.cli).
"""

from __future__ import annotations

from pathlib import Path


class TritonServerError(RuntimeError):
    """Base of everything this module raises on purpose. `summary` is one line, fit for a CLI error message."""

    @property
    def summary(self) -> str:
        return str(self).splitlines()[0] if str(self) else type(self).__name__


class TritonEnvironmentMissing(TritonServerError):
    """The server's virtualenv is missing or unusable (no tritonserver, no stub for its Python, numpy 2, ...)."""


class PortInUse(TritonServerError):
    """A port the server needs is already taken on the host it would bind."""

    def __init__(self, message: str, *, port: int, owner_pid: int | None = None):
        super().__init__(message)
        self.port = port
        self.owner_pid = owner_pid


class TritonStartError(TritonServerError):
    """The server exited, or a model failed to load, before it became ready.

    The message holds the server's own error lines (`failed to load 'X' version 1: ...`, the UNAVAILABLE rows of
    its model table, `failed to start ... service`) and the full path of its log.
    """

    def __init__(self, headline: str, *, log_path: Path, server_lines: list[str], returncode: int | None = None):
        self.headline = headline
        self.log_path = Path(log_path)
        self.server_lines = list(server_lines)
        self.returncode = returncode
        body = "\n".join(f"  {line}" for line in self.server_lines)
        super().__init__(f"{headline}\nserver log: {self.log_path}" + (f"\n{body}" if body else ""))

    @property
    def summary(self) -> str:
        return f"{self.headline} (server log: {self.log_path})"


class TritonStartTimeout(TritonStartError, TimeoutError):
    """The server was still not ready after the timeout (it has been stopped)."""


class ModelRepositoryMissing(TritonServerError):
    """The model repository directory does not exist (nothing was started)."""


class ServerNotRunning(TritonServerError):
    """`stop` found no server of ours on that port."""


class TritonError(RuntimeError):
    """Base of the errors a model client raises: the server is unreachable, a model is missing, or it failed."""


class TritonUnavailable(TritonError):
    """No configured Triton endpoint answered; the message says which were tried and how to start one."""


class ModelUnavailable(TritonError):
    """Triton answers but the model is missing or not ready."""


class InferenceFailed(TritonError):
    """Triton took the request but the model returned an error (its message is kept)."""


class ModelLoadFailed(TritonError):
    """Triton refused to (re)load a model (e.g. a new version of it); the message carries the server's reason."""
