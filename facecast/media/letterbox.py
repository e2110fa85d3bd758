"""Placing a frame of any size into a detector's fixed input without distortion (letterboxing), and mapping boxes
back. Training scenes (training/data/detection.py) and serving (facecast.clients.face_detector) both use it, so the
model sees at serving time exactly the geometry it was trained on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

PAD_VALUE = 0  # letterbox bars are black, as in video


class DetectionInputError(ValueError):
    """A frame that cannot be analysed; the message says what is wrong with it."""


@dataclass(frozen=True)
class Letterbox:
    """How a frame was placed in the model input: input = frame * scale + (pad_x, pad_y)."""

    scale: float
    pad_x: int
    pad_y: int
    frame_width: int
    frame_height: int
    input_width: int
    input_height: int

    def to_frame(self, boxes_normalised: np.ndarray) -> np.ndarray:
        """Boxes [N, 4] xyxy in [0, 1] of the model input → pixels of the original frame (clipped to it)."""
        boxes = np.asarray(boxes_normalised, dtype=np.float64).reshape(-1, 4) * [
            self.input_width,
            self.input_height,
            self.input_width,
            self.input_height,
        ]
        boxes = (boxes - [self.pad_x, self.pad_y, self.pad_x, self.pad_y]) / self.scale
        return np.clip(boxes, 0, [self.frame_width, self.frame_height, self.frame_width, self.frame_height])

    def to_input(self, boxes_pixels: np.ndarray) -> np.ndarray:
        """Boxes [N, 4] in frame pixels → pixels of the model input (the inverse of to_frame before normalising)."""
        boxes = np.asarray(boxes_pixels, dtype=np.float64).reshape(-1, 4) * self.scale
        return boxes + [self.pad_x, self.pad_y, self.pad_x, self.pad_y]


def letterbox_geometry(frame_height: int, frame_width: int, input_height: int, input_width: int) -> Letterbox:
    if frame_height < 1 or frame_width < 1:
        raise DetectionInputError(f"a frame has no pixels ({frame_width}x{frame_height})")
    scale = min(input_width / frame_width, input_height / frame_height)
    width = min(input_width, max(1, round(frame_width * scale)))
    height = min(input_height, max(1, round(frame_height * scale)))
    return Letterbox(
        scale,
        (input_width - width) // 2,
        (input_height - height) // 2,
        frame_width,
        frame_height,
        input_width,
        input_height,
    )


def letterbox(frame: np.ndarray, input_height: int, input_width: int) -> tuple[np.ndarray, Letterbox]:
    """Fit a uint8 RGB frame [H, W, 3] into [input_height, input_width, 3] keeping its aspect ratio, black bars."""
    _check_frame(frame)
    geometry = letterbox_geometry(frame.shape[0], frame.shape[1], input_height, input_width)
    width = min(input_width, max(1, round(frame.shape[1] * geometry.scale)))
    height = min(input_height, max(1, round(frame.shape[0] * geometry.scale)))
    if (height, width) == frame.shape[:2]:
        resized = frame
    else:
        # Shrinking averages areas (box filter): antialiased, the fastest Pillow filter here, and the same filter the
        # training scenes were reduced with. A decoder that already scales frames down saves this step entirely.
        image = Image.fromarray(frame)
        factor = frame.shape[1] // width
        if factor > 1 and frame.shape[:2] == (height * factor, width * factor):
            # A whole-number shrink (a 960x540 video frame into 320x180): Pillow's reduce() averages the same
            # factor x factor blocks as the box filter (a pixel differs by at most 1 level, from rounding) at
            # 0.7 ms instead of 1.8 ms per frame.
            resized = np.asarray(image.reduce(factor))
        else:
            resample = Image.Resampling.BOX if geometry.scale < 1 else Image.Resampling.BILINEAR
            resized = np.asarray(image.resize((width, height), resample))
    canvas = np.full((input_height, input_width, 3), PAD_VALUE, dtype=np.uint8)
    canvas[geometry.pad_y : geometry.pad_y + height, geometry.pad_x : geometry.pad_x + width] = resized
    return canvas, geometry


def _check_frame(frame: object) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        shape = list(frame.shape) if isinstance(frame, np.ndarray) else type(frame).__name__
        dtype = frame.dtype if isinstance(frame, np.ndarray) else ""
        raise DetectionInputError(f"a frame must be a uint8 RGB array [H, W, 3], got {dtype} {shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DetectionInputError(f"a frame has no pixels ({frame.shape[1]}x{frame.shape[0]})")
