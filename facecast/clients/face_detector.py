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

from facecast.clients._common import expect_client
from facecast.media.letterbox import DetectionInputError, Letterbox, letterbox
from facecast.serving.client import TritonModelClient
from facecast.vocab import FACE_DETECTOR

# The operating point: the threshold with the best F1 on the validation scenes (plain and cluttered backgrounds);
# docs/results-detection.md (python -m training.evaluate_detector) shows the sweep and the held-out scenes at it.
# It was 0.15 for the first detector, whose scores for true faces were lower and less separated from clutter.
DEFAULT_SCORE_THRESHOLD = 0.4
# Boxes this small (in frame pixels) are artefacts at the image border, never a face the pipeline could crop.
MIN_BOX_PIXELS = 2.0


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


# The model's 3×3 peak filter lets two neighbouring heatmap peaks through for one face (a face box and a slightly
# shifted or smaller one). Non-maximum suppression by overlap, and by containment (a box lying mostly inside a
# stronger one is part of that face), keeps the strongest box per face.
NMS_IOU = 0.4
NMS_CONTAINMENT = 0.75


def suppress_overlapping(
    boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU, containment: float = NMS_CONTAINMENT
) -> np.ndarray:
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


def detections_from_outputs(
    boxes: np.ndarray, scores: np.ndarray, geometry: Letterbox, score_threshold: float
) -> list[Detection]:
    """One frame's model outputs (boxes [K, 4] normalised to the input, scores [K]) → detections in frame pixels,
    one per face (suppress_overlapping), strongest first."""
    keep = scores >= score_threshold
    frame_boxes, frame_scores = geometry.to_frame(boxes[keep]), scores[keep]
    sized = (frame_boxes[:, 2] - frame_boxes[:, 0] >= MIN_BOX_PIXELS) & (
        frame_boxes[:, 3] - frame_boxes[:, 1] >= MIN_BOX_PIXELS
    )
    frame_boxes, frame_scores = frame_boxes[sized], frame_scores[sized]
    detections = []
    for i in suppress_overlapping(frame_boxes, frame_scores):
        x0, y0, x1, y1 = (float(v) for v in frame_boxes[i])
        detections.append(Detection((x0, y0, x1, y1), float(frame_scores[i])))
    return detections


class FaceDetector:
    """Detect faces in frames with Triton's face_detector; `detect` batches all frames it is given."""

    def __init__(self, client: TritonModelClient, score_threshold: float = DEFAULT_SCORE_THRESHOLD):
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        expect_client(client, FACE_DETECTOR, "FaceDetector")
        self.client = client
        self.score_threshold = score_threshold

    @classmethod
    def for_urls(cls, urls: str | list[str], score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> FaceDetector:
        return cls(TritonModelClient(FACE_DETECTOR, urls), score_threshold)

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the served model's input, from its Triton config."""
        spec = self.client.signature.inputs[0]
        if len(spec.dims) != 3 or spec.dims[2] != 3:
            raise ValueError(f"{self.client.model_name} serves input {spec.name} {list(spec.dims)}; expected [H, W, 3]")
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
        return [
            detections_from_outputs(boxes, scores, geometry, self.score_threshold)
            for boxes, scores, geometry in zip(outputs["boxes"], outputs["scores"], geometries)
        ]
