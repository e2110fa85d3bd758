"""One registry for every facecast network: a small config per network and size, one typed factory.

Names are `<network>-<size>`: `expression_encoder-cpu` is the default that trains on 2 CPU cores and serves from
ONNX Runtime; `expression_encoder-gpu` is the seed-sized variant (ResNet-50 depth) for the TensorRT flavour.
Each network module registers its configs on import; `build_model(name)` is the only constructor callers need.

What every registered network provides (the export code and the one parametrized test rely on it):
  - `config` (its frozen config dataclass, with `triton_name`);
  - `forward(*example_inputs(batch))` → dict of tensors (training forward, what losses read);
  - `example_inputs(batch)` → a tuple of tensors for that forward;
  - `serving_signature()` → {"inputs": [(name, "UINT8"|"FP32"|"INT64", dims)], "outputs": [...]}, dims without
    the batch axis: the Triton contract;
  - `serving_module()` → the nn.Module exported to ONNX: it takes the serving inputs in signature order (serving
    dtypes, e.g. raw uint8 pixels it normalises itself) and returns the outputs in signature order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class RegisteredNetwork:
    name: str
    config: Any  # the network's own frozen config dataclass
    builder: Callable[[Any], nn.Module]


_NETWORKS: dict[str, RegisteredNetwork] = {}


def register_network(name: str, config: Any, builder: Callable[[Any], nn.Module]) -> None:
    if name in _NETWORKS:
        raise ValueError(f"network {name!r} is registered twice")
    _NETWORKS[name] = RegisteredNetwork(name, config, builder)


def _load_network_modules() -> None:
    # Importing a network module registers its configs; kept here so `build_model` works without callers
    # having to know which module defines which network.
    from training.networks import (  # noqa: F401
        embedders,  # noqa: F401
        engagement,
        expression_encoder,
        face_detector,  # noqa: F401
        style_mapper,  # noqa: F401
    )


def list_networks() -> list[str]:
    _load_network_modules()
    return sorted(_NETWORKS)


def get_config(name: str) -> Any:
    _load_network_modules()
    try:
        return _NETWORKS[name].config
    except KeyError:
        raise KeyError(f"unknown network {name!r}; registered: {', '.join(sorted(_NETWORKS))}") from None


def build_model(name: str) -> nn.Module:
    """A freshly initialised network for a registered name, e.g. build_model("expression_encoder-cpu")."""
    config = get_config(name)
    return _NETWORKS[name].builder(config)
