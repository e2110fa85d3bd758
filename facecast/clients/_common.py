"""What every typed model client shares."""

from __future__ import annotations

import numpy as np

from facecast.serving.client import TritonModelClient


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def expect_client(client: TritonModelClient, model: str, owner: str) -> None:
    """A typed client wraps one served model; handing it another model's client is a programming error."""
    if client.model_name != model:
        raise ValueError(f"{owner} needs a client for {model!r}, not {client.model_name!r}")


def square_input_size(client: TritonModelClient, input_name: str = "image") -> int:
    """S of a served image input [S, S, 3], from the model's Triton config (never hard-coded in a client)."""
    spec = next(s for s in client.signature.inputs if s.name == input_name)
    if len(spec.dims) != 3 or spec.dims[0] != spec.dims[1] or spec.dims[2] != 3:
        raise ValueError(f"{client.model_name} serves {input_name} {list(spec.dims)}; expected [S, S, 3]")
    return int(spec.dims[0])


def weights_digest(client: TritonModelClient) -> str:
    """A served model's version-1 weights as reports record them: the start of its config's weights_sha256
    (export.triton_repository.WEIGHTS_PARAMETER); "" when the repository was exported before it existed."""
    return client.signature.weights_sha256[:16]
