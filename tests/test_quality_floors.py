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
# Measured 0.889 on the 24 clips (all scored) with the shipped ensemble, its members pretrained on 40,000 clips
# (issue 14); on 20,000 for eight epochs 0.897, for four 0.900, the single network before it 0.812.
FLOOR_ENGAGEMENT_SPEARMAN = 0.87
MAX_CLIPS_WITHOUT_FACES = 2
# Compare cuts on every pair of the clips below. Issue 14's targets are 0.80 for both, met on the 400-clip test split
# (0.881 and 0.837, docs/results-engagement.md). End to end on these 24 clips the shipped ensemble measured 0.865
# (147 of 170 pairs) and 0.814 (70 of 86). Its calibrated lead margin (logit 1.50) is the narrowest so far: the
# ensemble before it (1.57) measured 0.812 and 0.779 here, the four-epoch one (1.76) 0.735 and 0.884, the single
# network (2.20) 0.694 and 0.977. The floors sit four pairs under what it measured.
FLOOR_CLEAR_WHEN_APART = 0.84
FLOOR_WITHIN_WHEN_TIED = 0.78


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


@pytest.fixture(scope="module")
def floor_reports(full_server, test_split_clips) -> list:
    """Decode → detect → track → encode → engagement through Triton: one report per test-split clip."""
    from facecast.clips.pipeline import ClipAnalyzer

    analyzer = ClipAnalyzer.for_urls([full_server.triton_url])
    return [analyzer.analyze(path).report for path, _ in test_split_clips]


def test_engagement_ranks_clips_of_unseen_characters_like_the_truth(floor_reports, test_split_clips) -> None:
    """Decode → detect → track → encode → engagement through Triton, on synthetic clips whose engagement is known
    (docs/engagement-ground-truth.md). A constant model has no rank correlation at all."""
    from scipy.stats import spearmanr

    reports = floor_reports
    # A clip where no face is found gets no score (the report says so); measured: 1 of 24 (small faces, issue 14).
    missed = [r.clip.name for r in reports if r.engagement is None]
    assert len(missed) <= MAX_CLIPS_WITHOUT_FACES, f"no faces found in {missed}"
    scored = [(r.engagement.value, t.engagement) for r, (_, t) in zip(reports, test_split_clips) if r.engagement]
    predicted, truth = [p for p, _ in scored], [t for _, t in scored]
    rho = float(spearmanr(predicted, truth).statistic)
    print(f"engagement, {len(truth)} of {len(reports)} clips scored end to end: Spearman {rho:.3f}; missed {missed}")
    assert np.ptp(predicted) > 0.05, f"the predictions barely vary: {predicted}"
    assert rho >= FLOOR_ENGAGEMENT_SPEARMAN, f"Spearman {rho:.3f} < {FLOOR_ENGAGEMENT_SPEARMAN}"


def test_compare_cuts_calls_clear_leads_clear_and_ties_within_uncertainty(floor_reports, test_split_clips) -> None:
    """Compare cuts on every pair of the analysed clips: where the true engagement differs by ≥ 0.2 the lead must be
    called clear with the right winner, where it differs by < 0.05 it must be left within uncertainty. A model whose
    margin is too wide fails the first; one that is overconfident fails the second."""
    from facecast.clips.compare import differences

    scored = [(r, t.engagement) for r, (_, t) in zip(floor_reports, test_split_clips) if r.engagement is not None]
    assert all(r.engagement_lead_logit is not None for r, _ in scored), "reports carry the calibrated lead margin"
    apart, tied = [], []
    for a in range(len(scored)):
        for b in range(a + 1, len(scored)):
            (report_a, truth_a), (report_b, truth_b) = scored[a], scored[b]
            row = differences({"a": report_a, "b": report_b}).set_index("score").loc["engagement"]
            clear = row["clear?"] == "yes"
            right = (row["best cut"] == "a") == (truth_a >= truth_b)
            if abs(truth_a - truth_b) >= 0.2:
                apart.append(clear and right)
            elif abs(truth_a - truth_b) < 0.05:
                tied.append(not clear)
    print(
        f"compare cuts over {len(scored)} clips: {np.mean(apart):.3f} of {len(apart)} pairs ≥ 0.2 apart clear with the "
        f"right winner, {np.mean(tied):.3f} of {len(tied)} pairs < 0.05 apart within uncertainty"
    )
    assert len(apart) >= 50 and len(tied) >= 10, "too few pairs to judge: more clips"
    assert np.mean(apart) >= FLOOR_CLEAR_WHEN_APART, f"{np.mean(apart):.3f} < {FLOOR_CLEAR_WHEN_APART}"
    assert np.mean(tied) >= FLOOR_WITHIN_WHEN_TIED, f"{np.mean(tied):.3f} < {FLOOR_WITHIN_WHEN_TIED}"
