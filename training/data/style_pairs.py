"""Exact cross-style pairs for the style mapper (issue 6): one character and expression drawn in all four styles.

The synthetic painter draws a `Character` (an identity, independent of style) with an `Expression` in any style,
so the same face in the same scene (background, position, size, roll, yaw, lighting) can be drawn four times: each
drawing is the exact ground truth of mapping any of the others into its style. The action parameters are clipped
to each style's bounds by the painter itself (seed 003 Table 5), so a target rendering is always inside its
style's range, like the mapper's output.

A *style set* is those four renderings plus a fifth, "edited", one: the same face in one random style with some of
its four action parameters (mouth, eye, brow, cheek) set to new random values. It is the ground truth for a user's
override: map any of the four into the edited style with those parameters pushed.

Sets are built per split with the character ranges of training/data/build.py (train 0–1199, val 1200–1299,
test 1300–1499), so validation and test faces belong to characters the mapper has never seen. A split is stored as
plain .npy files (memory-mappable, one array per field) in a folder:

    python -m training.data.style_pairs --split train --count 16000 --out data/style_pairs/train [--workers N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import time
from pathlib import Path

import numpy as np

from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLES
from training.data.build import SPLITS, character_ids
from training.data.synthetic import (
    _SUPERSAMPLE,
    Character,
    Expression,
    _background,
    _clamp,
    _grade,
    action_params,
    character_for_id,
    draw_face,
    emotion_of,
    expression_for,
    expression_in_style,
)

#: Rows of a set's `images`: the four styles in vocabulary order, then the edited rendering.
EDITED = len(STYLES)
#: Per-split seed offsets, so the splits never share a scene even where counts overlap. "judge" draws the "val"
#: characters in scenes of its own: the style judge of training/style_judge.py learns from them (issue 15).
SPLIT_SEEDS = {"train": 11, "val": 12, "test": 13, "judge": 14}
CHARACTER_RANGES = {**SPLITS, "judge": SPLITS["val"]}
_PARAM_FIELDS = ("mouth_open", "eye_open", "brow_raise", "cheek_raise")  # ACTION_PARAMS as Expression fields


@dataclasses.dataclass(frozen=True)
class Scene:
    """Everything about a picture that is not the face's style: drawn once, reused for every style."""

    background_seed: int
    face_seed: int
    grade_seed: int
    fill: float
    centre: tuple[float, float]   # as fractions of the canvas
    roll_degrees: float
    yaw: float
    body: bool


def sample_scene(rng: np.random.Generator, character: Character) -> Scene:
    """A random scene with the statistics of synthetic.render_face (face 55–100 % of the crop, roll ±15°, ...)."""
    fill = float(rng.uniform(0.8, 1.0)) if rng.random() < 0.45 else float(rng.uniform(0.55, 0.85))
    slack = (1 - fill) / 2
    centre = (0.5 + float(rng.uniform(-slack, slack)), 0.5 + float(rng.uniform(-slack, slack)))
    seeds = rng.integers(1 << 62, size=3)
    return Scene(int(seeds[0]), int(seeds[1]), int(seeds[2]), fill, centre,
                 _clamp(float(rng.normal(0, 7)), -15, 15), _clamp(float(rng.normal(0, 0.25)), -0.5, 0.5),
                 character.kind != "emoji" and bool(rng.random() < 0.5))


def render_in_style(character: Character, expression: Expression, style: str, scene: Scene,
                    size: int) -> np.ndarray:
    """uint8 [size, size, 3]: the face drawn in `style`; the same scene gives the same picture around it."""
    canvas = size * _SUPERSAMPLE
    image = _background(canvas, canvas, np.random.default_rng(scene.background_seed))
    draw_face(image, character, expression, style, (scene.centre[0] * canvas, scene.centre[1] * canvas),
              scene.fill * canvas, np.random.default_rng(scene.face_seed), roll_degrees=scene.roll_degrees,
              yaw=scene.yaw, body=scene.body)
    return np.asarray(_grade(image.reduce(_SUPERSAMPLE), np.random.default_rng(scene.grade_seed)))


