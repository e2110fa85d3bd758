"""Quality floors: the served expression encoder and the whole clip analysis against known answers, so a model
that regresses fails CI.

Every other serving test compares a model with itself across code paths (Triton = ONNX = torch, app = CLI), which an
"always neutral" model passes. These tests classify faces whose emotion is known through the real Triton and hold
the shipped model to floors a little under what docs/results-expression.md measured (`make evaluate`): the
margin is the sampling noise of these smaller sets, not a licence to regress.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from facecast.config import PROJECT_ROOT
from facecast.media.images import load_face
from facecast.serving.client import TritonModelClient
from facecast.vocab import EMOTIONS, EXPRESSION_ENCODER
from training.data.build import SPLITS
from training.data.synthetic import sample_still

pytestmark = pytest.mark.triton

EMOJI_MANIFEST = PROJECT_ROOT / "data" / "emoji" / "manifest.csv"
STILLS_PER_EMOTION = 40
# Measured on these exact sets with the shipped weights (the test prints them): see each test.
FLOOR_SYNTHETIC = 0.95
FLOOR_SYNTHETIC_RECALL = 0.90
FLOOR_EMOJI = 0.77  # three images under the measured 0.793
FLOOR_ENGAGEMENT_SPEARMAN = 0.75  # measured 0.832 on the 23 clips scored
MAX_CLIPS_WITHOUT_FACES = 2


def served_emotions(server, images: np.ndarray) -> np.ndarray:
    client = TritonModelClient(EXPRESSION_ENCODER, server.triton_url)
    return client.infer({"image": images})["emotion_logits"].argmax(1)


def recall_per_emotion(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {EMOTIONS[k]: float((predicted[truth == k] == k).mean()) for k in np.unique(truth)}


def test_held_out_synthetic_characters_are_read_right(expression_server) -> None:
    """Characters of the test split (never seen in training), STILLS_PER_EMOTION of each emotion, all four styles.
    Measured 0.986 accuracy, every emotion's recall ≥ 0.95 (docs/results-expression.md: 0.978 on 2,000)."""
    first, end, _ = SPLITS["test"]
    characters = [f"c{i:05d}" for i in range(first, end)]
    images, truth = [], []
    for k, emotion in enumerate(EMOTIONS):
        for i in range(STILLS_PER_EMOTION):
            seed = 77_000_000 + 1_000 * k + i
            image, labels = sample_still(seed, 64, emotion=emotion, character_id=characters[seed % len(characters)])
            images.append(np.asarray(image))
            truth.append(EMOTIONS.index(labels["emotion"]))
    truth_array = np.asarray(truth)
    predicted = served_emotions(expression_server, np.stack(images))
    accuracy = float((predicted == truth_array).mean())
    recalls = recall_per_emotion(truth_array, predicted)
    print(f"held-out synthetic: accuracy {accuracy:.3f}; recall {recalls}")
    assert accuracy >= FLOOR_SYNTHETIC, f"accuracy {accuracy:.3f} < {FLOOR_SYNTHETIC}; recall {recalls}"
    assert min(recalls.values()) >= FLOOR_SYNTHETIC_RECALL, recalls


def test_licensed_emoji_drawn_by_artists_are_read_right(expression_server) -> None:
    """The 135 licensed emoji faces (Twemoji, Noto, OpenMoji; never used in training). Measured 0.793
    (docs/results-expression.md; fear 1 of 12, the known weak class: issue 14); a model that answers one
    emotion for everything scores at most 0.40 here."""
    if not EMOJI_MANIFEST.is_file():
        pytest.skip("no emoji data set (`make emoji` builds it)")
    frame = pd.read_csv(EMOJI_MANIFEST)
    images = np.stack([load_face(EMOJI_MANIFEST.parent / path, 64) for path in frame["path"]])
    truth = frame["emotion"].map(EMOTIONS.index).to_numpy()
    predicted = served_emotions(expression_server, images)
    accuracy = float((predicted == truth).mean())
    print(f"licensed emoji: accuracy {accuracy:.3f} on {len(frame)}; recall {recall_per_emotion(truth, predicted)}")
    assert len(frame) >= 100, "the emoji build should give 135 faces"
    assert accuracy >= FLOOR_EMOJI, f"accuracy {accuracy:.3f} < {FLOOR_EMOJI}"


CLIPS = 24


@pytest.fixture(scope="module")
def test_split_clips(tmp_path_factory) -> list:
    """CLIPS short clips of test-split characters (none seen in training) with their known engagement."""
    from training.data.clips import engagement_truth, sample_clip_script, write_clip

    first, end, _ = SPLITS["test"]
    characters = [f"c{i:05d}" for i in range(first, end)]
    folder = tmp_path_factory.mktemp("floor-clips")
    clips = []
    for i in range(CLIPS):
        script = sample_clip_script(55_000 + i, character_ids=characters, duration_s=6.0)
        clips.append((write_clip(script, folder / f"clip-{i:02d}.mp4"), engagement_truth(script)))
    return clips


def test_engagement_ranks_clips_of_unseen_characters_like_the_truth(full_server, test_split_clips) -> None:
    """Decode → detect → track → encode → engagement through Triton, on synthetic clips whose engagement is known
    (docs/engagement-ground-truth.md). A constant model has no rank correlation at all."""
    from scipy.stats import spearmanr

    from facecast.clips.pipeline import ClipAnalyzer

    analyzer = ClipAnalyzer.for_urls([full_server.triton_url])
    reports = [analyzer.analyze(path).report for path, _ in test_split_clips]
    # A clip where no face is found gets no score (the report says so); measured: 1 of 24 (small faces, issue 14).
    missed = [r.clip.name for r in reports if r.engagement is None]
    assert len(missed) <= MAX_CLIPS_WITHOUT_FACES, f"no faces found in {missed}"
    scored = [(r.engagement.value, t.engagement) for r, (_, t) in zip(reports, test_split_clips) if r.engagement]
    predicted, truth = [p for p, _ in scored], [t for _, t in scored]
    rho = float(spearmanr(predicted, truth).statistic)
    print(f"engagement, {len(truth)} of {len(reports)} clips scored end to end: Spearman {rho:.3f}; missed {missed}")
    assert np.ptp(predicted) > 0.05, f"the predictions barely vary: {predicted}"
    assert rho >= FLOOR_ENGAGEMENT_SPEARMAN, f"Spearman {rho:.3f} < {FLOOR_ENGAGEMENT_SPEARMAN}"
