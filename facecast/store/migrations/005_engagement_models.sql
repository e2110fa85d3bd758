-- engagement_models, engagement_activations: the served engagement model's versions, their model cards, which serves
CREATE TABLE engagement_models (
    version         INTEGER PRIMARY KEY,  -- the version directory in the Triton model repository (engagement/<N>)
    description     VARCHAR NOT NULL,     -- what a report says made it: "calibrated on 46 studio clips, 2026-12-08"
    created_at      TIMESTAMP NOT NULL DEFAULT (current_timestamp AT TIME ZONE 'UTC'),
    created_by      VARCHAR,
    training_json   VARCHAR NOT NULL,     -- training data summary (clips, metrics, the manifest's name)
    validation_json VARCHAR,              -- cross-validation on the studio's own clips against the default
    activatable     BOOLEAN NOT NULL      -- the validation showed it beats the default on the studio's clips
);
CREATE TABLE engagement_activations (
    activated_at TIMESTAMP NOT NULL DEFAULT (current_timestamp AT TIME ZONE 'UTC'),
    version      INTEGER NOT NULL REFERENCES engagement_models (version),
    activated_by VARCHAR NOT NULL
);
-- Version 1 is the shipped default (docs/results-engagement.md); the newest activation serves, none = version 1.
INSERT INTO engagement_models (version, description, created_by, training_json, validation_json, activatable)
VALUES (1, 'synthetic audience model v1', 'facecast',
        '{"data": "synthetic clips whose audience response is the documented function of docs/engagement-ground-truth.md"}',
        NULL, TRUE);
