"""How high the served face_detector scores photographs without a face, over a slow pan: the numbers behind
facecast.clips.pipeline.CONFIRM_SCORE (a track counts once one of its detections reaches it). Writes the "photo-pans"
section of docs/benchmarks.md.

    python -m benchmarks.photo_pans [--url HOST:PORT] [--no-write]

Each photograph (scikit-image's bundled ones, training/data/hard_negatives.py) is stretched to 720×405 and panned
across in 12 frames of 640×405, 80 px in all, as a trailer's slow camera move; the peak is the highest detection
score over those frames. The photographs the detector trains on say where the threshold must sit; the held-out ones
say how often it still lets a texture through.
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.report import write_section
from facecast.clients.face_detector import FaceDetector
from facecast.clips.pipeline import CONFIRM_SCORE
from facecast.config import PROJECT_ROOT
from training.data.hard_negatives import HELD_OUT_PHOTOS, TRAIN_PHOTOS, load_photos
from training.evaluation import served_weights

FRAMES, PAN_PX, SIZE = 12, 80, (720, 405)


def pan_peak(detector: FaceDetector, photo) -> float:
    picture = np.asarray(photo.resize(SIZE))
    width = SIZE[0] - PAN_PX
    frames = [picture[:, i * PAN_PX // FRAMES : i * PAN_PX // FRAMES + width] for i in range(FRAMES)]
    return max((d.score for found in detector.detect(frames) for d in found), default=0.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="use this Triton (host:port) instead of starting one")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    with served_weights([PROJECT_ROOT / "weights/face_detector-cpu.pt"], args.url, prefix="facecast-pans-") as url:
        detector = FaceDetector.for_urls(url, score_threshold=0.0)
        peaks = {
            kind: {name: pan_peak(detector, photo) for name, photo in zip(names, load_photos(names))}
            for kind, names in (("trains on", TRAIN_PHOTOS), ("held out", HELD_OUT_PHOTOS))
        }
    lines = [
        "## photo pans: the detector's peak score on photographs without a face",
        "",
        f"`python -m benchmarks.photo_pans`: the served face_detector, {FRAMES} frames panning {PAN_PX} px across each "
        f"photograph at {SIZE[0]}×{SIZE[1]}. CONFIRM_SCORE (a track counts once a detection reaches it) is "
        f"{CONFIRM_SCORE}.",
        "",
        "| photographs | photograph | peak score | confirms a track |",
        "|---|---|---|---|",
    ]
    for kind, found in peaks.items():
        for name, peak in sorted(found.items(), key=lambda item: -item[1]):
            lines.append(f"| {kind} | {name} | {peak:.2f} | {'yes' if peak >= CONFIRM_SCORE else 'no'} |")
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        print(f"→ {write_section('photo-pans', section)}")


if __name__ == "__main__":
    main()
