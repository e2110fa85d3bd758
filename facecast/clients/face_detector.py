"""Face detection through Triton's `face_detector`: frames of any size in, face boxes in the frame's pixels out.

The served model takes one fixed input size (read from its Triton config, never hard-coded here). A frame is
*letterboxed* into it: scaled to fit without distortion, centred, and padded with black bars, the way a 16:9 video
is shown on a screen of another shape; the model was trained on exactly this (training/data/detection.py calls
`letterbox` too). Its boxes come back normalised to the input and are mapped back to the frame by undoing the
scale and the padding. Torch-free (numpy + Pillow), like all of facecast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from facecast.clients._common import expect_client
from facecast.serving.client import TritonModelClient
from facecast.vocab import FACE_DETECTOR

# The operating point: the highest threshold whose recall on the validation scenes is ≥ 0.90 (the target);
# docs/results-detection.md (python -m training.evaluate_detector) shows the sweep and the test scenes at it.
# Precision is lowish there; tracking (facecast/clips/tracking.py) drops the isolated false detections.
DEFAULT_SCORE_THRESHOLD = 0.15
# Boxes this small (in frame pixels) are artefacts at the image border, never a face the pipeline could crop.
MIN_BOX_PIXELS = 2.0
PAD_VALUE = 0  # letterbox bars are black, as in video


class DetectionInputError(ValueError):
    """A frame that cannot be analysed; the message says what is wrong with it."""


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the original frame's pixels
    score: float

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


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
            self.input_width, self.input_height, self.input_width, self.input_height]
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
    return Letterbox(scale, (input_width - width) // 2, (input_height - height) // 2, frame_width, frame_height,
                     input_width, input_height)


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
        resample = Image.Resampling.BOX if geometry.scale < 1 else Image.Resampling.BILINEAR
        resized = np.asarray(Image.fromarray(frame).resize((width, height), resample))
    canvas = np.full((input_height, input_width, 3), PAD_VALUE, dtype=np.uint8)
    canvas[geometry.pad_y:geometry.pad_y + height, geometry.pad_x:geometry.pad_x + width] = resized
    return canvas, geometry


def _check_frame(frame) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        shape = list(frame.shape) if isinstance(frame, np.ndarray) else type(frame).__name__
        dtype = frame.dtype if isinstance(frame, np.ndarray) else ""
        raise DetectionInputError(f"a frame must be a uint8 RGB array [H, W, 3], got {dtype} {shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DetectionInputError(f"a frame has no pixels ({frame.shape[1]}x{frame.shape[0]})")


# The model's 3×3 peak filter lets two neighbouring heatmap peaks through for one face (a face box and a slightly
# shifted or smaller one). Non-maximum suppression by overlap, and by containment (a box lying mostly inside a
# stronger one is part of that face), keeps the strongest box per face.
NMS_IOU = 0.4
NMS_CONTAINMENT = 0.75


def suppress_overlapping(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU,
                         containment: float = NMS_CONTAINMENT) -> np.ndarray:
    """Indices of the boxes to keep, strongest first (boxes [N, 4] xyxy, any units)."""
    order = np.argsort(-scores, kind="stable")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    kept: list[int] = []
    for index in order:
        box = boxes[index]
        suppressed = False
        for other in kept:
            ix = max(0.0, min(box[2], boxes[other, 2]) - max(box[0], boxes[other, 0]))
            iy = max(0.0, min(box[3], boxes[other, 3]) - max(box[1], boxes[other, 1]))
            inter = ix * iy
            union = areas[index] + areas[other] - inter
            if (union > 0 and inter / union >= iou) or (areas[index] > 0 and inter / areas[index] >= containment):
                suppressed = True
                break
        if not suppressed:
            kept.append(int(index))
    return np.array(kept, dtype=np.int64)


def detections_from_outputs(boxes: np.ndarray, scores: np.ndarray, geometry: Letterbox,
                            score_threshold: float) -> list[Detection]:
    """One frame's model outputs (boxes [K, 4] normalised to the input, scores [K]) → detections in frame pixels,
    one per face (suppress_overlapping), strongest first."""
    keep = scores >= score_threshold
    frame_boxes, frame_scores = geometry.to_frame(boxes[keep]), scores[keep]
    sized = ((frame_boxes[:, 2] - frame_boxes[:, 0] >= MIN_BOX_PIXELS)
             & (frame_boxes[:, 3] - frame_boxes[:, 1] >= MIN_BOX_PIXELS))
    frame_boxes, frame_scores = frame_boxes[sized], frame_scores[sized]
    return [Detection(tuple(float(v) for v in frame_boxes[i]), float(frame_scores[i]))
            for i in suppress_overlapping(frame_boxes, frame_scores)]


class FaceDetector:
    """Detect faces in frames with Triton's face_detector; `detect` batches all frames it is given."""

    def __init__(self, client: TritonModelClient, score_threshold: float = DEFAULT_SCORE_THRESHOLD):
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        expect_client(client, FACE_DETECTOR, "FaceDetector")
        self.client = client
        self.score_threshold = score_threshold

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the served model's input, from its Triton config."""
        spec = self.client.signature.inputs[0]
        if len(spec.dims) != 3 or spec.dims[2] != 3:
            raise ValueError(f"{self.client.model_name} serves input {spec.name} {list(spec.dims)}; "
                             "expected [H, W, 3]")
        return spec.dims[0], spec.dims[1]

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        """Faces in each frame (uint8 RGB [H, W, 3], any size), highest score first, boxes in that frame's pixels."""
        if not frames:
            return []
        height, width = self.input_size
        canvases, geometries = [], []
        for index, frame in enumerate(frames):
            try:
                canvas, geometry = letterbox(frame, height, width)
            except DetectionInputError as error:
                raise DetectionInputError(f"frame {index}: {error}") from None
            canvases.append(canvas)
            geometries.append(geometry)
        outputs = self.client.infer({self.client.signature.inputs[0].name: np.stack(canvases)})
        return [detections_from_outputs(boxes, scores, geometry, self.score_threshold)
                for boxes, scores, geometry in zip(outputs["boxes"], outputs["scores"], geometries)]
