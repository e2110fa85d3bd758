"""Re-scoring a stored analysis with another engagement model version, from its stored faces: no decoding.

An analysis keeps every face it observed (`clip_faces`: time, track, box, detection score and the expression
encoder's outputs), which is exactly what the engagement model reads. So when a studio activates a calibrated model,
old analyses get its scores by running only the engagement stage again, windows built as the pipeline builds them.
Key moments are chosen again by the new model's attention; a moment that falls on the same face and time as before
keeps its picture, others have none (the face crops were never stored).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from facecast.clients.engagement import EngagementScorer
from facecast.clips.pipeline import WINDOW_S, Analysis, AnalysisOptions, engagement_weights, score_window
from facecast.clips.report import EngagementReport
from facecast.clips.scoring import Observation, fill_scores
from facecast.store.rows import StoredAnalysis


class CannotRescore(ValueError):
    """The stored analysis cannot be re-scored (the message says why and what to do instead)."""


def observations_from_faces(faces: pd.DataFrame) -> list[Observation]:
    """store.analyses.faces(id) rows → the pipeline's observations, in time order."""
    return [
        Observation(
            t_s=float(row.t_s),
            track_id=int(row.track_id),
            box=tuple(float(v) for v in row.box),  # type: ignore[arg-type]
            detection_score=float(row.detection_score),
            emotion_probs=np.asarray(row.emotion_probs, np.float32),
            style_probs=np.asarray(row.style_probs, np.float32),
            action_params=np.asarray(row.action_params, np.float32),
        )
        for row in faces.itertuples()
    ]


def rescore(
    stored: StoredAnalysis,
    faces: pd.DataFrame,
    scorer: EngagementScorer,
    engagement_model: Mapping[str, Any],
    options: AnalysisOptions | None = None,
) -> Analysis:
    """The stored analysis scored by `engagement_model` ({"version", "description"}), as a new Analysis to store."""
    options = options or AnalysisOptions()
    old = EngagementReport.from_dict(json.loads(stored.report_json))
    if stored.fingerprint != options.fingerprint(old.models, old.weights):
        raise CannotRescore(
            f"analysis {stored.id} was made by an older pipeline or other sampling settings: analyse "
            f"{old.clip.name} again to score it with the active model"
        )
    version = int(engagement_model["version"])
    models = {**old.models, scorer.client.model_name: str(version)}
    # the faces' weights stay the old ones; the engagement entry is the scorer's (ClipAnalyzer.weights)
    weights = {name: digest for name, digest in old.weights.items() if name != scorer.client.model_name}
    weights.update(engagement_weights(scorer, version))
    report = EngagementReport(
        clip=old.clip,
        faces_found=old.faces_found,
        counts=dict(old.counts),
        models=models,
        weights=weights,
        engagement_model=dict(engagement_model),
        notes=[note for note in old.notes if note.startswith("the file ends early")],
    )
    observations = observations_from_faces(faces)
    started = time.perf_counter()
    if observations:
        duration = max(old.clip.duration_s, observations[-1].t_s)
        windows = []
        for start in np.arange(0.0, max(duration, 1e-9), WINDOW_S):
            inside = [o for o in observations if start <= o.t_s < start + WINDOW_S]
            windows.append(score_window(scorer, version, float(start), inside, None, {o.track_id for o in inside}))
        fill_scores(report, windows, observations, duration)
        pictures = {(m.t_s, m.track_id): m.thumbnail_png_b64 for m in old.key_moments}
        report.key_moments = [
            replace(m, thumbnail_png_b64=pictures.get((m.t_s, m.track_id), "")) for m in report.key_moments
        ]
    else:
        report.notes.append("no faces were found in the clip, so there is no engagement prediction")
    report.notes.append(
        f"re-scored from the faces stored by analysis {stored.id} (engagement model v{old.engagement_version} → "
        f"v{version}), without decoding the clip again"
    )
    report.timings_s = {**old.timings_s, "rescore": round(time.perf_counter() - started, 4)}
    return Analysis(report, observations, options.fingerprint(models, weights))
