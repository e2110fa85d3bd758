"""Talking to Triton: one client per model, over one or more server endpoints, with failover and clear errors.

The model's config (input names, dims, max_batch_size) is read from the server, so the client never hard-codes
shapes: the image size S of `expression_encoder` is whatever its config.pbtxt declares. Requests larger than the
model's max_batch_size are split; Triton's dynamic batcher merges small requests from many clients on its side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException, np_to_triton_dtype, triton_to_np_dtype

from facecast.serving.errors import InferenceFailed, ModelUnavailable, TritonUnavailable

T = TypeVar("T")


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

        return cls(
            config["name"], "", int(config.get("max_batch_size", 0)), specs(config["input"]), specs(config["output"])
        )


_CONNECTION_ERRORS = (OSError, ConnectionError, TimeoutError)


class TritonModelClient:
    """Inference on one Triton model. `urls` are tried in order; a dead endpoint is skipped until it answers again.

    Thread-safe: each thread gets its own HTTP connection (tritonclient's synchronous client is not thread-safe).
    """

    def __init__(self, model_name: str, urls: str | list[str], timeout_s: float = 60.0):
        self.model_name = model_name
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("no Triton URL configured")
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._signature: ModelSignature | None = None

    def _client(self, url: str) -> triton_http.InferenceServerClient:
        clients = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        if url not in clients:
            clients[url] = triton_http.InferenceServerClient(
                url, connection_timeout=min(self.timeout_s, 10.0), network_timeout=self.timeout_s
            )
        return clients[url]

    def _on_any_endpoint(self, action: Callable[[triton_http.InferenceServerClient], T]) -> T:
        """Run action(client) on the first endpoint that answers; connection failures move to the next one."""
        failures = []
        for url in self.urls:
            try:
                return action(self._client(url))
            except _CONNECTION_ERRORS as error:
                failures.append(f"{url}: {error.__class__.__name__}: {error}")
                self._local.clients.pop(url, None)
            except InferenceServerException as error:
                if _is_connection_problem(error):
                    failures.append(f"{url}: {error}")
                    self._local.clients.pop(url, None)
                    continue
                raise
        raise TritonUnavailable(
            f"Triton is not reachable at {', '.join(self.urls)} ({'; '.join(failures)}). "
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
                    if _is_connection_problem(error):
                        raise
                    raise ModelUnavailable(f"model {self.model_name!r}: {error.message()}") from error

            self._signature = self._on_any_endpoint(fetch)
        return self._signature

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Named batched inputs → named outputs; splits batches over max_batch_size."""
        signature = self.signature
        for spec in signature.inputs:
            array = inputs.get(spec.name)
            if array is None:
                raise ValueError(f"{self.model_name} needs input {spec.name!r}")
            if array.dtype != spec.dtype or tuple(array.shape[1:]) != spec.dims:
                raise ValueError(
                    f"{self.model_name} input {spec.name!r} must be {spec.dtype} [N, "
                    f"{', '.join(map(str, spec.dims))}], got {array.dtype} {list(array.shape)}"
                )
        count = len(next(iter(inputs.values())))
        if count == 0:
            return {spec.name: np.zeros((0, *spec.dims), spec.dtype) for spec in signature.outputs}
        step = signature.max_batch_size or count
        parts: dict[str, list[np.ndarray]] = {spec.name: [] for spec in signature.outputs}
        for start in range(0, count, step):
            chunk = {name: np.ascontiguousarray(array[start : start + step]) for name, array in inputs.items()}
            for name, value in self._infer_chunk(chunk).items():
                parts[name].append(value)
        return {name: np.concatenate(values) for name, values in parts.items()}

    def _infer_chunk(self, chunk: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        requested = [triton_http.InferRequestedOutput(spec.name, binary_data=True) for spec in self.signature.outputs]
        tensors = []
        for name, array in chunk.items():
            tensor = triton_http.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array, binary_data=True)
            tensors.append(tensor)

        def run(client: triton_http.InferenceServerClient) -> dict[str, np.ndarray]:
            try:
                result = client.infer(self.model_name, tensors, outputs=requested)
            except InferenceServerException as error:
                if _is_connection_problem(error):
                    raise
                raise InferenceFailed(f"{self.model_name}: {error.message()}") from error
            return {spec.name: result.as_numpy(spec.name) for spec in self.signature.outputs}

        return self._on_any_endpoint(run)


def _is_connection_problem(error: InferenceServerException) -> bool:
    text = (error.message() or "").lower()
    return any(
        word in text
        for word in (
            "connection refused",
            "failed to connect",
            "connection reset",
            "timed out",
            "timeout",
            "unreachable",
            "broken pipe",
        )
    )
