"""Calibrating the engagement model on a studio's own audience: the metrics manifest and its row checks
(`manifest`), and the background fine-tune jobs the Calibrate page starts and watches (`jobs`). The fine-tune itself
is training/studio_engagement.py, reached through `facecast train engagement` (the CLI's one edge into training)."""
