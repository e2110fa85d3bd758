"""One torch Dataset for every face-image manifest: synthetic stills, licensed emoji and a studio's own images.

Why preload: the data sets are small (20-40k faces of 64x64x3 bytes = 0.25-0.5 GB), while decoding PNGs in every
epoch would cost more CPU than the 2-core training loop can spare. So every image is decoded ONCE, with
facecast.media.images.load_face — the same decoder and square-fitting the serving path uses, so the network is trained on
exactly the pixels it will be served — into one uint8 array. Items are then plain tensor slices, and the
augmentation runs per batch in torch (training/data/augment.py).

Labels follow the manifest's "blank means unknown" rule: an unknown style is -1 and unknown action parameters are
NaN with params_mask False, so the trainer masks them out of the loss instead of learning a guess.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch

from facecast.media.images import load_face
from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLES
from training.data.manifest import COLUMNS

UNKNOWN_STYLE = -1


def _load_images(paths: list[str], size: int, workers: int) -> np.ndarray:
    images = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def load(index: int) -> None:
        images[index] = load_face(paths[index], size)

    if workers <= 1 or len(paths) < 64:
        for index in range(len(paths)):
            load(index)
    else:
        # Threads suffice: Pillow releases the GIL while it decodes and resizes.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(load, range(len(paths)), chunksize=256):
                pass  # iterating re-raises the first decode error (ImageDecodeError names the file)
    return images


def _codes(values: pd.Series, vocabulary: tuple[str, ...], column: str, *, allow_unknown: bool) -> np.ndarray:
    lookup = {name: index for index, name in enumerate(vocabulary)}
    codes = np.empty(len(values), dtype=np.int64)
    for row, value in enumerate(values):
        if isinstance(value, str) and value.strip().lower() in lookup:
            codes[row] = lookup[value.strip().lower()]
        elif allow_unknown and (value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA
                                or (isinstance(value, str) and not value.strip())):
            codes[row] = UNKNOWN_STYLE
        else:
            raise ValueError(f"row {row}: {column} {value!r} is not one of {', '.join(vocabulary)}")
    return codes


class FaceImageDataset(torch.utils.data.Dataset):
    """Faces of a manifest frame, preloaded as uint8 [N, size, size, 3].

    Each item is a dict: image (uint8 [size, size, 3], RGB), emotion (long, index into EMOTIONS), style (long,
    index into STYLES or -1 when unknown), params (float32 [4] in ACTION_PARAMS order, NaN where unknown) and
    params_mask (bool [4], True where the parameter is known).
    """

    def __init__(self, frame: pd.DataFrame, size: int, *, workers: int | None = None):
        missing = [column for column in ("path", "emotion") if column not in frame.columns]
        if missing:
            raise ValueError(f"the frame lacks column(s) {', '.join(missing)}; read it with read_manifest")
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.frame = frame.reset_index(drop=True)
        self.size = size

        self.emotions = torch.from_numpy(_codes(self.frame["emotion"], EMOTIONS, "emotion", allow_unknown=False))
        styles = self.frame["style"] if "style" in self.frame else pd.Series([np.nan] * len(self.frame))
        self.styles = torch.from_numpy(_codes(styles, STYLES, "style", allow_unknown=True))
        params = np.full((len(self.frame), len(ACTION_PARAMS)), np.nan, dtype=np.float32)
        for column_index, column in enumerate(ACTION_PARAMS):
            if column in self.frame:
                params[:, column_index] = pd.to_numeric(self.frame[column], errors="coerce").to_numpy(np.float32)
        self.params = torch.from_numpy(params)
        self.params_mask = ~torch.isnan(self.params)

        workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        self.images = torch.from_numpy(_load_images([str(p) for p in self.frame["path"]], size, workers))

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "emotion": self.emotions[index], "style": self.styles[index],
                "params": self.params[index], "params_mask": self.params_mask[index]}


def concat_frames(*frames: pd.DataFrame) -> pd.DataFrame:
    """Manifest frames (from read_manifest) stacked into one, with a fresh index and the manifest's columns."""
    if not frames:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in COLUMNS})
    for number, frame in enumerate(frames, start=1):
        missing = [column for column in COLUMNS if column not in frame.columns]
        if missing:
            raise ValueError(f"frame {number} lacks column(s) {', '.join(missing)}; read it with read_manifest")
    non_empty = [frame[list(COLUMNS)] for frame in frames if len(frame)]
    if not non_empty:
        return frames[0][list(COLUMNS)].iloc[:0].reset_index(drop=True)
    return pd.concat(non_empty, ignore_index=True)
