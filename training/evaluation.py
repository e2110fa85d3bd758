"""Evaluation helpers reused by every training and results script: metrics, batched prediction, markdown tables."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


def classification_scores(
    truth: np.ndarray, predicted: np.ndarray, labels: int = len(EMOTIONS)
) -> ClassificationScores:
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
        batch = torch.from_numpy(images_uint8[start : start + batch_size]).permute(0, 3, 1, 2).float().div_(255)
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


# -- engagement-style metrics: ranking, probabilistic classification, fold summaries --------------------------------
def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (nan when either side is constant)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def macro_precision_recall(truth: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """Macro precision and recall over the classes present in `truth` (as classification_scores does for F1)."""
    from sklearn.metrics import precision_score, recall_score

    present = sorted(set(np.asarray(truth).tolist()))
    return (
        float(precision_score(truth, predicted, labels=present, average="macro", zero_division=0)),
        float(recall_score(truth, predicted, labels=present, average="macro", zero_division=0)),
    )


def macro_auc(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """One-vs-rest macro ROC AUC over the classes present in `truth` (nan with fewer than two)."""
    from sklearn.metrics import roc_auc_score

    truth = np.asarray(truth)
    present = sorted(set(truth.tolist()))
    if len(present) < 2:
        return float("nan")
    scores = [roc_auc_score(truth == k, probabilities[:, k]) for k in present]
    return float(np.mean(scores))


def fold_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its t confidence interval across folds (nan half-width for one fold)."""
    from scipy.stats import t as student_t

    values = np.asarray([v for v in values if not np.isnan(v)], np.float64)
    if len(values) == 0:
        return float("nan"), float("nan")
    if len(values) == 1:
        return float(values[0]), float("nan")
    half = student_t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(half)


def format_interval(values, digits: int = 3) -> str:
    """'mean ± half-width' of a fold interval, for markdown tables."""
    mean, half = fold_interval(values)
    if np.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" if np.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


@contextlib.contextmanager
def served_weights(weights: list[Path], url: str | None = None, prefix: str = "facecast-eval-") -> Iterator[str]:
    """A Triton URL serving these checkpoints: `url` as given, or a real server started here on free ports over a
    scratch repository exported from the weights (so an evaluation judges exactly the weights it names)."""
    if url:
        yield url
        return
    from export.triton_repository import write_repository
    from facecast.config import Settings
    from facecast.serving import process

    missing = [str(p) for p in weights if not Path(p).is_file()]
    if missing:
        raise SystemExit(f"missing weights {missing}: `make models` trains them")
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        repository = Path(scratch) / "model_repository"
        write_repository(repository, list(weights), "cpu")
        http, grpc, metrics = process.find_free_ports(3)
        settings = Settings().with_overrides(
            http_port=http,
            grpc_port=grpc,
            metrics_port=metrics,
            model_repository=repository,
            run_dir=Path(scratch) / "run",
        )
        with process.running_server(settings, model_repository=repository):
            yield settings.triton_url


def kept_section(path: Path, name: str) -> str:
    """The `<!-- name:begin -->` … `<!-- name:end -->` block of the existing file (with a blank line before), or ""."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.is_file() else ""
    if begin not in text or end not in text:
        return ""
    return "\n" + text[text.index(begin) : text.index(end) + len(end)] + "\n"
