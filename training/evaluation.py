"""Evaluation helpers reused by every training and results script: metrics, batched prediction, markdown tables."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from facecast.vocab import EMOTIONS


@dataclass(frozen=True)
class ClassificationScores:
    count: int
    accuracy: float
    macro_f1: float

    def as_row(self) -> dict:
        return {"n": self.count, "accuracy": round(self.accuracy, 4), "macro-F1": round(self.macro_f1, 4)}


def classification_scores(truth: np.ndarray, predicted: np.ndarray, labels: int = len(EMOTIONS)) -> ClassificationScores:
    """Accuracy and macro-F1 over the classes present in `truth` (absent classes would make F1 meaningless)."""
    if len(truth) == 0:
        return ClassificationScores(0, float("nan"), float("nan"))
    present = sorted(set(truth.tolist()))
    return ClassificationScores(
        count=len(truth),
        accuracy=float(accuracy_score(truth, predicted)),
        macro_f1=float(f1_score(truth, predicted, labels=present, average="macro", zero_division=0)),
    )


def confusion(truth: np.ndarray, predicted: np.ndarray, names: tuple[str, ...] = EMOTIONS) -> pd.DataFrame:
    matrix = confusion_matrix(truth, predicted, labels=list(range(len(names))))
    return pd.DataFrame(matrix, index=[f"true {n}" for n in names], columns=list(names))


@torch.no_grad()
def predict_images(model: torch.nn.Module, images_uint8: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Run a network on uint8 NHWC images exactly as Triton will receive them; returns stacked numpy outputs."""
    model.eval()
    chunks: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(images_uint8), batch_size):
        batch = torch.from_numpy(images_uint8[start:start + batch_size]).permute(0, 3, 1, 2).float().div_(255)
        for name, value in model(batch.contiguous(memory_format=torch.channels_last)).items():
            chunks.setdefault(name, []).append(value.float().numpy())
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def markdown_table(frame: pd.DataFrame, index: bool = True, floatfmt: str = ".3f") -> str:
    """A GitHub markdown table without the tabulate dependency."""
    frame = frame.reset_index() if index else frame
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"

    def cell(value) -> str:
        if isinstance(value, (float, np.floating)):
            return "–" if np.isnan(value) else format(value, floatfmt)
        return str(value)

    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])
