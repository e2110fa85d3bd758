"""How well facecast.mapping's "is this a face?" check works, against the served face_detector: the numbers behind
FACE_SCORE_THRESHOLD and the other constants of `locate_face`. Writes the "face-check" section of docs/benchmarks.md.

    python -m benchmarks.face_check [--url HOST:PORT]
    python -m benchmarks.face_check --choose   # where FACE_SCORE_THRESHOLD comes from (validation pictures)

FACE_SCORE_THRESHOLD is chosen (`--choose`: the lowest threshold that best separates them) on validation pictures
that share nothing with the judged ones: renderings of validation-split characters, and the photographs the detector
trains on (training/data/hard_negatives.TRAIN_PHOTOS), crops of them, 1/f noise and text. The judged pictures
without a face come from HELD_OUT_PHOTOS, which no detector training scene uses.

Pictures that are one face: the demo faces (var/demo/faces, `make demo`), the licensed emoji (data/emoji, `make
emoji`) when present, and renderings of held-out synthetic characters. Pictures without a face: scikit-image's
bundled photographs and random crops of them, noise, flat colours, a gradient, drawn shapes. Frames with a face
somewhere in them: the detector's test scenes (data/detection/test, `make detector-data`) when present.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.report import write_section
from facecast.config import PROJECT_ROOT
from facecast.mapping import FACE_SCORE_THRESHOLD, NotAFaceError, StyleMapper, locate_face
from facecast.media.images import load_rgb
from training.data.hard_negatives import HELD_OUT_PHOTOS, TRAIN_PHOTOS, fractal_background, load_photos, text_overlay
from training.evaluation import served_weights

PHOTOGRAPHS = tuple(name.removesuffix(".png") for name in HELD_OUT_PHOTOS)


def face_pictures() -> list[tuple[str, np.ndarray]]:
    from training.data.style_pairs import build_style_sets

    faces = [(f"demo:{p.name}", load_rgb(p)) for p in sorted((PROJECT_ROOT / "var/demo/faces").glob("*.png"))]
    faces += [
        (f"emoji:{p.parent.name}/{p.name}", load_rgb(p)) for p in sorted((PROJECT_ROOT / "data/emoji").glob("*/*.png"))
    ]
    sets = build_style_sets("test", 30, 128, workers=2)
    faces += [(f"synthetic {i}/{j}", sets["images"][i, j]) for i in range(30) for j in range(5)]
    return faces


def pictures_without_a_face(rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    pictures = []
    for name in PHOTOGRAPHS:
        photo = load_rgb(folder / f"{name}.png")
        pictures.append((name, photo))
        for k in range(4):
            h, w = photo.shape[:2]
            side = int(min(h, w) * rng.uniform(0.3, 0.8))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            pictures.append((f"{name} crop {k}", photo[y : y + side, x : x + side]))
    pictures += [
        ("noise", rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)),
        ("white", np.full((200, 200, 3), 255, np.uint8)),
        ("gray", np.full((200, 200, 3), 128, np.uint8)),
        ("gradient", np.repeat(np.linspace(0, 255, 200, dtype=np.uint8)[None, :, None], 200, 0).repeat(3, 2)),
    ]
    for k in range(10):
        image = Image.new("RGB", (256, 256), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            a = rng.integers(0, 256, 4)
            box = (min(a[0], a[2]), min(a[1], a[3]), max(a[0], a[2]), max(a[1], a[3]))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(
                box, fill=tuple(int(v) for v in rng.integers(0, 256, 3))
            )
        pictures.append((f"shapes {k}", np.asarray(image)))
    return pictures


def validation_pictures(rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(faces, pictures without a face) for choosing the threshold; none of them is judged by this benchmark."""
    from training.data.style_pairs import build_style_sets

    sets = build_style_sets("val", 40, 128, workers=2)
    faces = [sets["images"][i, j] for i in range(40) for j in range(5)]
    others = []
    for photo in load_photos(TRAIN_PHOTOS):
        others.append(np.asarray(photo))
        for _ in range(6):
            side = int(min(photo.size) * rng.uniform(0.3, 0.8))
            x, y = int(rng.integers(0, photo.width - side + 1)), int(rng.integers(0, photo.height - side + 1))
            others.append(np.asarray(photo.crop((x, y, x + side, y + side))))
    for _ in range(40):
        others.append(np.asarray(fractal_background(200, 200, rng)))
        plain = Image.new("RGB", (256, 160), tuple(int(v) for v in rng.integers(0, 256, 3)))
        others.append(np.asarray(text_overlay(plain, rng)))
    return faces, others


def best_scores(pictures: list[np.ndarray], detector) -> np.ndarray:
    """The score locate_face compares with FACE_SCORE_THRESHOLD, per picture (0 when nothing is detected)."""

    def score(picture: np.ndarray) -> float:
        try:  # any detection passes: its score is what is wanted
            return locate_face(picture, detector, threshold=1e-9)[1]
        except NotAFaceError:  # nothing detected at all
            return 0.0

    return np.array([score(picture) for picture in pictures])


