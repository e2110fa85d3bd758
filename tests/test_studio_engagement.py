"""Calibrating on a studio's clips through a real Triton: `facecast train engagement --install` analyses the clips,
cross-validates, adds engagement version 2 to the served repository and has Triton load it without a restart; too
few clips are never activated; stored analyses are re-scored from their faces, without decoding."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from facecast.cli.exits import EXIT_PARTIAL
from facecast.clients.engagement import EngagementScorer
from facecast.clips.pipeline import ClipAnalyzer
from facecast.clips.rescore import rescore
from facecast.config import PROJECT_ROOT
from facecast.engagement_features import FRAME_FEATURE_DIM, MAX_CHARACTERS, MAX_STEPS
from facecast.serving.errors import ModelUnavailable
from facecast.serving.health import model_versions
from facecast.store import open_store
from tests.clipmaker import emoji_over_photo
from tests.conftest import serving
from tests.test_analysis import run_cli

pytestmark = [pytest.mark.triton, pytest.mark.slow]
WEIGHTS = PROJECT_ROOT / "weights" / "engagement-cpu.pt"
ANALYSIS_MODELS = ("face_detector", "expression_encoder", "engagement")


@pytest.fixture(scope="module")
def calibration_server(full_repository, tmp_path_factory):
    """A Triton of its own over a copy of the clip-analysis models: these tests add engagement versions to it."""
    repository = tmp_path_factory.mktemp("calibration_repository")
    for name in ANALYSIS_MODELS:
        shutil.copytree(full_repository / name, repository / name)
    with serving(repository, tmp_path_factory.mktemp("calibration_state")) as settings:
        yield settings.with_overrides(model_repository=repository)


@pytest.fixture(scope="module")
def studio_clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("studio")
    faces = [("grin", "twemoji"), ("sob", "noto"), ("rage|joy", "twemoji"), ("neutral_face", "openmoji")]
    rows = []
    for index, face in enumerate(faces):
        emoji_over_photo(folder / f"cut{index}.mp4", [face], seconds=3.0, size=(320, 180), face_px=80)
        rows.append(
            dict(
                path=f"cut{index}.mp4",
                views=1000 + index,
                likes=50 * (index + 1),
                shares=5 * index,
                watch_pct=30 + 15 * index,
            )
        )
    manifest = folder / "clips.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def test_install_adds_a_served_version_that_too_few_clips_cannot_activate(calibration_server, studio_clips, tmp_path):
    settings = calibration_server
    result = run_cli(
        settings, "train", "engagement", "--manifest", str(studio_clips), "--out", str(tmp_path / "studio.pt"),
        "--install", "--activate", "--by", "lead@studio.test", "--url", settings.triton_url,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == EXIT_PARTIAL, result.stdout + result.stderr
    assert "Only 4 clips with faces: too few" in result.stdout
    assert "installed as engagement version 2" in result.stdout
    assert "not activated" in result.stderr

    # Triton loaded version 2 beside version 1 without a restart, and it answers differently (it was fine-tuned).
    assert model_versions(settings.triton_url, "engagement") == {1: "READY", 2: "READY"}
    assert (settings.model_repository / "engagement" / "2" / "model.onnx").is_file()
    scorer = EngagementScorer.for_urls([settings.triton_url])
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2, MAX_CHARACTERS, MAX_STEPS, FRAME_FEATURE_DIM)).astype(np.float32)
    mask = np.ones((2, MAX_CHARACTERS, MAX_STEPS), np.float32)
    default, calibrated = scorer.score(features, mask, 1), scorer.score(features, mask, 2)
    assert not np.allclose([w.engagement for w in default], [w.engagement for w in calibrated], atol=1e-6)

    # An analysis asked to score with a version Triton does not serve fails before decoding, saying which.
    analyzer = ClipAnalyzer.for_urls([settings.triton_url])
    assert analyzer.models(2)["engagement"] == "2"
    with pytest.raises(ModelUnavailable, match="version 7 of model 'engagement' is not loaded"):
        analyzer.analyze(studio_clips.parent / "cut0.mp4", engagement_model={"version": 7, "description": "gone"})

    with open_store(settings.db_path) as store:
        card = store.engagement_models.get(2)
        assert card is not None and not card.activatable and card.created_by == "lead@studio.test"
        assert card.description.startswith("calibrated on 4 studio clips")
        assert card.validation["clips"] == 4 and "Only 4 clips" in card.validation["statement"]
        assert store.engagement_models.active().version == 1  # nothing goes live unvalidated
        assert len(store.analyses.newest(limit=None)) == 4  # the clips were analysed once and kept in History


def test_rescoring_reads_stored_faces_and_matches_a_fresh_analysis(calibration_server, studio_clips, tmp_path):
    settings = calibration_server
    db = tmp_path / "facecast.duckdb"
    clip = studio_clips.parent / "cut2.mp4"
    done = run_cli(settings, "analyze", str(clip), "--json", "--db", str(db), "--url", settings.triton_url)
    assert done.returncode == 0, done.stderr
    fresh = json.loads(done.stdout)[0]
    scorer = EngagementScorer.for_urls([settings.triton_url])
    if 2 not in model_versions(settings.triton_url, "engagement"):  # run alone: a version 2 of the shipped weights
        from facecast.cli.train import install_version

        install_version(WEIGHTS, settings.model_repository, [settings.triton_url])
    with open_store(db) as store:
        (analysis_id,) = store.analyses.newest(limit=None)["id"]
        stored = store.analyses.get(int(analysis_id))
        faces = store.analyses.faces(int(analysis_id))
        again = rescore(stored, faces, scorer, {"version": 1, "description": "synthetic audience model v1"})
        same = again.report
        # the served weights are part of what identifies the report: version 1's digests, from the served configs
        assert set(fresh["weights"]) == {"face_detector", "expression_encoder", "engagement"}
        assert same.weights == fresh["weights"] and again.fingerprint == stored.fingerprint
        assert same.engagement.value == pytest.approx(fresh["engagement"]["value"], abs=0.01)
        assert same.engagement_class == fresh["engagement_class"]
        assert [m.t_s for m in same.key_moments] == [m["t_s"] for m in fresh["key_moments"]]
        assert all(m.thumbnail_png_b64 for m in same.key_moments)  # the same moments keep their pictures
        other = rescore(stored, faces, scorer, {"version": 2, "description": "calibrated on 4 studio clips"})
        assert other.report.engagement_version == 2 and other.report.models["engagement"] == "2"
        assert "engagement" not in other.report.weights  # a studio's version is named by its number
        assert "without decoding the clip again" in other.report.notes[-1]
        assert other.fingerprint != stored.fingerprint
        new_id = store.analyses.add(other.record(analysed_by="test"))
        assert store.analyses.newest(limit=1)["engagement_version"].iloc[0] == 2 and new_id != analysis_id
