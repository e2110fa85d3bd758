"""facecast's networks. `build_model(name)` builds any registered one; `list_networks()` names them all."""

from training.networks.registry import build_model, get_config, list_networks

__all__ = ["build_model", "get_config", "list_networks"]
