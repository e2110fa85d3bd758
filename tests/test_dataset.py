"""training.data.dataset and training.data.augment."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from facecast.media.images import load_face
from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLES
from training.data.augment import augment_batch
from training.data.dataset import FaceImageDataset, concat_frames
from training.data.manifest import COLUMNS, read_manifest, write_manifest


def _write_manifest(folder, rows: list[dict]) -> pd.DataFrame:
    """Write one image per row (random colours, various sizes and modes) and a manifest; return it as read."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for number, row in enumerate(rows):
        height, width = row.pop("shape", (40, 30))
        mode = row.pop("mode", "RGB")
        channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
        pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
        path = folder / f"face{number}.png"
        image.save(path)
        row["path"] = str(path)
    write_manifest(pd.DataFrame(rows), folder / "manifest.csv")
    return read_manifest(folder / "manifest.csv")


@pytest.fixture
def synthetic_frame(tmp_path):
    return _write_manifest(
        tmp_path / "synthetic",
        [
            {
                "emotion": "happiness",
                "style": "cartoon",
                "mouth": 0.8,
                "eye": 0.5,
                "brow": 0.4,
                "cheek": 0.9,
                "character": "a",
                "source": "synthetic",
                "shape": (64, 64),
            },
            {
                "emotion": "anger",
                "style": "anime",
                "mouth": 0.1,
                "eye": 0.3,
                "brow": 0.05,
                "cheek": 0.2,
                "character": "b",
                "source": "synthetic",
                "shape": (30, 50),
                "mode": "RGBA",
            },
            {
                "emotion": "neutral",
                "style": "realistic",
                "mouth": 0.0,
                "eye": 1.0,
                "brow": 0.5,
                "cheek": 0.5,
                "character": "c",
                "source": "synthetic",
                "shape": (8, 8),
                "mode": "L",
            },
        ],
    )


@pytest.fixture
def emoji_frame(tmp_path):
    # Like the emoji manifest: style known, no action parameters.
    return _write_manifest(
        tmp_path / "emoji",
        [
            {"emotion": "sadness", "style": "cartoon", "character": "cry", "source": "twemoji"},
            {"emotion": "surprise", "style": "cartoon", "character": "hushed", "source": "noto"},
        ],
    )


@pytest.fixture
def studio_frame(tmp_path):
    # A studio set may know nothing but the emotion, or only some parameters.
    return _write_manifest(
        tmp_path / "studio",
        [
            {"emotion": "fear", "source": "studio", "shape": (100, 70)},
            {"emotion": "disgust", "mouth": 0.6, "source": "studio"},
        ],
    )


# --- dataset ----------------------------------------------------------------------------------------------------


def test_items_have_the_documented_shapes_and_types(synthetic_frame):
    dataset = FaceImageDataset(synthetic_frame, 32)
    assert len(dataset) == 3
    item = dataset[1]
    assert set(item) == {"image", "emotion", "style", "params", "params_mask"}
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (32, 32, 3)
    assert item["emotion"].dtype == torch.long and item["emotion"].item() == EMOTIONS.index("anger")
    assert item["style"].dtype == torch.long and item["style"].item() == STYLES.index("anime")
    assert item["params"].dtype == torch.float32 and item["params"].shape == (len(ACTION_PARAMS),)
    np.testing.assert_allclose(item["params"].numpy(), [0.1, 0.3, 0.05, 0.2], atol=1e-4)
    assert item["params_mask"].dtype == torch.bool and item["params_mask"].all()


def test_images_are_exactly_what_serving_decodes(synthetic_frame):
    dataset = FaceImageDataset(synthetic_frame, 48)
    for index, path in enumerate(synthetic_frame["path"]):
        np.testing.assert_array_equal(dataset[index]["image"].numpy(), load_face(path, 48))


def test_unknown_style_and_parameters_are_masked(emoji_frame, studio_frame):
    emoji = FaceImageDataset(emoji_frame, 16)
    assert emoji[0]["style"].item() == STYLES.index("cartoon")
    assert torch.isnan(emoji[0]["params"]).all() and not emoji[0]["params_mask"].any()

    studio = FaceImageDataset(studio_frame, 16)
    assert studio[0]["style"].item() == -1
    assert not studio[0]["params_mask"].any()
    assert studio[1]["params_mask"].tolist() == [True, False, False, False]
    assert studio[1]["params"][0].item() == pytest.approx(0.6, abs=1e-4)
    assert torch.isnan(studio[1]["params"][1:]).all()


def test_mixed_manifests_batch_through_a_dataloader(synthetic_frame, emoji_frame, studio_frame):
    frame = concat_frames(synthetic_frame, emoji_frame, studio_frame)
    assert list(frame.columns) == list(COLUMNS) and list(frame.index) == list(range(7))
    dataset = FaceImageDataset(frame, 24, workers=2)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=False)
    batches = list(loader)
    assert [len(b["emotion"]) for b in batches] == [4, 3]
    first = batches[0]
    assert first["image"].shape == (4, 24, 24, 3) and first["image"].dtype == torch.uint8
    assert first["params"].shape == (4, 4) and first["params_mask"].shape == (4, 4)
    everything = torch.cat([b["style"] for b in batches])
    assert everything.tolist() == [STYLES.index(s) for s in ("cartoon", "anime", "realistic", "cartoon", "cartoon")] + [
        -1,
        -1,
    ]
    masks = torch.cat([b["params_mask"] for b in batches])
    assert masks.sum(dim=1).tolist() == [4, 4, 4, 0, 0, 0, 1]


