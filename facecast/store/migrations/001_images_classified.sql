-- images_classified: one row per classified image
CREATE SEQUENCE images_classified_id_seq;
CREATE TABLE images_classified (
    id             BIGINT PRIMARY KEY DEFAULT nextval('images_classified_id_seq'),
    content_sha256 VARCHAR NOT NULL,
    source_path    VARCHAR NOT NULL,
    model_name     VARCHAR NOT NULL,
    model_version  VARCHAR NOT NULL,
    emotion        VARCHAR NOT NULL,
    emotion_probs  FLOAT[7] NOT NULL,  -- order of facecast.vocab.EMOTIONS
    style          VARCHAR NOT NULL,
    style_probs    FLOAT[4] NOT NULL,  -- order of facecast.vocab.STYLES
    action_params  FLOAT[4] NOT NULL,  -- mouth, eye, brow, cheek (facecast.vocab.ACTION_PARAMS)
    created_at     TIMESTAMP NOT NULL DEFAULT (current_timestamp AT TIME ZONE 'UTC')
);
CREATE INDEX images_classified_content_sha256_idx ON images_classified (content_sha256);
