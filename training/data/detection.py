"""Face-detection scenes: synthetic characters in full frames and licensed emoji composited onto backgrounds.

    python -m training.data.detection --out data/detection [--train 6000] [--val 400] [--test 800] [--test-emoji 500]
        [--train-cluttered 3000] [--val-cluttered 400] [--test-cluttered 800] [--splits NAME ...]

Every scene is rendered straight into the detector's letterboxed input (192×320 by default) through
facecast.clients.face_detector.letterbox's geometry, so training sees exactly what serving feeds the model: a 16:9, 4:3, 1:1 or
9:16 frame scaled to fit, with black bars. Three kinds of scene:

- `synthetic`: 0–5 characters from training/data/synthetic.py `render_frame` (all four styles, one style per scene
  or mixed), face heights drawn per scene from a size band between 6 % and 70 % of the frame's short side, faces
  cut by the frame border and overlapping each other a little, and sometimes an occluder over part of a face;
- `emoji`: 1–5 licensed emoji (Twemoji, Noto, OpenMoji, the sets and licences of training/data/emoji.py) pasted
  at any size, position and roll onto a synthetic background or a busy texture;
- `mixed`: emoji pasted into a synthetic character scene (both are faces to find);
- `cluttered`: 0–5 characters, sometimes with emoji, over a photograph, 1/f noise or busy texture, often with
  text on it (training/data/hard_negatives.py); one in six has no face at all. Training and validation scenes use
  training photographs, the `test_cluttered` scenes only held-out ones.

Held out for evaluation: synthetic characters of the test range of training/data/build.py (validation uses the
val range), and a quarter of the emoji *identities* (every set's drawing of, say, "sob" is in the same split, keyed
by code points), so test emoji are faces the detector never saw in any set. Every face emoji of the Unicode face
groups is used, not only the ones with an emotion label: for detection a zany face is a face.

Output per split: `images.npy` (uint8 [N, H, W, 3], loaded whole or memory-mapped) and `scenes.jsonl` (one line
per scene: kind, frame size, boxes in input pixels, and per face its style / source, identity and size relative
to the frame's short side). Deterministic for fixed arguments. ~8 ms per scene on one core.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from facecast.media.letterbox import letterbox_geometry
from facecast.vocab import STYLES
from training.data.build import SPLITS, character_ids
from training.data.hard_negatives import HELD_OUT_PHOTOS, TRAIN_PHOTOS, cluttered_background, load_photos
from training.data.emoji import (
    EMOJI_SETS, EmojiBuildError, _is_face_group, _normalise_codepoints, _render_svg, _stream_members, fetch_tarball,
)
from training.data.synthetic import (
    _background, _grade, _random_colour, character_for_id, plan_still, render_frame,
)

INPUT_HEIGHT, INPUT_WIDTH = 192, 320  # face_detector-cpu's serving input
# Frame shapes (width:height) and how often they occur: mostly 16:9 trailers, some 4:3, square and vertical video.
ASPECTS = ((16 / 9, 0.7), (4 / 3, 0.1), (1.0, 0.1), (9 / 16, 0.1))
# Face height as a fraction of the frame's short side, one band per scene so small faces come in crowds.
SIZE_BANDS = ((0.06, 0.16), (0.12, 0.3), (0.25, 0.5), (0.4, 0.7), (0.06, 0.7))
SIZE_BUCKETS = ((0.0, 0.1, "< 10 %"), (0.1, 0.2, "10–20 %"), (0.2, 0.4, "20–40 %"), (0.4, 10.0, "≥ 40 %"))
EMOJI_TEST_FRACTION = 0.25
OPENMOJI_PX = 192  # SVGs rendered at this size; the 64-px PNG sets are upscaled like any low-res artwork


def size_bucket(relative_height: float) -> str:
    for low, high, name in SIZE_BUCKETS:
        if low <= relative_height < high:
            return name
    return SIZE_BUCKETS[-1][2]


# --- emoji ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EmojiArt:
    source: str      # twemoji / noto / openmoji
    identity: str    # normalised code points, shared by the sets
    rgba: Image.Image = field(compare=False, repr=False)  # cropped to the drawing


def emoji_is_held_out(identity: str) -> bool:
    """A fixed quarter of emoji identities (all sets' drawings of them) is kept for evaluation only."""
    return (zlib.crc32(identity.encode()) % 1000) / 1000 < EMOJI_TEST_FRACTION


def _crop_alpha(rgba: Image.Image) -> Image.Image:
    box = rgba.getchannel("A").point(lambda a: 255 if a > 24 else 0).getbbox()
    return rgba.crop(box) if box else rgba


def load_emoji_art(cache: Path, art_dir: Path) -> list[EmojiArt]:
    """All face emoji of the three licensed sets as RGBA drawings; extracted once into `art_dir` (PNG)."""
    index_path = art_dir / "index.json"
    if not index_path.is_file():
        _extract_emoji_art(cache, art_dir)
    index = json.loads(index_path.read_text())
    return [EmojiArt(row["source"], row["identity"], Image.open(art_dir / row["file"]).convert("RGBA"))
            for row in index]


def _extract_emoji_art(cache: Path, art_dir: Path) -> None:
    building = art_dir.with_name(art_dir.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    rows = []
    for emoji_set in EMOJI_SETS:
        tarball = fetch_tarball(emoji_set, cache)
        if emoji_set.source == "openmoji":
            members = _stream_members(tarball, lambda n: n == "package/data/openmoji.json" or (
                n.startswith("package/color/svg/") and n.endswith(".svg")))
            entries = json.loads(members["package/data/openmoji.json"])
            for entry in entries:
                if (entry.get("group") != "smileys-emotion" or not _is_face_group(entry.get("subgroups", ""))
                        or entry.get("skintone")):
                    continue
                data = members.get(f"package/color/svg/{entry['hexcode']}.svg")
                if data is not None:
                    rows.append((emoji_set.source, _normalise_codepoints(entry["hexcode"]),
                                 _render_svg(data, OPENMOJI_PX)))
        else:
            image_set = {"twemoji": "twitter", "noto": "google"}[emoji_set.source]
            folder = f"package/img/{image_set}/64/"
            members = _stream_members(tarball, lambda n: n == "package/emoji.json" or (
                n.startswith(folder) and n.endswith(".png")))
            for entry in json.loads(members["package/emoji.json"]):
                if entry.get("category") != "Smileys & Emotion" or not _is_face_group(entry.get("subcategory", "")):
                    continue
                data = members.get(folder + entry["image"])
                if data is not None:
                    rows.append((emoji_set.source, _normalise_codepoints(entry["unified"]),
                                 Image.open(io.BytesIO(data)).convert("RGBA")))
    if not rows:
        raise EmojiBuildError(f"no face emoji found in the tarballs in {cache}")
    index = []
    for source, identity, rgba in rows:
        file = f"{source}-{identity}.png"
        _crop_alpha(rgba).save(building / file)
        index.append({"source": source, "identity": identity, "file": file})
    (building / "index.json").write_text(json.dumps(index, indent=1))
    credits = [f"- {s.title}: {s.licence} ({s.licence_url}). {s.credit}." for s in EMOJI_SETS]
    (building / "ATTRIBUTION.md").write_text(
        "# Attribution\n\nFace emoji cropped to their drawing (OpenMoji rendered from SVG), used to composite "
        "face-detection training and evaluation scenes. Each set keeps its licence:\n\n" + "\n".join(credits)
        + "\n\nApple and Facebook emoji images are proprietary and are not used.\n", encoding="utf-8")
    shutil.rmtree(art_dir, ignore_errors=True)
    building.rename(art_dir)


# --- scenes -----------------------------------------------------------------------------------------------------

@dataclass
class Scene:
    image: np.ndarray                      # uint8 [INPUT_HEIGHT, INPUT_WIDTH, 3], letterboxed
    kind: str                              # synthetic / emoji / mixed
    frame_size: tuple[int, int]            # (width, height) of the frame inside the letterbox
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # input pixels
    faces: list[dict] = field(default_factory=list)  # per box: style or emoji source, identity, relative size

    def record(self) -> dict:
        return {"kind": self.kind, "frame_width": self.frame_size[0], "frame_height": self.frame_size[1],
                "boxes": [[round(v, 2) for v in box] for box in self.boxes], "faces": self.faces}


def _pick(rng: np.random.Generator, weighted) -> object:
    values, weights = zip(*weighted)
    return values[int(rng.choice(len(values), p=np.asarray(weights) / sum(weights)))]


def _frame_size(rng: np.random.Generator) -> tuple[int, int]:
    aspect = _pick(rng, ASPECTS)
    # a nominal 1280-px-wide frame of that shape; the letterbox geometry gives its size inside the input
    width, height = (1280, round(1280 / aspect)) if aspect >= 1 else (round(1280 * aspect), 1280)
    geometry = letterbox_geometry(height, width, INPUT_HEIGHT, INPUT_WIDTH)
    return round(width * geometry.scale), round(height * geometry.scale)


def _place(frame: Image.Image, width: int, height: int) -> tuple[np.ndarray, int, int]:
    canvas = np.zeros((INPUT_HEIGHT, INPUT_WIDTH, 3), dtype=np.uint8)
    pad_x, pad_y = (INPUT_WIDTH - width) // 2, (INPUT_HEIGHT - height) // 2
    canvas[pad_y:pad_y + height, pad_x:pad_x + width] = np.asarray(frame)
    return canvas, pad_x, pad_y


def _character_scene(rng: np.random.Generator, ids: list[str], width: int, height: int, count: int,
                     background=None) -> tuple[Image.Image, list[tuple], list[dict]]:
    same_style = rng.random() < 0.6
    scene_style = STYLES[int(rng.integers(len(STYLES)))]
    band = SIZE_BANDS[int(rng.integers(len(SIZE_BANDS)))]
    faces, meta = [], []
    for _ in range(count):
        style = scene_style if same_style else STYLES[int(rng.integers(len(STYLES)))]
        character_id = ids[int(rng.integers(len(ids)))]
        plan = plan_still(int(rng.integers(1 << 31)), style=style, character_id=character_id)
        faces.append((character_for_id(character_id), plan.expression, style))
        meta.append({"style": style, "identity": character_id})
    image, boxes = render_frame(faces, width, height, rng, face_scale=band, background=background)
    return image, [tuple(float(v) for v in box) for box in boxes], meta


def _busy_texture(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """Clutter a detector must not fire on: stripes, many blobs, blurred colour noise, or all of them."""
    image = _background(width, height, rng)
    draw = ImageDraw.Draw(image)
    if rng.random() < 0.5:
        period = int(rng.integers(4, 24))
        colour = _random_colour(rng)
        for offset in range(-height, width, period * 2):
            draw.polygon([(offset, 0), (offset + period, 0), (offset + period + height, height),
                          (offset + height, height)], fill=colour)
    for _ in range(int(rng.integers(10, 60))):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(2, 0.15 * min(width, height))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x - r, y - r * rng.uniform(0.4, 1.6), x + r, y + r * rng.uniform(0.4, 1.6)], fill=_random_colour(rng))
    if rng.random() < 0.4:
        noise = (rng.random((height // 4 + 1, width // 4 + 1, 3)) * 255).astype(np.uint8)
        noise_image = Image.fromarray(noise).resize((width, height), Image.Resampling.BILINEAR)
        image = Image.blend(image, noise_image, float(rng.uniform(0.2, 0.5)))
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.2))))


