"""A store file as facecast wrote it before the store became a package (main at 4282c63, schema version 3), built
by this script rather than committed as a binary: `python -m tests.legacy_store OUT.duckdb`.

The DDL below is what that version's f-string migrations rendered, copied once and frozen here, independently of
facecast/store/migrations/*.sql: if a shipped migration file is ever edited, a fresh store and this file stop
having the same schema, and tests/test_store.py says so. Every table gets rows, so an upgrade test can check that
nothing is lost.
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb

SCHEMA_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    applied_at  TIMESTAMP NOT NULL DEFAULT (current_timestamp AT TIME ZONE 'UTC'),
    description VARCHAR NOT NULL
)
"""

MIGRATIONS_AT_4282C63 = [
    (
        1,
        "images_classified: one row per classified image",
        """
CREATE SEQUENCE images_classified_id_seq;
CREATE TABLE images_classified (
    id             BIGINT PRIMARY KEY DEFAULT nextval('images_classified_id_seq'),
    content_sha256 VARCHAR NOT NULL,
    source_path    VARCHAR NOT NULL,
    model_name     VARCHAR NOT NULL,
    model_version  VARCHAR NOT NULL,
    emotion        VARCHAR NOT NULL,
    emotion_probs  FLOAT[7] NOT NULL,
    style          VARCHAR NOT NULL,
    style_probs    FLOAT[4] NOT NULL,
    action_params  FLOAT[4] NOT NULL,
    created_at     TIMESTAMP NOT NULL DEFAULT (current_timestamp AT TIME ZONE 'UTC')
);
CREATE INDEX images_classified_content_sha256_idx ON images_classified (content_sha256);
""",
    ),
    (
        2,
        "clips, clip_analyses, clip_tracks, clip_faces: engagement analyses of video clips",
        """
CREATE TABLE clips (
    content_sha256 VARCHAR PRIMARY KEY,
    name           VARCHAR NOT NULL,
    size_bytes     BIGINT NOT NULL,
    duration_s     DOUBLE NOT NULL,
    width          INTEGER NOT NULL,
    height         INTEGER NOT NULL,
    fps            DOUBLE NOT NULL,
    codec          VARCHAR NOT NULL,
    first_seen_at  TIMESTAMP NOT NULL DEFAULT (current_timestamp AT TIME ZONE 'UTC')
);
CREATE SEQUENCE clip_analyses_id_seq;
CREATE TABLE clip_analyses (
    id               BIGINT PRIMARY KEY DEFAULT nextval('clip_analyses_id_seq'),
    content_sha256   VARCHAR NOT NULL REFERENCES clips (content_sha256),
    fingerprint      VARCHAR NOT NULL,
    name             VARCHAR NOT NULL,
    faces_found      BOOLEAN NOT NULL,
    engagement       DOUBLE,
    engagement_low   DOUBLE,
    engagement_high  DOUBLE,
    engagement_class VARCHAR,
    resonance        DOUBLE,
    shareability     DOUBLE,
    report_json      VARCHAR NOT NULL,
    created_at       TIMESTAMP NOT NULL DEFAULT (current_timestamp AT TIME ZONE 'UTC')
);
CREATE INDEX clip_analyses_content_idx ON clip_analyses (content_sha256, fingerprint);
CREATE TABLE clip_tracks (
    analysis_id      BIGINT NOT NULL REFERENCES clip_analyses (id),
    track_id         INTEGER NOT NULL,
    first_s          DOUBLE NOT NULL,
    last_s           DOUBLE NOT NULL,
    observations     INTEGER NOT NULL,
    screen_time_s    DOUBLE NOT NULL,
    dominant_emotion VARCHAR NOT NULL,
    style            VARCHAR NOT NULL,
    PRIMARY KEY (analysis_id, track_id)
);
CREATE TABLE clip_faces (
    analysis_id     BIGINT NOT NULL REFERENCES clip_analyses (id),
    track_id        INTEGER NOT NULL,
    t_s             DOUBLE NOT NULL,
    box             FLOAT[4] NOT NULL,
    detection_score FLOAT NOT NULL,
    emotion         VARCHAR NOT NULL,
    emotion_probs   FLOAT[7] NOT NULL,
    style_probs     FLOAT[4] NOT NULL,
    action_params   FLOAT[4] NOT NULL
);
CREATE INDEX clip_faces_analysis_idx ON clip_faces (analysis_id);
""",
    ),
    (
        3,
        "library_items, library_feedback, ranking_weights: the expression library and its feedback",
        """
CREATE SEQUENCE library_items_id_seq;
CREATE TABLE library_items (
    id             BIGINT PRIMARY KEY DEFAULT nextval('library_items_id_seq'),
    content_sha256 VARCHAR NOT NULL UNIQUE,
    source         VARCHAR NOT NULL,
    source_path    VARCHAR NOT NULL,
    style          VARCHAR NOT NULL,
    emotion        VARCHAR NOT NULL,
    character      VARCHAR,
    intensity      FLOAT,
    params         FLOAT[4],
    emotion_probs  FLOAT[7] NOT NULL,
    style_probs    FLOAT[4] NOT NULL,
    labelled       BOOLEAN NOT NULL,
    embedding      FLOAT[512] NOT NULL,
    thumbnail      BLOB NOT NULL,
    created_at     TIMESTAMP NOT NULL DEFAULT (current_timestamp AT TIME ZONE 'UTC'),
    updated_at     TIMESTAMP NOT NULL DEFAULT (current_timestamp AT TIME ZONE 'UTC')
);
CREATE SEQUENCE library_feedback_id_seq;
CREATE TABLE library_feedback (
    id         BIGINT PRIMARY KEY DEFAULT nextval('library_feedback_id_seq'),
    profile    VARCHAR NOT NULL,
    query_id   VARCHAR NOT NULL,
    item_id    BIGINT NOT NULL,
    kind       VARCHAR NOT NULL,
    rating     FLOAT,
    rank       INTEGER,
    phi        FLOAT[5] NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (current_timestamp AT TIME ZONE 'UTC')
);
CREATE INDEX library_feedback_profile_idx ON library_feedback (profile);
CREATE TABLE ranking_weights (
    profile    VARCHAR PRIMARY KEY,
    weights    FLOAT[5] NOT NULL,
    pairs      INTEGER NOT NULL,
    updated_at TIMESTAMP NOT NULL DEFAULT (current_timestamp AT TIME ZONE 'UTC')
);
""",
    ),
]

