-- library_items, library_feedback, ranking_weights: the expression library and its feedback
CREATE SEQUENCE library_items_id_seq;
CREATE TABLE library_items (
    id             BIGINT PRIMARY KEY DEFAULT nextval('library_items_id_seq'),
    content_sha256 VARCHAR NOT NULL UNIQUE,
    source         VARCHAR NOT NULL,  -- folder, manifest, analysis, synthetic, ...
    source_path    VARCHAR NOT NULL,  -- file path, or clip name + time for expressions taken from analyses
    style          VARCHAR NOT NULL,
    emotion        VARCHAR NOT NULL,
    character      VARCHAR,           -- NULL: unknown
    intensity      FLOAT,             -- emotion intensity in [0, 1]; NULL: unknown
    params         FLOAT[4],          -- action parameters (ACTION_PARAMS order); NULL: unknown
    emotion_probs  FLOAT[7] NOT NULL,
    style_probs    FLOAT[4] NOT NULL,
    labelled       BOOLEAN NOT NULL,  -- emotion/style come from a person's labels, not the model's heads
    embedding      FLOAT[512] NOT NULL,
    thumbnail      BLOB NOT NULL,     -- PNG of the 64 px face the embedder saw
    created_at     TIMESTAMP NOT NULL DEFAULT (current_timestamp AT TIME ZONE 'UTC'),
    updated_at     TIMESTAMP NOT NULL DEFAULT (current_timestamp AT TIME ZONE 'UTC')
);
CREATE SEQUENCE library_feedback_id_seq;
CREATE TABLE library_feedback (
    id         BIGINT PRIMARY KEY DEFAULT nextval('library_feedback_id_seq'),
    profile    VARCHAR NOT NULL,   -- a user name, or 'team:<name>'
    query_id   VARCHAR NOT NULL,   -- one shown result list (pairs are formed within it)
    item_id    BIGINT NOT NULL,    -- no REFERENCES: feedback outlives a deleted item
    kind       VARCHAR NOT NULL,   -- 'selected', 'skipped' or 'rating'
    rating     FLOAT,              -- 1..5 for 'rating'
    rank       INTEGER,            -- position it was shown at (1 = first)
    phi        FLOAT[5] NOT NULL,  -- φ values it was shown with (facecast.ranking.TERMS order)
    created_at TIMESTAMP NOT NULL DEFAULT (current_timestamp AT TIME ZONE 'UTC')
);
CREATE INDEX library_feedback_profile_idx ON library_feedback (profile);
CREATE TABLE ranking_weights (
    profile    VARCHAR PRIMARY KEY,
    weights    FLOAT[5] NOT NULL,
    pairs      INTEGER NOT NULL,   -- (selected, skipped) pairs they were learned from
    updated_at TIMESTAMP NOT NULL DEFAULT (current_timestamp AT TIME ZONE 'UTC')
);
