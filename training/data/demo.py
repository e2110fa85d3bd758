"""Demo content for a fresh install (`make demo`, part of `make run`): faces to try in the app right away.

    python -m training.data.demo [--out var/demo]

Writes one synthetic character face per emotion × style to <out>/faces/, deterministic, in about a second.
These are characters from the test split's id range, so the shipped model never trained on them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facecast.config import load_settings
from facecast.vocab import EMOTIONS, STYLES
from training.data.synthetic import sample_still

DEMO_SIZE = 192
FIRST_DEMO_CHARACTER = 1400  # inside the held-out test range of training/data/build.py


def build_demo(out: Path) -> Path:
    faces = out / "faces"
    faces.mkdir(parents=True, exist_ok=True)
    for style_index, style in enumerate(STYLES):
        for emotion_index, emotion in enumerate(EMOTIONS):
            seed = 10_000 * (style_index + 1) + emotion_index
            character = f"c{FIRST_DEMO_CHARACTER + 7 * style_index + emotion_index:05d}"
            image, _ = sample_still(seed, size=DEMO_SIZE, style=style, emotion=emotion, character_id=character)
            target = faces / f"{style}-{emotion}.png"
            tmp = target.with_suffix(".tmp")
            image.save(tmp, format="PNG")
            tmp.replace(target)
    return faces


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=load_settings().demo_dir)
    args = parser.parse_args(argv)
    faces = build_demo(args.out)
    print(f"[demo] {len(list(faces.glob('*.png')))} demo faces in {faces}")


if __name__ == "__main__":
    main()
