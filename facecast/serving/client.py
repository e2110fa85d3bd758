"""Talking to Triton: one client per model, over one or more server endpoints (replicas), balanced and failing over.

The model's config (input names, dims, max_batch_size) is read from the server, so the client never hard-codes
shapes: the image size S of `expression_encoder` is whatever its config.pbtxt declares. Requests larger than the
model's max_batch_size are split; Triton's dynamic batcher merges small requests from many clients on its side.

Several endpoints (facecast.serving.endpoints.EndpointPool, shared by every client in the process):

* requests take turns over the endpoints (so traffic spreads evenly over equal replicas), passing over one whose
  requests in flight from this process pile up (a slow or stalled replica gets less work before it ever fails);
* a connection-level failure (refused, reset, closed mid-response, no answer within the per-try timeout) ejects
  the endpoint for a back-off that doubles with each failure, and the request is retried on another endpoint:
  inference is idempotent, so a retry can only cost time, never a double effect;
* an ejected endpoint gets traffic again only after it answers a readiness check (made in the background, once per
  back-off), so a dead replica costs one timeout, not one per call; with every endpoint gone the call fails with one
  TritonUnavailable naming each and why;
* a model error (bad input, the model raised) is not the endpoint's fault: it is raised at once, never retried.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException, np_to_triton_dtype, triton_to_np_dtype

from facecast.config import load_settings
from facecast.serving.endpoints import DEFAULT_POOL, EndpointPool, normalise_url
from facecast.serving.errors import InferenceFailed, ModelUnavailable, TritonUnavailable

T = TypeVar("T")

# A try that gets no answer in this long counts as a dead endpoint. The slowest single request facecast sends is a
# 64-frame detector batch, well under a second here even with three replicas sharing two cores; 15 s leaves room
# for a busy server without letting a stalled one (SIGSTOP, a hung GPU) hold a request for a minute.
DEFAULT_TRY_TIMEOUT_S = 15.0
# The whole call, all tries together: past this the user hears that Triton is unavailable (Settings.
# triton_deadline_s, FACECAST_TRITON_DEADLINE_S, 60 s by default).
CONNECT_TIMEOUT_S = 5.0


class EndpointFailure(Exception):
    """A try failed because of the endpoint (connection, timeout, server stopping), not because of the request."""


# Every error tritonclient's HTTP stack raises when the connection, not the request, fails: refused or reset sockets
# and timeouts (OSError, incl. TimeoutError), a server that closes the connection mid-response (geventhttpclient's
# HTTPConnectionClosed is an http.client.HTTPException), and gevent's own timeout (a BaseException, not an Exception).
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (OSError, http.client.HTTPException)
try:
    import gevent

    _CONNECTION_ERRORS += (gevent.Timeout,)
except ImportError:  # pragma: no cover - tritonclient[http] always brings gevent
    pass
# What a server says when it is the endpoint that cannot answer (starting, draining, stopping), not the request.
_ENDPOINT_MESSAGES = (
    "connection refused",
    "failed to connect",
    "connection reset",
    "timed out",
    "timeout",
    "unreachable",
    "broken pipe",
    "server is not ready",
    "server is stopping",
    "shutting down",
)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    dims: tuple[int, ...]  # without the batch axis


@dataclass(frozen=True)
class ModelSignature:
    name: str
    version: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    # SHA-256 of the weights the model's version 1 serves (export.triton_repository.WEIGHTS_PARAMETER); "" for a
    # repository exported before it existed
    weights_sha256: str = ""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelSignature:
        def specs(entries: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
            return tuple(
                TensorSpec(
                    e["name"],
                    np.dtype(triton_to_np_dtype(e["data_type"].removeprefix("TYPE_"))),
                    tuple(int(d) for d in e["dims"]),
                )
                for e in entries
            )

        weights = config.get("parameters", {}).get("weights_sha256", {}).get("string_value", "")
        return cls(
            config["name"],
            "",
            int(config.get("max_batch_size", 0)),
            specs(config["input"]),
            specs(config["output"]),
            weights,
        )


class TritonModelClient:
    """Inference on one Triton model over one or more endpoints (module docstring for how they are used).

    Thread-safe: each thread gets its own HTTP connection per endpoint (tritonclient's synchronous client is not
    thread-safe); the endpoints' health is shared by every client and thread of the process.
    """

    def __init__(
        self,
        model_name: str,
        urls: str | list[str] | tuple[str, ...],
        timeout_s: float = DEFAULT_TRY_TIMEOUT_S,
        deadline_s: float | None = None,
        pool: EndpointPool | None = None,
    ):
        self.model_name = model_name
        self.urls = [normalise_url(url) for url in ([urls] if isinstance(urls, str) else urls)]
        if not self.urls:
            raise ValueError("no Triton URL configured")
        self.timeout_s = timeout_s
        if deadline_s is None:
            deadline_s = load_settings().triton_deadline_s
        self.deadline_s = max(deadline_s, timeout_s)
        self.pool = pool or DEFAULT_POOL
        self._local = threading.local()
        self._signature: ModelSignature | None = None

    def _client(self, url: str) -> triton_http.InferenceServerClient:
        clients = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        if url not in clients:
            clients[url] = triton_http.InferenceServerClient(
                url, connection_timeout=min(self.timeout_s, CONNECT_TIMEOUT_S), network_timeout=self.timeout_s
            )
        return clients[url]

    def _forget_client(self, url: str) -> None:
        client = getattr(self._local, "clients", {}).pop(url, None)
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped either way
                pass

    def _on_some_endpoint(self, action: Callable[[triton_http.InferenceServerClient], T]) -> T:
        """Run action(client) on the best endpoint; on an endpoint failure eject it and try the next. When every
        endpoint has failed: if one of them answered earlier in this process (a restart, a rolling upgrade), wait
        for the readiness checks to re-admit one and go on, up to the deadline; otherwise (nothing was ever
        started there) fail at once."""
        deadline = time.monotonic() + self.deadline_s
        failures: list[str] = []
        tried: set[str] = set()
        while time.monotonic() < deadline:
            url = self.pool.choose(self.urls, exclude=tried)
            if url is None:
                if self.pool.has_answered(self.urls) and self.pool.wait_for_admission(self.urls, deadline):
                    tried.clear()
                    continue
                break
            tried.add(url)
            self.pool.started(url)
            began = time.monotonic()
            try:
                result = action(self._client(url))
            except _CONNECTION_ERRORS as error:  # gevent.Timeout among them is a BaseException, not an Exception
                failure: BaseException = error
            except EndpointFailure as error:
                failure = error
            else:
                self.pool.finished(url, ok=True, seconds=time.monotonic() - began)
                return result
            self.pool.finished(url, ok=False, seconds=time.monotonic() - began, error=_describe(failure))
            self._forget_client(url)
            failures.append(f"{url}: {_describe(failure)}")
        if self.pool.has_answered(self.urls):
            raise TritonUnavailable(
                f"Triton stopped answering at {', '.join(self.urls)} and did not come back within "
                f"{self.deadline_s:g} s (FACECAST_TRITON_DEADLINE_S) ({failures[-1] if failures else 'no answer'}). "
                "See `facecast status`; `facecast serve --detach` starts the local server again."
            )
        raise TritonUnavailable(
            f"Triton is not reachable at {', '.join(self.urls)} ({'; '.join(failures) or 'no endpoint answered'}). "
            "Start the local server with `facecast serve --detach` (or `make run`)."
        )

    @property
    def signature(self) -> ModelSignature:
        if self._signature is None:

            def fetch(client: triton_http.InferenceServerClient) -> ModelSignature:
                try:
                    if not client.is_model_ready(self.model_name):
                        raise ModelUnavailable(
                            f"model {self.model_name!r} is not ready on Triton "
                            "(see `facecast status`; rebuild it with `make repository`)"
                        )
                    return ModelSignature.from_config(client.get_model_config(self.model_name))
                except InferenceServerException as error:
                    if _is_endpoint_problem(error):
                        raise EndpointFailure(error.message()) from error
                    raise ModelUnavailable(f"model {self.model_name!r}: {error.message()}") from error

            self._signature = self._on_some_endpoint(fetch)
        return self._signature

    def require_version(self, version: str) -> None:
        """Raise ModelUnavailable unless the server has this version of the model loaded (checked once per version
        per client, so a pipeline fails before decoding, not at its last stage)."""
        checked = self.__dict__.setdefault("_versions_ready", set())
        if version in checked:
            return

        def ready(client: triton_http.InferenceServerClient) -> bool:
            try:
                return bool(client.is_model_ready(self.model_name, version))
            except InferenceServerException as error:
                if _is_endpoint_problem(error):
                    raise EndpointFailure(error.message()) from error
                return False

        if not self._on_some_endpoint(ready):
            raise ModelUnavailable(
                f"version {version} of model {self.model_name!r} is not loaded on Triton at {', '.join(self.urls)} "
                "(see `facecast status`). A studio's calibrated engagement version: roll back on the Calibrate page, "
                "or serve the model repository it was installed into (FACECAST_MODEL_REPOSITORY)"
            )
        checked.add(version)

    def infer(
        self, inputs: dict[str, np.ndarray], version: str = "", outputs: tuple[str, ...] = ()
    ) -> dict[str, np.ndarray]:
        """Named batched inputs → named outputs; splits batches over max_batch_size. `version`: one of the model's
        served versions (a studio's calibrated engagement model), "" for the server's choice (the newest loaded).
        `outputs`: only these (the served python backend then computes and sends only them), () for all."""
        signature = self.signature
        unknown = set(outputs) - {spec.name for spec in signature.outputs}
        if unknown:
            raise ValueError(f"{self.model_name} has no output(s) {sorted(unknown)}")
        wanted = [spec for spec in signature.outputs if not outputs or spec.name in outputs]
        for spec in signature.inputs:
            array = inputs.get(spec.name)
            if array is None:
                raise ValueError(f"{self.model_name} needs input {spec.name!r}")
            if array.dtype != spec.dtype or not _shape_fits(array.shape[1:], spec.dims):
                raise ValueError(
                    f"{self.model_name} input {spec.name!r} must be {spec.dtype} [N, "
                    f"{', '.join(map(str, spec.dims))}], got {array.dtype} {list(array.shape)}"
                )
        count = len(next(iter(inputs.values())))
        if count == 0:
            return {spec.name: np.zeros((0, *spec.dims), spec.dtype) for spec in wanted}
        step = signature.max_batch_size or count
        parts: dict[str, list[np.ndarray]] = {spec.name: [] for spec in wanted}
        for start in range(0, count, step):
            chunk = {name: np.ascontiguousarray(array[start : start + step]) for name, array in inputs.items()}
            for name, value in self._infer_chunk(chunk, version, [spec.name for spec in wanted]).items():
                parts[name].append(value)
        return {name: np.concatenate(values) for name, values in parts.items()}

    def _infer_chunk(self, chunk: dict[str, np.ndarray], version: str, names: list[str]) -> dict[str, np.ndarray]:
        requested = [triton_http.InferRequestedOutput(name, binary_data=True) for name in names]
        tensors = []
        for name, array in chunk.items():
            tensor = triton_http.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array, binary_data=True)
            tensors.append(tensor)

        def run(client: triton_http.InferenceServerClient) -> dict[str, np.ndarray]:
            try:
                result = client.infer(self.model_name, tensors, model_version=version, outputs=requested)
            except InferenceServerException as error:
                if _is_endpoint_problem(error):
                    raise EndpointFailure(error.message()) from error
                message = error.message()
                if not message.startswith(f"{self.model_name}: "):  # facecast's served models name themselves
                    message = f"{self.model_name}: {message}"
                raise InferenceFailed(message) from error
            return {name: result.as_numpy(name) for name in names}

        return self._on_some_endpoint(run)


def _shape_fits(shape: tuple[int, ...], dims: tuple[int, ...]) -> bool:
    """A shape without its batch axis against the served dims, where -1 is any size."""
    return len(shape) == len(dims) and all(d == -1 or d == s for s, d in zip(shape, dims))


def _is_endpoint_problem(error: InferenceServerException) -> bool:
    text = (error.message() or "").lower()
    return any(words in text for words in _ENDPOINT_MESSAGES)


def _describe(error: BaseException) -> str:
    text = str(error).strip() or "no answer"
    if isinstance(error, TimeoutError) or type(error).__name__ == "Timeout":
        text = f"no answer within the per-try timeout ({text})"
    return f"{type(error).__name__}: {text}"
