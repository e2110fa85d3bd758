"""Clips the synthetic generator did not make, built inside tests: licensed emoji moving over a real photograph.

The photographs ship inside scikit-image (coffee, chelsea the cat, a rocket launch: CC0 / public domain, see
skimage/data/README.txt); the emoji are the licensed sets `make emoji` fetches (Twemoji, Noto, OpenMoji), stored
as 64-px RGB on white: the white surround is cut away with a disc mask so each face sits on the photo.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from facecast.config import PROJECT_ROOT
from facecast.media.video_writer import write_video

EMOJI_MANIFEST = PROJECT_ROOT / "data" / "emoji" / "manifest.csv"


def photo(name: str = "coffee", size: tuple[int, int] = (640, 360)) -> np.ndarray:
    """A real photograph from scikit-image's bundled data, cropped and resized to `size` (width, height)."""
    import skimage

    image = Image.open(Path(skimage.__file__).parent / "data" / f"{name}.png").convert("RGB")
    width, height = size
    scale = max(width / image.width, height / image.height)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return np.asarray(image.crop((left, top, left + width, top + height)))


def emoji(character: str, source: str = "twemoji") -> Image.Image:
    """One licensed emoji face (RGBA, transparent outside the face), or skip when `make emoji` has not run.

    In CI (.ci/run builds the emoji) a missing set is a failure, never a skip."""
    path = PROJECT_ROOT / "data" / "emoji" / source / f"{character}.png"
    if not path.is_file():
        if os.environ.get("FACECAST_REQUIRE_TRITON") == "1":
            raise FileNotFoundError(f"{path} missing: .ci/run builds it with `make emoji`")
        pytest.skip(f"{path} missing: `make emoji` fetches the licensed emoji sets")
    image = Image.open(path).convert("RGB")
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).ellipse((1, 1, image.width - 2, image.height - 2), fill=255)
    rgba = image.convert("RGBA")
    rgba.putalpha(mask)
    return rgba


def emoji_over_photo(
    path: Path,
    faces: list[tuple[str, str]],
    seconds: float = 6.0,
    fps: float = 12.0,
    size: tuple[int, int] = (640, 360),
    face_px: int = 120,
    background: str = "coffee",
) -> Path:
    """A clip of emoji (character, source) gliding across a photo; each face changes to the next of its list
    halfway through when given as "a|b" (e.g. "grin|sob"), so expressions change over time."""
    backdrop = Image.fromarray(photo(background, size))
    width, height = size
    faces_images = [
        [emoji(name, source).resize((face_px, face_px), Image.Resampling.BICUBIC) for name in character.split("|")]
        for character, source in faces
    ]
    count = max(1, int(round(seconds * fps)))

    def frames():
        for index in range(count):
            progress = index / max(1, count - 1)
            frame = backdrop.copy()
            for slot, variants in enumerate(faces_images):
                variant = variants[min(len(variants) - 1, int(progress * len(variants)))]
                lane = (slot + 0.5) / len(faces_images)
                x = int((0.1 + 0.6 * (progress if slot % 2 == 0 else 1 - progress)) * (width - face_px))
                y = int(lane * height - face_px / 2 + 10 * np.sin(6.28 * progress + slot))
                frame.paste(variant, (x, max(0, min(height - face_px, y))), variant)
            yield np.asarray(frame)

    return write_video(path, frames(), fps)


def photo_only(path: Path, seconds: float = 3.0, fps: float = 12.0, size: tuple[int, int] = (640, 360)) -> Path:
    """A slow pan over a photo with no face in it."""
    backdrop = photo("coffee", (size[0] + 80, size[1]))
    count = max(1, int(round(seconds * fps)))
    return write_video(path, (backdrop[:, i * 80 // count : i * 80 // count + size[0]] for i in range(count)), fps)