def choose_threshold(detector) -> str:
    faces, others = validation_pictures(np.random.default_rng(1))
    face_scores, other_scores = best_scores(faces, detector), best_scores(others, detector)
    rows = ["| threshold | faces kept | pictures without a face refused |", "|---|---|---|"]
    separation = {}
    for threshold in np.round(np.arange(0.1, 0.71, 0.02), 2):
        kept, refused_share = (face_scores >= threshold).mean(), (other_scores < threshold).mean()
        rows.append(f"| {threshold:.2f} | {kept:.3f} | {refused_share:.3f} |")
        separation[float(threshold)] = round(float(kept + refused_share), 6)
    # Best separation of the two sets; of equally good thresholds the lowest, because the faces users bring
    # (artists' drawings, emoji) score lower than these renderings of the generator's own characters.
    best = max(separation.values())
    chosen = min(t for t, value in separation.items() if value == best)
    return "\n".join(
        [
            f"Validation pictures: {len(faces)} renderings of validation characters, {len(others)} without a face "
            "(training photographs and crops, 1/f noise, text). The lowest threshold with the best separation "
            f"(faces kept + pictures refused): **{chosen:.2f}** (FACE_SCORE_THRESHOLD is {FACE_SCORE_THRESHOLD}).",
            "",
            *rows,
        ]
    )


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def refused(pictures, detector) -> list[str]:
    names = []
    for name, picture in pictures:
        try:
            locate_face(picture, detector)
        except NotAFaceError:
            names.append(name)
    return names


def threshold_reach(faces, face_scores: np.ndarray, others, other_scores: np.ndarray) -> str:
    """Whether any threshold could refuse the pictures without a face that pass and keep every face: only those
    scoring under the lowest-scoring face can be (the rest need a detector that scores them lower)."""
    lowest = int(face_scores.argmin())
    floor = face_scores[lowest]
    above = [(others[i][0], float(other_scores[i])) for i in np.argsort(-other_scores) if other_scores[i] >= floor]
    listed = ", ".join(f"{name} {score:.2f}" for name, score in above) or "none"
    return (
        f"Scores (locate_face's, both views): the lowest-scoring face is {faces[lowest][0]} at "
        f"{face_scores[lowest]:.2f}; pictures without a face scoring at least that: {len(above)} ({listed}). No "
        f"threshold refuses those without refusing a face."
    )


def scenes_cropped(detector, limit: int = 150) -> tuple[int, int] | None:
    """Of the detector's test scenes with a face of ≥ 20 % of the frame: how many are cropped to a true face."""
    folder = PROJECT_ROOT / "data/detection/test"
    if not (folder / "scenes.jsonl").is_file():
        return None
    images = np.load(folder / "images.npy", mmap_mode="r")
    scenes = [json.loads(line) for line in (folder / "scenes.jsonl").open()]
    chosen = [i for i, s in enumerate(scenes) if s["faces"] and max(f["relative_height"] for f in s["faces"]) >= 0.2][
        :limit
    ]
    good = 0
    for i in chosen:
        try:
            how, _, box = locate_face(np.asarray(images[i]), detector)
        except NotAFaceError:
            continue
        good += how == "detected face" and max(iou(box, truth) for truth in scenes[i]["boxes"]) >= 0.4
    return good, len(chosen)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="use this Triton (host:port) instead of starting one")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--choose", action="store_true", help="print the threshold sweep on validation pictures")
    args = parser.parse_args(argv)
    if args.choose:
        with served_weights(
            [PROJECT_ROOT / "weights/face_detector-cpu.pt"], args.url, prefix="facecast-face-check-"
        ) as url:
            print(choose_threshold(StyleMapper.for_urls(url).detector))
        return
    faces, others = face_pictures(), pictures_without_a_face(np.random.default_rng(0))
    with served_weights(
        [PROJECT_ROOT / "weights/face_detector-cpu.pt", PROJECT_ROOT / "weights/style_mapper-cpu.pt"],
        args.url,
        prefix="facecast-face-check-",
    ) as url:
        detector = StyleMapper.for_urls(url).detector
        faces_refused, others_refused = refused(faces, detector), refused(others, detector)
        face_scores = best_scores([p for _, p in faces], detector)
        other_scores = best_scores([p for _, p in others], detector)
        cropped = scenes_cropped(detector)
        choice = choose_threshold(detector)
    lines = [
        "## face check of the style mapper (`facecast.mapping.locate_face`)",
        "",
        f"`python -m benchmarks.face_check`: the served face_detector, threshold {FACE_SCORE_THRESHOLD}.",
        "",
        "| pictures | count | refused as not a face |",
        "|---|---|---|",
        f"| one face (demo faces, licensed emoji if fetched, held-out synthetic renderings) | {len(faces)} | "
        f"{len(faces_refused)} |",
        f"| no face (photographs and crops of them, noise, flat, gradient, shapes) | {len(others)} | "
        f"{len(others_refused)} |",
        "",
        f"Faces refused: {', '.join(faces_refused) or 'none'}. Pictures without a face that pass: "
        f"{', '.join(n for n, _ in others if n not in others_refused) or 'none'}.",
        "",
        threshold_reach(faces, face_scores, others, other_scores),
    ]
    if cropped:
        lines += [
            "",
            f"Detector test scenes with a face of ≥ 20 % of the frame: {cropped[0]} of {cropped[1]} "
            "cropped to a true face (IoU ≥ 0.4).",
        ]
    lines += ["", "### Where the threshold comes from (`--choose`)", "", choice]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        print(f"→ {write_section('face-check', section)}")


if __name__ == "__main__":
    main()