def test_threaded_and_sequential_loading_agree(tmp_path):
    frame = _write_manifest(
        tmp_path / "many", [{"emotion": EMOTIONS[i % 7], "shape": (20 + i % 9, 30)} for i in range(80)]
    )
    threaded = FaceImageDataset(frame, 16, workers=2)
    sequential = FaceImageDataset(frame, 16, workers=1)
    assert torch.equal(threaded.images, sequential.images)


def test_bad_labels_are_reported():
    frame = pd.DataFrame({"path": ["x.png"], "emotion": ["joy"]})
    with pytest.raises(ValueError, match="emotion 'joy'"):
        FaceImageDataset(frame, 16)


def test_concat_frames_edge_cases(synthetic_frame):
    empty = concat_frames()
    assert list(empty.columns) == list(COLUMNS) and len(empty) == 0
    assert len(concat_frames(synthetic_frame, synthetic_frame.iloc[:0])) == 3
    with pytest.raises(ValueError, match="lacks column"):
        concat_frames(pd.DataFrame({"path": ["a.png"]}))


# --- augmentation -----------------------------------------------------------------------------------------------


def _batch(size=(64, 64), count=16, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand((count, 3, *size), generator=generator) * 0.3 + 0.6  # light background
    images[:, :, size[0] // 4 : 3 * size[0] // 4, size[1] // 3 : 2 * size[1] // 3] = 0.1  # a dark feature
    return images


def test_augmentation_keeps_shape_dtype_and_range():
    images = _batch()
    out = augment_batch(images, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, images)
    strong = augment_batch(images, torch.Generator().manual_seed(1), strength=2.0)
    assert strong.min() >= 0 and strong.max() <= 1


def test_augmentation_is_deterministic_for_a_generator_state():
    images = _batch()
    first = augment_batch(images, torch.Generator().manual_seed(7))
    second = augment_batch(images, torch.Generator().manual_seed(7))
    other = augment_batch(images, torch.Generator().manual_seed(8))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    generator = torch.Generator().manual_seed(7)
    augment_batch(images, generator)
    assert not torch.equal(augment_batch(images, generator), first)  # the generator advances


def test_augmentation_does_not_modify_its_input_and_strength_zero_is_identity():
    images = _batch()
    before = images.clone()
    augment_batch(images, torch.Generator().manual_seed(0))
    assert torch.equal(images, before)
    assert torch.equal(augment_batch(images, torch.Generator().manual_seed(0), strength=0.0), images)


def test_augmentation_works_on_any_size_layout_and_empty_batches():
    tall = _batch(size=(48, 32), count=5)
    assert augment_batch(tall, torch.Generator().manual_seed(0)).shape == (5, 3, 48, 32)
    channels_last = _batch().contiguous(memory_format=torch.channels_last)
    assert torch.allclose(
        augment_batch(channels_last, torch.Generator().manual_seed(3)),
        augment_batch(_batch(), torch.Generator().manual_seed(3)),
        atol=1e-5,
    )
    assert augment_batch(torch.zeros(0, 3, 8, 8), torch.Generator()).shape == (0, 3, 8, 8)
    with pytest.raises(ValueError):
        augment_batch(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.Generator())
    with pytest.raises(ValueError):
        augment_batch(torch.zeros(2, 1, 8, 8), torch.Generator())


def test_mild_augmentation_keeps_images_recognisable():
    images = _batch(count=64)
    out = augment_batch(images, torch.Generator().manual_seed(5), strength=0.3)
    # The dark feature stays darker than the background in every image: the content survives.
    centre = out[:, :, 28:36, 28:36].mean(dim=(1, 2, 3))
    corners = out[:, :, :6, :6].mean(dim=(1, 2, 3))
    assert (centre < corners).all()


def test_gray_images_stay_gray_without_palette_effects():
    # Hue rotation, saturation and palette swaps act around the gray axis, so gray input stays nearly gray
    # (only the per-channel colour cast tints it).
    gray = _batch(count=32).mean(dim=1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
    out = augment_batch(gray, torch.Generator().manual_seed(2))
    spread = (out.max(dim=1).values - out.min(dim=1).values).mean()
    assert spread < 0.08


def test_augmentation_is_fast_enough():
    images = torch.rand(128, 3, 64, 64)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        augment_batch(images, generator)
    timings = []
    for _ in range(15):
        started = time.perf_counter()
        augment_batch(images, generator)
        timings.append(time.perf_counter() - started)
    median_ms = sorted(timings)[len(timings) // 2] * 1000
    # Measured 7-9 ms on 2 shared cores (grid_sample alone is 3-5 ms). The bound is loose so a busy CI machine
    # does not fail the test; it catches an accidental per-image Python loop (which costs 100+ ms).
    assert median_ms < 60, f"augment_batch took {median_ms:.1f} ms for 128x3x64x64"
