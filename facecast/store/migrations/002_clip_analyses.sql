-- clips, clip_analyses, clip_tracks, clip_faces: engagement analyses of video clips
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
    fingerprint      VARCHAR NOT NULL,  -- sampling settings + model versions (facecast.clips.pipeline)
    name             VARCHAR NOT NULL,  -- the file name this analysis was asked for under
    faces_found      BOOLEAN NOT NULL,
    engagement       DOUBLE,            -- NULL when no faces were found
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
    box             FLOAT[4] NOT NULL,  -- x0, y0, x1, y1 in [0, 1] of the upright frame
    detection_score FLOAT NOT NULL,
    emotion         VARCHAR NOT NULL,
    emotion_probs   FLOAT[7] NOT NULL,
    style_probs     FLOAT[4] NOT NULL,
    action_params   FLOAT[4] NOT NULL
);
CREATE INDEX clip_faces_analysis_idx ON clip_faces (analysis_id);
