"""Backgrounds a face detector must not fire on: photographs, printed text and photo-like textures.

The synthetic scenes' own backgrounds (flat colours, gradients, shapes) are easy; trailers show characters over
painted sets, skies, crowds and titles. These backgrounds put the detector's training and test scenes in front of
that clutter (training/data/detection.py's `cluttered` scenes).

Photographs come from the ones scikit-image ships in its wheel (nothing is downloaded), split in two so the test
scenes and `benchmarks/face_check.py` judge the detector on photographs it never trained on:

- TRAIN_PHOTOS for training and validation scenes;
- HELD_OUT_PHOTOS for the test scenes and the face check only.

Photographs of people (astronaut, camera) are in neither: a real human face in a "no face" background would teach
the detector to miss faces. motorcycle_right and chessboard_GRAY are left out too: they are near-copies of held-out
pictures.
"""

from __future__ import annotations

import string
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

TRAIN_PHOTOS = ("clock_motion.png", "hubble_deep_field.jpg", "microaneurysms.png", "phantom.png", "retina.jpg",
                "rocket.jpg")
HELD_OUT_PHOTOS = ("coffee.png", "brick.png", "grass.png", "gravel.png", "horse.png", "coins.png", "page.png",
                   "text.png", "moon.png", "logo.png", "motorcycle_left.png", "chessboard_RGB.png", "chelsea.png",
                   "color.png", "cell.png", "ihc.png")


@lru_cache(maxsize=4)
def load_photos(names: tuple[str, ...]) -> tuple[Image.Image, ...]:
    """scikit-image's bundled photographs, as RGB."""
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    return tuple(Image.open(folder / name).convert("RGB") for name in names)


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


def photo_background(width: int, height: int, rng: np.random.Generator, photos: tuple[Image.Image, ...]
                     ) -> Image.Image:
    """A random window of a photograph at a random scale, flipped or turned, its colours shifted."""
    photo = photos[int(rng.integers(len(photos)))]
    if rng.random() < 0.5:
        photo = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.25:
        photo = photo.transpose(Image.Transpose.ROTATE_90)
    # a window covering 25–100 % of the photo's short side, stretched to the frame
    side = float(rng.uniform(0.25, 1.0)) * min(photo.size)
    aspect = width / height
    crop_w, crop_h = min(photo.width, side * max(1.0, aspect)), min(photo.height, side / min(1.0, aspect))
    x0, y0 = rng.uniform(0, photo.width - crop_w + 1e-6), rng.uniform(0, photo.height - crop_h + 1e-6)
    window = photo.resize((width, height), Image.Resampling.BILINEAR, box=(x0, y0, x0 + crop_w, y0 + crop_h))
    gains = rng.uniform(0.7, 1.3, 3)
    pixels = np.asarray(window, np.float32) * gains + rng.uniform(-30, 30)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def text_overlay(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Lines of random letters, as titles and credits put on screen (a trailer's most common non-face pattern)."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    width, height = image.size
    for _ in range(int(rng.integers(1, 8))):
        size = int(rng.integers(8, max(9, height // 5)))
        font = ImageFont.load_default(size=size)
        letters = string.ascii_letters + string.digits + "  .,:!?'-"
        line = "".join(rng.choice(list(letters), int(rng.integers(3, 30))))
        draw.text((float(rng.uniform(-0.1, 0.9)) * width, float(rng.uniform(-0.05, 0.95)) * height), line,
                  fill=_colour(rng), font=font)
    return image


def fractal_background(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """Coloured 1/f noise: clouds, foliage, rock, smoke — the spectrum of natural photographs."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    falloff = np.maximum(np.hypot(fx, fy), 1.0 / max(width, height)) ** -float(rng.uniform(1.2, 2.2))
    channels = []
    for _ in range(3):
        phase = np.exp(2j * np.pi * rng.random(falloff.shape))
        field = np.fft.irfft2(falloff * phase, s=(height, width))
        channels.append(field)
    noise = np.stack(channels, axis=2)
    mix = rng.uniform(0.2, 1.0)  # how far the channels differ: grey stone to coloured foliage
    noise = noise.mean(axis=2, keepdims=True) * (1 - mix) + noise * mix
    noise = (noise - noise.min()) / max(float(np.ptp(noise)), 1e-9)
    low, high = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    return Image.fromarray((low + noise * (high - low)).clip(0, 255).astype(np.uint8))


def cluttered_background(width: int, height: int, rng: np.random.Generator, photos: tuple[Image.Image, ...],
                         busy_texture=None) -> Image.Image:
    """One cluttered background: a photograph (most often), 1/f noise or `busy_texture`, sometimes blurred as by
    depth of field, often with text over it."""
    kind = rng.choice(3, p=(0.6, 0.25, 0.15))
    if kind == 0 or (kind == 2 and busy_texture is None):
        image = photo_background(width, height, rng, photos)
    elif kind == 1:
        image = fractal_background(width, height, rng)
    else:
        image = busy_texture(width, height, rng)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 3.0))))
    if rng.random() < 0.35:
        image = text_overlay(image, rng)
    return image
