"""Calibrating the engagement model on a studio's own audience: the metrics manifest, its row checks and the
metric → target mapping (`manifest`). The calibration runs as `facecast train engagement` (training/
studio_engagement.py, reached through the CLI's one edge into training); the Calibrate page starts and watches it
in the background through facecast.cli.jobs."""
