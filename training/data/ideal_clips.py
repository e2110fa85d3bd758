"""Engagement rows with ideal perception: what the clip generator knows, without rendering a face.

    python -m training.data.ideal_clips --out data/clips/pretrain --count 40000 [--workers 2]

A served engagement row (training.data.engagement_dataset) costs a rendered face crop and an expression-encoder pass
per character per step. An ideal row costs neither: every visible face at every step with its drawn emotion (its
intensity on that emotion, the rest on neutral), its true style, the drawn action parameters, the exact box, and its
visible fraction as the detection score; the targets are computed as for served rows (training.data.clips). About
10 ms a clip, so tens of thousands of clips fit in minutes.

Two uses:
  - training.engagement_ceiling rebuilds the train / calib / test splits this way to measure what perception costs;
  - `training.train_engagement --pretrain DIR` first fits the network on many ideal clips (it learns the truth's
    function: pace, reactions, tiers) and then on the served rows (it learns how perception reports it).
The pretraining clips continue the train split's seed sequence (build_clips.clip_seed(train seed, index) for index
from --first, default 100000) over the train split's characters only, so they never share a character with the
calib or test split, nor a script with the train split.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from facecast.engagement_features import (
    FRAME_FEATURE_DIM,
    MAX_CHARACTERS,
    MAX_STEPS,
    frame_features,
    step_count,
    step_times,
)
from facecast.vocab import EMOTIONS, STYLES

_NEUTRAL = EMOTIONS.index("neutral")
_ACTION_FIELDS = ("mouth_open", "eye_open", "brow_raise", "cheek_raise")  # facecast.vocab.ACTION_PARAMS, as drawn
FIRST_PRETRAIN_INDEX = 100_000  # the train split uses indices 0..count-1 of its seed sequence


def drawn_emotion_probs(emotion: np.ndarray, intensity: np.ndarray) -> np.ndarray:
    """[..., 7] probabilities a perfect, intensity-aware encoder would give: the drawn emotion's intensity on it,
    the rest on neutral (a neutral face: 1 on neutral)."""
    probs = np.zeros(emotion.shape + (len(EMOTIONS),), np.float32)
    expressive = emotion != _NEUTRAL
    strength = np.where(expressive, np.clip(intensity, 0.0, 1.0), 0.0)
    np.put_along_axis(probs, emotion[..., None].astype(np.int64), strength[..., None], axis=-1)
    probs[..., _NEUTRAL] += 1.0 - strength
    return probs


def ideal_rows(script) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features [C, T, F], mask [C, T], drawn emotion probs [C, T, 7]) of one clip from the generator's truth."""
    from training.data import clips

    steps = min(step_count(script.duration_s), MAX_STEPS)
    geo = clips.step_geometry(script, step_times(steps))
    characters = min(len(script.characters), MAX_CHARACTERS)
    features = np.zeros((MAX_CHARACTERS, MAX_STEPS, FRAME_FEATURE_DIM), np.float32)
    mask = np.zeros((MAX_CHARACTERS, MAX_STEPS), bool)
    emotion_probs = np.zeros((MAX_CHARACTERS, MAX_STEPS, len(EMOTIONS)), np.float32)
    emotion_probs[:characters, :steps] = drawn_emotion_probs(geo.emotion[:characters], geo.intensity[:characters])
    action_columns = [clips.EXPRESSION_FIELDS.index(f) for f in _ACTION_FIELDS]
    for c in range(characters):
        style = np.eye(len(STYLES), dtype=np.float32)[STYLES.index(script.characters[c].style)]
        for s in range(steps):
            visible = float(geo.visible[c, s])
            if visible <= 0:
                continue
            features[c, s] = frame_features(
                emotion_probs[c, s], style, geo.values[c, s, action_columns], np.clip(geo.box[c, s], 0, 1), visible
            )
            mask[c, s] = True
    return features, mask, emotion_probs


def _clip(index: int) -> dict:
    from training.data import clips
    from training.data.build_clips import SPLITS, clip_seed
    from training.data.engagement_dataset import clip_labels

    first, end, split_seed = SPLITS["train"]
    characters = [f"c{n:05d}" for n in range(first, end)]
    script = clips.sample_clip_script(clip_seed(split_seed, index), character_ids=characters)
    features, mask, _ = ideal_rows(script)
    return {
        "features": features.astype(np.float16),
        "mask": mask,
        "clip_id": f"pretrain-{index:06d}",
        **clip_labels(script),
    }


def build_pretraining_split(out_dir: Path, count: int, first: int = FIRST_PRETRAIN_INDEX, workers: int = 2) -> Path:
    """Write out_dir/features.npz (the layout of training.data.engagement_dataset) with `count` ideal clips."""
    from training.data.engagement_dataset import write_rows

    indices = range(first, first + count)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            rows = list(pool.map(_clip, indices, chunksize=64))
    else:
        rows = [_clip(index) for index in indices]
    return write_rows(out_dir, rows, [row["clip_id"] for row in rows])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/clips/pretrain"))
    parser.add_argument("--count", type=int, default=40000)
    parser.add_argument("--first", type=int, default=FIRST_PRETRAIN_INDEX)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    started = time.monotonic()
    path = build_pretraining_split(args.out, args.count, args.first, args.workers)
    print(f"[ideal clips] {args.count} clips in {time.monotonic() - started:.0f} s → {path}", flush=True)


if __name__ == "__main__":
    main()
