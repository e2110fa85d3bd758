"""Checkpoints of registered networks: one format for every network, so export and tests load any of them.

A checkpoint is `{"network": registered name, "state_dict": ..., **extra}` (extra: epoch, metrics, calibration...).
Writes are atomic: a crash mid-save never leaves a truncated weights file where a good one was.
"""

from __future__ import annotations

from pathlib import Path

import torch

from training.networks import build_model

OPTIONAL_BUFFER_PREFIXES = ("studio.",)


def save_checkpoint(model: torch.nn.Module, network: str, path: str | Path, **extra) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    # CPU tensors, so a checkpoint written on a GPU machine loads anywhere (the shipped weights are)
    state = {name: value.detach().cpu() for name, value in model.state_dict().items()}
    torch.save({"network": network, "state_dict": state, **extra}, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path) -> torch.nn.Module:
    """The trained network from a checkpoint (or a shipped weights file), in eval mode."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "interval_halfwidth" in checkpoint["state_dict"]:
        raise ValueError(
            f"{path} is an engagement model from before 2026-12, whose intervals were calibrated on the probability "
            "scale; this facecast calibrates them in logit space. Retrain it (`facecast train engagement`, or "
            "`make engagement` for the default)."
        )
    model = build_model(checkpoint["network"])
    missing, unexpected = model.load_state_dict(checkpoint["state_dict"], strict=False)
    # A layer of buffers whose defaults mean "off" (the engagement model's studio calibration) may be absent from a
    # checkpoint written before it existed; anything else missing or left over is a real mismatch.
    missing = [key for key in missing if not key.startswith(OPTIONAL_BUFFER_PREFIXES)]
    if missing or unexpected:
        raise RuntimeError(
            f"{path} does not fit network {checkpoint['network']}: missing {missing}, unexpected {unexpected}"
        )
    return model.eval()