def _overlaps(box: tuple, boxes: list[tuple], limit: float = 0.25) -> bool:
    for other in boxes:
        ix = max(0.0, min(box[2], other[2]) - max(box[0], other[0]))
        iy = max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
        smaller = min((box[2] - box[0]) * (box[3] - box[1]), (other[2] - other[0]) * (other[3] - other[1]))
        if smaller > 0 and ix * iy / smaller > limit:
            return True
    return False


def _paste_emoji(image: Image.Image, art: EmojiArt, rng: np.random.Generator, band: tuple[float, float],
                 taken: list[tuple]) -> tuple | None:
    """Paste one emoji at a random size / position / roll; returns its box (frame pixels) or None if no room."""
    width, height = image.size
    short = min(width, height)
    for _attempt in range(10):
        face = float(rng.uniform(*band)) * short
        scale = face / max(art.rgba.size)
        size = (max(2, round(art.rgba.width * scale)), max(2, round(art.rgba.height * scale)))
        drawing = art.rgba.resize(size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            drawing = drawing.rotate(float(rng.normal(0, 12)), resample=Image.Resampling.BICUBIC, expand=True)
        if rng.random() < 0.5:
            drawing = drawing.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        opaque = drawing.getchannel("A").point(lambda a: 255 if a > 128 else 0).getbbox()
        if opaque is None:
            return None
        # up to ~25 % of the face may fall outside the frame (a border cut)
        slack_x, slack_y = 0.25 * (opaque[2] - opaque[0]), 0.25 * (opaque[3] - opaque[1])
        x = int(rng.uniform(-opaque[0] - slack_x, width - opaque[2] + slack_x + 1))
        y = int(rng.uniform(-opaque[1] - slack_y, height - opaque[3] + slack_y + 1))
        box = (max(0.0, x + opaque[0]), max(0.0, y + opaque[1]),
               min(float(width), x + opaque[2]), min(float(height), y + opaque[3]))
        if box[2] - box[0] < 2 or box[3] - box[1] < 2 or _overlaps(box, taken):
            continue
        image.paste(drawing, (x, y), drawing)
        return box
    return None


def _occlude(image: Image.Image, box: tuple, rng: np.random.Generator) -> None:
    """Cover up to ~35 % of a face with a foreground object coming in from one side."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cover = float(rng.uniform(0.15, 0.35))
    side = int(rng.integers(4))
    if side == 0:
        rect = (x0 - w, y0 - h, x0 + cover * w, y1 + h)
    elif side == 1:
        rect = (x1 - cover * w, y0 - h, x1 + w, y1 + h)
    elif side == 2:
        rect = (x0 - w, y1 - cover * h, x1 + w, y1 + h)
    else:
        rect = (x0 - w, y0 - h, x1 + w, y0 + cover * h)
    draw = ImageDraw.Draw(image)
    (draw.rectangle if rng.random() < 0.6 else draw.ellipse)(rect, fill=_random_colour(rng))


def render_scene(seed: int, kind: str, character_pool: list[str], emoji_pool: list[EmojiArt],
                 photos: tuple[Image.Image, ...] = ()) -> Scene:
    """One letterboxed detection scene of `kind` (synthetic / emoji / mixed / cluttered), fully determined by
    `seed`; `photos` are the photographs cluttered scenes may stand in front of."""
    rng = np.random.default_rng([seed, 0xDE7EC7])
    width, height = _frame_size(rng)
    boxes: list[tuple] = []
    faces: list[dict] = []
    short = min(width, height)
    if kind == "cluttered":
        count = int(_pick(rng, ((0, 0.17), (1, 0.28), (2, 0.22), (3, 0.17), (4, 0.09), (5, 0.07))))
        image, boxes, faces = _character_scene(
            rng, character_pool, width, height, count,
            background=lambda w, h, r: cluttered_background(w, h, r, photos, _busy_texture))
        if emoji_pool and rng.random() < 0.2:
            art = emoji_pool[int(rng.integers(len(emoji_pool)))]
            box = _paste_emoji(image, art, rng, SIZE_BANDS[int(rng.integers(len(SIZE_BANDS)))], boxes)
            if box is not None:
                boxes.append(box)
                faces.append({"style": "emoji:" + art.source, "identity": art.identity})
    elif kind in ("synthetic", "mixed"):
        count = int(_pick(rng, ((0, 0.06), (1, 0.3), (2, 0.25), (3, 0.2), (4, 0.1), (5, 0.09)))) if kind == "synthetic" \
            else int(rng.integers(1, 4))
        image, boxes, faces = _character_scene(rng, character_pool, width, height, count)
        if kind == "synthetic" and boxes and rng.random() < 0.25:
            _occlude(image, boxes[int(rng.integers(len(boxes)))], rng)
    else:
        image = _busy_texture(width, height, rng) if rng.random() < 0.45 else _background(width, height, rng)
    if kind in ("emoji", "mixed"):
        band = SIZE_BANDS[int(rng.integers(len(SIZE_BANDS)))]
        for _ in range(int(rng.integers(1, 6)) if kind == "emoji" else int(rng.integers(1, 3))):
            art = emoji_pool[int(rng.integers(len(emoji_pool)))]
            box = _paste_emoji(image, art, rng, band, boxes)
            if box is not None:
                boxes.append(box)
                faces.append({"style": "emoji:" + art.source, "identity": art.identity})
        image = _grade(image, rng)
    canvas, pad_x, pad_y = _place(image, width, height)
    boxes = [(b[0] + pad_x, b[1] + pad_y, b[2] + pad_x, b[3] + pad_y) for b in boxes]
    for face, box in zip(faces, boxes):
        face["relative_height"] = round((box[3] - box[1]) / short, 4)
    return Scene(canvas, kind, (width, height), boxes, faces)


# --- splits -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SplitPlan:
    name: str
    count: int
    seed: int
    characters: str                      # a key of training.data.build.SPLITS
    emoji_held_out: bool                 # which emoji identities it draws from
    kinds: tuple[tuple[str, float], ...]  # scene kinds and their shares
    photos: tuple[str, ...] = TRAIN_PHOTOS  # photographs behind cluttered scenes (training/data/hard_negatives.py)


def split_plans(train: int, val: int, test: int, test_emoji: int, cluttered: int = 3000, val_cluttered: int = 400,
                test_cluttered: int = 800) -> list[SplitPlan]:
    mix = (("synthetic", 0.6), ("emoji", 0.25), ("mixed", 0.15))
    cluttered_only = (("cluttered", 1.0),)
    return [
        SplitPlan("train", train, 10, "train", False, mix),
        SplitPlan("val", val, 11, "val", False, mix),
        SplitPlan("test", test, 12, "test", True, (("synthetic", 1.0),)),
        SplitPlan("test_emoji", test_emoji, 13, "test", True, (("emoji", 1.0),)),
        # Added after the first detector was trained on the four above (which stay as they were, so its runs
        # can be repeated): characters in front of photographs, textures and text.
        SplitPlan("train_cluttered", cluttered, 14, "train", False, cluttered_only, TRAIN_PHOTOS),
        SplitPlan("val_cluttered", val_cluttered, 15, "val", False, cluttered_only, TRAIN_PHOTOS),
        SplitPlan("test_cluttered", test_cluttered, 16, "test", True, cluttered_only, HELD_OUT_PHOTOS),
    ]


def build_split(plan: SplitPlan, out_dir: Path, emoji_art: list[EmojiArt], progress: bool = True) -> Path:
    split_dir = out_dir / plan.name
    split_dir.mkdir(parents=True, exist_ok=True)
    first, end, _ = SPLITS[plan.characters]
    characters = character_ids(first, end)
    pool = [art for art in emoji_art if emoji_is_held_out(art.identity) == plan.emoji_held_out]
    images = np.lib.format.open_memmap(split_dir / "images.npy.tmp", mode="w+", dtype=np.uint8,
                                       shape=(plan.count, INPUT_HEIGHT, INPUT_WIDTH, 3))
    kind_rng = np.random.default_rng([plan.seed, 0x5C])
    photos = load_photos(plan.photos)
    started = time.perf_counter()
    with (split_dir / "scenes.jsonl.tmp").open("w") as handle:
        for index in range(plan.count):
            kind = _pick(kind_rng, plan.kinds)
            scene = render_scene(plan.seed * 1_000_003 + index, kind, characters, pool, photos)
            images[index] = scene.image
            handle.write(json.dumps(scene.record()) + "\n")
            if progress and ((index + 1) % 1000 == 0 or index + 1 == plan.count):
                elapsed = time.perf_counter() - started
                print(f"[detection data] {plan.name}: {index + 1}/{plan.count} scenes, {elapsed:.0f} s", flush=True)
    images.flush()
    del images
    (split_dir / "images.npy.tmp").replace(split_dir / "images.npy")
    (split_dir / "scenes.jsonl.tmp").replace(split_dir / "scenes.jsonl")
    return split_dir


def read_split(split_dir: Path, mmap: bool = False) -> tuple[np.ndarray, list[dict]]:
    """(images uint8 [N, H, W, 3], scene records) of a built split."""
    split_dir = Path(split_dir)
    if not (split_dir / "images.npy").is_file():
        raise FileNotFoundError(f"{split_dir}: no detection scenes; build them with "
                                "`python -m training.data.detection --out data/detection`")
    images = np.load(split_dir / "images.npy", mmap_mode="r" if mmap else None)
    records = [json.loads(line) for line in (split_dir / "scenes.jsonl").read_text().splitlines()]
    return images, records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/detection"))
    parser.add_argument("--cache", type=Path, default=Path("data/cache/npm"), help="npm tarballs of the emoji sets")
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--val", type=int, default=400)
    parser.add_argument("--test", type=int, default=800)
    parser.add_argument("--test-emoji", type=int, default=500)
    parser.add_argument("--train-cluttered", type=int, default=3000)
    parser.add_argument("--val-cluttered", type=int, default=400)
    parser.add_argument("--test-cluttered", type=int, default=800)
    parser.add_argument("--splits", nargs="*", default=None, help="build only these splits")
    args = parser.parse_args(argv)
    try:
        art = load_emoji_art(args.cache, args.out / "emoji_art")
    except EmojiBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    held_out = {a.identity for a in art if emoji_is_held_out(a.identity)}
    print(f"[detection data] {len(art)} emoji drawings, {len({a.identity for a in art})} identities "
          f"({len(held_out)} held out for evaluation)", flush=True)
    for plan in split_plans(args.train, args.val, args.test, args.test_emoji, args.train_cluttered,
                            args.val_cluttered, args.test_cluttered):
        if args.splits and plan.name not in args.splits:
            continue
        build_split(plan, args.out, art)
    return 0


if __name__ == "__main__":
    sys.exit(main())
