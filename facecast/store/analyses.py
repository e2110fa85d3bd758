"""Clip analyses (migration 2): `clips` is one row per file content; an analysis is one run of the pipeline over it with
given settings and models (`fingerprint`), stored whole or not at all: report, tracks and per-face rows in one
transaction. The report JSON is the document the CLI prints and the app shows; the other tables make it queryable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from facecast.store.rows import ANALYSIS_COLUMNS, AnalysisRecord, StoredAnalysis, vector_column
from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLES

if TYPE_CHECKING:  # pandas only names return types (DuckDB's .df() makes the frames)
    import pandas as pd

    from facecast.store.database import Store


class Analyses:
    """``store.analyses``: clip analyses, each stored whole or not at all (report, tracks, per-face rows)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, record: AnalysisRecord) -> int:
        """Store one clip analysis in one transaction; returns the analysis id. The clip row is created on first
        sight of its content."""
        clip, engagement = record.clip, record.engagement
        with self._store.transaction() as tx:
            tx.execute(
                "INSERT INTO clips (content_sha256, name, size_bytes, duration_s, width, height, fps, codec) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (content_sha256) DO NOTHING",
                [
                    clip.content_sha256,
                    clip.name,
                    clip.size_bytes,
                    clip.duration_s,
                    clip.width,
                    clip.height,
                    clip.fps,
                    clip.codec,
                ],
            )
            ((analysis_id,),) = tx.execute("SELECT nextval('clip_analyses_id_seq')")
            tx.execute(
                "INSERT INTO clip_analyses (id, content_sha256, fingerprint, name, faces_found, engagement, "
                "engagement_low, engagement_high, engagement_class, resonance, shareability, report_json, "
                "analysed_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    analysis_id,
                    clip.content_sha256,
                    record.fingerprint,
                    record.name,
                    record.faces_found,
                    engagement.value if engagement else None,
                    engagement.low if engagement else None,
                    engagement.high if engagement else None,
                    record.engagement_class,
                    record.resonance,
                    record.shareability,
                    record.report_json,
                    record.analysed_by,
                ],
            )
            tracks, faces = record.tracks, record.faces
            if tracks:
                tx.insert_arrow(
                    "clip_tracks",
                    pa.table(
                        {
                            "analysis_id": pa.array([analysis_id] * len(tracks), type=pa.int64()),
                            "track_id": pa.array([t.track_id for t in tracks], type=pa.int32()),
                            "first_s": pa.array([t.first_s for t in tracks], type=pa.float64()),
                            "last_s": pa.array([t.last_s for t in tracks], type=pa.float64()),
                            "observations": pa.array([t.observations for t in tracks], type=pa.int32()),
                            "screen_time_s": pa.array([t.screen_time_s for t in tracks], type=pa.float64()),
                            "dominant_emotion": pa.array([t.dominant_emotion for t in tracks]),
                            "style": pa.array([t.style for t in tracks]),
                        }
                    ),
                )
            if faces:
                tx.insert_arrow(
                    "clip_faces",
                    pa.table(
                        {
                            "analysis_id": pa.array([analysis_id] * len(faces), type=pa.int64()),
                            "track_id": pa.array([f.track_id for f in faces], type=pa.int32()),
                            "t_s": pa.array([f.t_s for f in faces], type=pa.float64()),
                            "box": vector_column([np.asarray(f.box, np.float32) for f in faces], 4),
                            "detection_score": pa.array([f.detection_score for f in faces], type=pa.float32()),
                            "emotion": pa.array([f.emotion for f in faces]),
                            "emotion_probs": vector_column([f.emotion_probs for f in faces], len(EMOTIONS)),
                            "style_probs": vector_column([f.style_probs for f in faces], len(STYLES)),
                            "action_params": vector_column([f.action_params for f in faces], len(ACTION_PARAMS)),
                        }
                    ),
                )
        return int(analysis_id)

    def find(self, content_sha256: str, fingerprint: str | None = None) -> StoredAnalysis | None:
        """The newest analysis of this file content (with these settings and models, when a fingerprint is given)."""
        sql = f"SELECT {ANALYSIS_COLUMNS} FROM clip_analyses WHERE content_sha256 = ?"
        parameters: list[Any] = [content_sha256]
        if fingerprint is not None:
            sql += " AND fingerprint = ?"
            parameters.append(fingerprint)
        rows = self._store.read_rows(sql + " ORDER BY id DESC LIMIT 1", parameters)
        return StoredAnalysis(*rows[0]) if rows else None

    def get(self, analysis_id: int) -> StoredAnalysis | None:
        rows = self._store.read_rows(f"SELECT {ANALYSIS_COLUMNS} FROM clip_analyses WHERE id = ?", [int(analysis_id)])
        return StoredAnalysis(*rows[0]) if rows else None

    def newest(self, limit: int | None = 100) -> pd.DataFrame:
        """The newest analyses first: id, name, created_at, headline scores, clip duration and the engagement model
        version that scored each (no report JSON)."""
        sql = (
            "SELECT a.id, a.name, a.created_at, a.faces_found, a.engagement, a.engagement_low, a.engagement_high, "
            "a.engagement_class, a.resonance, a.shareability, c.duration_s, a.content_sha256, a.analysed_by, "
            # reports from before model versions were all made by the default, version 1
            "coalesce(TRY_CAST(json_extract_string(a.report_json, '$.engagement_model.version') AS INTEGER), 1) "
            "AS engagement_version "
            "FROM clip_analyses a JOIN clips c USING (content_sha256) ORDER BY a.id DESC"
        )
        if limit is None:
            return self._store.read_df(sql)
        return self._store.read_df(sql + " LIMIT ?", [int(limit)])

    def faces(self, analysis_id: int) -> pd.DataFrame:
        """The per-face rows of one analysis, in time order."""
        return self._store.read_df(
            "SELECT * FROM clip_faces WHERE analysis_id = ? ORDER BY t_s, track_id", [int(analysis_id)]
        )
