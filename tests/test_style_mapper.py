"""The style mapper's training side: exact cross-style pairs, bounds applied inside the graph, training steps of the
mapper and both baselines, and the shipped weights doing better than copying the source."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facecast.vocab import ACTION_PARAMS, STYLE_PARAM_BOUNDS, STYLES
from tests.conftest import PROJECT_ROOT
from training.checkpoints import load_checkpoint
from training.data.style_pairs import EDITED, build_style_sets, load_style_sets, save_style_sets
from training.networks import build_model
from training.train_style_mapper import (
    MapperTrainer,
    PairSampler,
    load_generator,
    map_images,
    parse_args,
    psnr,
    save_generator,
    train,
)


@pytest.fixture(scope="module")
def test_sets() -> dict[str, np.ndarray]:
    return build_style_sets("test", 12, 128, workers=1)


def test_sets_draw_one_face_in_every_style_in_the_same_scene(test_sets) -> None:
    images = test_sets["images"]
    assert images.shape == (12, 5, 128, 128, 3) and images.dtype == np.uint8
    # the scene is shared: the top-left corner is background in most pictures, and identical across styles there
    corners = images[:, :4, :6, :6].reshape(12, 4, -1)
    same_corner = (corners == corners[:, :1]).all(axis=(1, 2))
    assert same_corner.mean() >= 0.75
    # ... while the faces differ from style to style
    assert all(not np.array_equal(images[n, 0], images[n, s]) for n in range(12) for s in range(1, 4))
    # every rendering's parameters sit inside its style's bounds
    for n in range(12):
        styles = list(STYLES) + [STYLES[int(test_sets["edited_style"][n])]]
        for row, style in enumerate(styles):
            for value, param in zip(test_sets["params"][n, row], ACTION_PARAMS):
                low, high = STYLE_PARAM_BOUNDS[style][param]
                assert low - 1e-6 <= value <= high + 1e-6


def test_sets_are_deterministic_and_round_trip(tmp_path, test_sets) -> None:
    again = build_style_sets("test", 3, 128, workers=1)
    assert np.array_equal(again["images"], test_sets["images"][:3])
    folder = save_style_sets(again, tmp_path / "test", split="test")
    loaded = load_style_sets(folder)
    assert set(loaded) == set(again)
    for name, array in again.items():  # every array back exactly, not just its shape
        assert np.array_equal(np.asarray(loaded[name]), np.asarray(array)), name
    assert not (tmp_path / "test.tmp").exists()
    with pytest.raises(FileNotFoundError, match="style_pairs"):
        load_style_sets(tmp_path / "missing")


def test_edited_rendering_changes_only_the_masked_parameters(test_sets) -> None:
    for n in range(12):
        style = int(test_sets["edited_style"][n])
        original, edited = test_sets["params"][n, style], test_sets["params"][n, EDITED]
        unchanged = test_sets["edited_mask"][n] == 0
        assert np.allclose(original[unchanged], edited[unchanged])
        assert test_sets["edited_mask"][n].sum() >= 1


def test_graph_clamps_overrides_to_the_target_style_bounds() -> None:
    torch.manual_seed(0)
    model = build_model("style_mapper-cpu").eval()
    images = torch.rand(len(STYLES) * 2, 3, 128, 128)
    target = F.one_hot(torch.arange(len(STYLES)).repeat(2), len(STYLES)).float()
    params = torch.cat([torch.zeros(len(STYLES), 4), torch.ones(len(STYLES), 4)])
    with torch.no_grad():
        applied = model(images, target, params, torch.ones_like(params))["applied_params"]
        unmasked = model(images, target, params, torch.zeros_like(params))
    for row in range(len(applied)):
        bounds = STYLE_PARAM_BOUNDS[STYLES[row % len(STYLES)]]
        expected = [bounds[p][0] if row < len(STYLES) else bounds[p][1] for p in ACTION_PARAMS]
        assert torch.allclose(applied[row], torch.tensor(expected))
    # mask 0: the source's own parameters, clamped
    lows = torch.tensor([[STYLE_PARAM_BOUNDS[STYLES[r % 4]][p][0] for p in ACTION_PARAMS] for r in range(8)])
    highs = torch.tensor([[STYLE_PARAM_BOUNDS[STYLES[r % 4]][p][1] for p in ACTION_PARAMS] for r in range(8)])
    assert torch.allclose(
        unmasked["applied_params"], torch.minimum(torch.maximum(unmasked["source_params"], lows), highs)
    )
    # a blend of two styles gets the blend of their bounds
    half = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    with torch.no_grad():
        blended = model(images[:1], half, torch.zeros(1, 4), torch.ones(1, 4))["applied_params"]
    expected = [
        (STYLE_PARAM_BOUNDS["realistic"][p][0] + STYLE_PARAM_BOUNDS["cartoon"][p][0]) / 2 for p in ACTION_PARAMS
    ]
    assert torch.allclose(blended[0], torch.tensor(expected), atol=1e-6)


def test_sampler_respects_an_excluded_style(test_sets) -> None:
    sampler = PairSampler(test_sets, torch.device("cpu"), exclude_style="anime", seed=3)
    batch = sampler.sample(64)
    anime = STYLES.index("anime")
    assert (batch.source_style != anime).all() and (batch.target_style != anime).all()
    edited = batch.params_mask.sum(1) > 0
    assert edited.any() and (~edited).any()
    assert batch.source.shape == (64, 3, 128, 128) and 0 <= batch.source.min() and batch.source.max() <= 1


@pytest.mark.parametrize("kind", ["style_mapper", "autoencoder", "cyclegan"])
def test_each_method_trains_and_round_trips(kind, test_sets, tmp_path) -> None:
    torch.manual_seed(0)
    trainer = MapperTrainer(kind, "style_mapper-cpu", torch.device("cpu"))
    sampler = PairSampler(test_sets, torch.device("cpu"), seed=0)
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    for _ in range(2):
        losses = trainer.step(sampler.sample(4))
    assert all(torch.isfinite(value) for value in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters()))
    path = save_generator(trainer, tmp_path / f"{kind}.pt", step=2)
    model = load_generator(path)
    source, styles = sampler.sample(2).source, torch.tensor([0, 3])
    out = map_images(model, source, styles)
    assert out.shape == (2, 3, 128, 128) and torch.isfinite(out).all()
    # the round trip: what was saved (the EMA generator) maps exactly as the loaded model does
    with torch.no_grad():
        saved = map_images(trainer.ema.eval(), source, styles)
    assert torch.equal(out, saved)


def test_training_loop_writes_a_checkpoint_and_summary(test_sets, tmp_path) -> None:
    save_style_sets(test_sets, tmp_path / "train", split="test")
    summary = train(
        parse_args(
            [
                "--model",
                "autoencoder",
                "--train",
                str(tmp_path / "train"),
                "--val",
                str(tmp_path / "train"),
                "--out",
                str(tmp_path / "run"),
                "--max-steps",
                "3",
                "--batch",
                "4",
                "--val-pairs",
                "8",
                "--threads",
                "1",
            ]
        )
    )
    assert summary["steps"] == 3 and (tmp_path / "run" / "best.pt").is_file()
    assert (tmp_path / "run" / "summary.json").is_file() and (tmp_path / "run" / "log.jsonl").read_text()


def test_shipped_weights_map_closer_to_the_truth_than_the_source_itself(test_sets) -> None:
    model = load_checkpoint(PROJECT_ROOT / "weights" / "style_mapper-cpu.pt")
    images = torch.from_numpy(test_sets["images"][:, :4]).permute(0, 1, 4, 2, 3).float() / 255
    rows = torch.arange(12)
    source_style, target_style = rows % 4, (rows % 4 + 1 + rows // 4) % 4
    source, truth = images[rows, source_style], images[rows, target_style]
    mapped = map_images(model, source, target_style)
    assert psnr(mapped, truth).mean() > psnr(source, truth).mean()