def edit_params(expression: Expression, rng: np.random.Generator) -> tuple[Expression, np.ndarray]:
    """The expression with 1–4 of its action parameters set to new values in [0, 1]; the mask says which."""
    mask = rng.random(len(ACTION_PARAMS)) < 0.5
    if not mask.any():
        mask[int(rng.integers(len(ACTION_PARAMS)))] = True
    values = rng.random(len(ACTION_PARAMS))
    changes = {field: float(value) for field, value, on in zip(_PARAM_FIELDS, values, mask) if on}
    return dataclasses.replace(expression, **changes), mask.astype(np.float32)


def style_set(split: str, index: int, size: int) -> dict[str, np.ndarray]:
    """Set `index` of `split`: images [5, S, S, 3] (four styles, then the edited one) and their labels."""
    first, end, _ = CHARACTER_RANGES[split]
    rng = np.random.default_rng([SPLIT_SEEDS[split], index, 0x57A1])
    character = character_for_id(character_ids(first, end)[int(rng.integers(end - first))])
    emotion = EMOTIONS[int(rng.integers(len(EMOTIONS)))]
    intensity = 0.35 + 0.65 * float(rng.random()) ** 0.8 if emotion != "neutral" else 0.0
    expression = expression_for(emotion, intensity, rng)
    scene = sample_scene(rng, character)
    edited_style = int(rng.integers(len(STYLES)))
    edited, mask = edit_params(expression, rng)

    faces = [(expression, style) for style in STYLES] + [(edited, STYLES[edited_style])]
    return {
        "images": np.stack([render_in_style(character, ex, style, scene, size) for ex, style in faces]),
        "emotions": np.array([EMOTIONS.index(emotion_of(expression_in_style(ex, style))[0]) for ex, style in faces],
                             dtype=np.int64),
        "params": np.stack([action_params(ex, style) for ex, style in faces]),
        "edited_style": np.int64(edited_style),
        "edited_mask": mask,
        "character": np.int64(int(character.character_id[1:])),
    }


def _build_chunk(arguments: tuple[str, int, int, int]) -> dict[str, np.ndarray]:
    split, start, stop, size = arguments
    sets = [style_set(split, index, size) for index in range(start, stop)]
    return {field: np.stack([s[field] for s in sets]) for field in sets[0]}


def build_style_sets(split: str, count: int, size: int, workers: int = 0) -> dict[str, np.ndarray]:
    """Sets 0..count-1 of a split, stacked per field (deterministic: the same arguments give the same bytes)."""
    workers = workers or max(1, multiprocessing.cpu_count())
    chunk = max(1, min(256, count // (4 * workers) or 1))
    jobs = [(split, start, min(start + chunk, count), size) for start in range(0, count, chunk)]
    if workers == 1:
        parts = [_build_chunk(job) for job in jobs]
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_build_chunk, jobs)
    return {field: np.concatenate([part[field] for part in parts]) for field in parts[0]}


def save_style_sets(sets: dict[str, np.ndarray], out: Path, **meta) -> Path:
    """One .npy per field plus meta.json; written to a temporary folder and renamed, so never half there."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for field, array in sets.items():
        np.save(tmp / f"{field}.npy", array)
    (tmp / "meta.json").write_text(json.dumps({**meta, "count": int(len(sets["images"])),
                                               "size": int(sets["images"].shape[2]), "styles": list(STYLES),
                                               "emotions": list(EMOTIONS), "params": list(ACTION_PARAMS)}, indent=1))
    if out.exists():
        for stale in out.iterdir():
            stale.unlink()
        out.rmdir()
    tmp.rename(out)
    return out


def load_style_sets(folder: Path, mmap: bool = True) -> dict[str, np.ndarray]:
    folder = Path(folder)
    if not (folder / "meta.json").exists():
        raise FileNotFoundError(f"no style sets in {folder}: build them with `python -m training.data.style_pairs`")
    return {path.stem: np.load(path, mmap_mode="r" if mmap else None) for path in sorted(folder.glob("*.npy"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=sorted(SPLIT_SEEDS), required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=0, help="processes (default: every core)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    sets = build_style_sets(args.split, args.count, args.size, args.workers)
    save_style_sets(sets, args.out, split=args.split)
    print(f"[style-pairs] {args.split}: {args.count} sets × 5 renderings at {args.size} px → {args.out} "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