# One row (or two) in every table, with values a test can recognise.
ROWS = """
INSERT INTO images_classified (content_sha256, source_path, model_name, model_version, emotion, emotion_probs,
    style, style_probs, action_params)
VALUES ('a1', '/faces/grin.png', 'expression_encoder', '1', 'happiness', [0.7, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05],
    'cartoon', [0.1, 0.7, 0.1, 0.1], [0.8, 0.6, 0.5, 0.9]);
INSERT INTO clips VALUES ('c1', 'cut-a.mp4', 1234, 6.0, 640, 360, 12.0, 'h264', TIMESTAMP '2026-12-01 10:00:00');
INSERT INTO clip_analyses (content_sha256, fingerprint, name, faces_found, engagement, engagement_low,
    engagement_high, engagement_class, resonance, shareability, report_json)
VALUES ('c1', 'fp1', 'cut-a.mp4', true, 0.61, 0.3, 0.9, 'medium', 0.5, 0.4, '{"clip": {"name": "cut-a.mp4"}}');
INSERT INTO clip_tracks VALUES (1, 1, 0.0, 5.9, 24, 5.9, 'happiness', 'cartoon');
INSERT INTO clip_faces VALUES (1, 1, 0.25, [0.1, 0.1, 0.4, 0.5], 0.7, 'happiness',
    [0.7, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05], [0.1, 0.7, 0.1, 0.1], [0.8, 0.6, 0.5, 0.9]);
INSERT INTO library_items (content_sha256, source, source_path, style, emotion, character, intensity, params,
    emotion_probs, style_probs, labelled, embedding, thumbnail)
VALUES ('l1', 'folder', '/faces/rage.png', 'anime', 'anger', 'Rin', 0.8, [0.6, 0.7, 0.1, 0.2],
    [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], true,
    (SELECT list_transform(range(512), lambda i: (i % 7)::FLOAT / 7.0))::FLOAT[512], '\\x89PNG'::BLOB),
    ('l2', 'folder', '/faces/sob.png', 'cartoon', 'sadness', NULL, NULL, NULL,
    [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], false,
    (SELECT list_transform(range(512), lambda i: (i % 5)::FLOAT / 5.0))::FLOAT[512], '\\x89PNG'::BLOB);
INSERT INTO library_feedback (profile, query_id, item_id, kind, rating, rank, phi)
VALUES ('ana', 'q1', 1, 'selected', NULL, 1, [0.9, 0.8, 0.5, 0.5, 0.5]),
       ('ana', 'q1', 2, 'skipped', NULL, 2, [0.2, 0.3, 0.5, 0.5, 0.5]);
INSERT INTO ranking_weights (profile, weights, pairs) VALUES ('ana', [0.3, 0.2, 0.2, 0.2, 0.1], 1);
"""


def build_legacy_store(path: str | Path) -> Path:
    """Write a schema-version-3 store with rows in every table, the way main at 4282c63 migrated a new file."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; the legacy store is built into a new file")
    connection = duckdb.connect(str(path))
    try:
        for version, description, sql in MIGRATIONS_AT_4282C63:
            connection.execute("BEGIN TRANSACTION")
            connection.execute(SCHEMA_VERSION_TABLE)
            connection.execute(sql)
            connection.execute(
                "INSERT INTO schema_version (version, description) VALUES (?, ?)", [version, description]
            )
            connection.execute("COMMIT")
        connection.execute(ROWS)
    finally:
        connection.close()
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.legacy_store OUT.duckdb")
    print(build_legacy_store(sys.argv[1]))
