"""Cross-style terms of the expression encoder's training (training/cross_style.py) and a run that uses them."""

from __future__ import annotations

import json

import pytest
import torch

from facecast.vocab import STYLES
from training.cross_style import PairedStyleBatches, consistency_loss, majority_mask, style_mix
from training.data.style_pairs import build_style_sets, save_style_sets
from training.data.synthetic import build_stills
from training.train_expression import TrainingOptions, train


def test_consistency_is_zero_for_identical_renderings_and_grows_with_their_spread():
    torch.manual_seed(0)
    vector, logits = torch.randn(1, 1, 8), torch.randn(1, 1, 7)
    mask = torch.ones(1, 3, dtype=torch.bool)
    same = consistency_loss(vector.expand(1, 3, 8), logits.expand(1, 3, 7), mask)
    # A constant shift of the logits is the same distribution.
    shifted = consistency_loss(
        vector.expand(1, 3, 8), logits.expand(1, 3, 7) + torch.tensor([0.0, 1.0, 2.0])[None, :, None], mask
    )
    assert same.item() == pytest.approx(0, abs=1e-6) and shifted.item() == pytest.approx(0, abs=1e-5)
    near = consistency_loss(vector.expand(1, 3, 8) + 0.1 * torch.randn(1, 3, 8), logits.expand(1, 3, 7), mask)
    far = consistency_loss(vector.expand(1, 3, 8) + 1.0 * torch.randn(1, 3, 8), logits.expand(1, 3, 7), mask)
    assert 0 < near.item() < far.item()


def test_consistency_ignores_renderings_with_another_label_and_sets_of_one():
    torch.manual_seed(1)
    vectors, logits = torch.randn(2, 3, 8), torch.randn(2, 3, 7)
    vectors[0, 1], logits[0, 1] = vectors[0, 0], logits[0, 0]
    label, mask = majority_mask(torch.tensor([[2, 2, 5], [4, 1, 0]]))
    assert label[0] == 2 and mask[0].tolist() == [True, True, False]
    # Set 0 agrees on its majority; its odd rendering and set 1 (no two alike) carry no loss.
    assert consistency_loss(vectors, logits, mask).item() == pytest.approx(0, abs=1e-6)
    vectors[0, 1] = -vectors[0, 0]
    assert consistency_loss(vectors, logits, mask).item() > 0.5


def test_consistency_pulls_renderings_together():
    vectors = torch.randn(4, 3, 16, requires_grad=True)
    logits = torch.randn(4, 3, 7, requires_grad=True)
    mask = torch.ones(4, 3, dtype=torch.bool)
    before = consistency_loss(vectors, logits, mask)
    before.backward()
    with torch.no_grad():
        after = consistency_loss(vectors - 0.5 * vectors.grad, logits - 0.5 * logits.grad, mask)
    assert after.item() < before.item()


def test_style_mix_blends_two_renderings_with_the_majority_label():
    renderings = torch.stack([torch.full((3, 4, 4), value) for value in (0.0, 1.0, 10.0)])[None]  # [1, 3, 3, 4, 4]
    mask = torch.tensor([[True, True, False]])
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        mixed = style_mix(renderings, mask, generator)
        assert mixed.shape == (1, 3, 4, 4)
        # Never the rendering outside the mask (10), never one rendering alone: a weight in [0.3, 0.7].
        assert 0.3 - 1e-6 <= mixed.max().item() <= 0.7 + 1e-6
    only_one = torch.tensor([[False, True, False]])
    assert torch.equal(style_mix(renderings, only_one, generator), renderings[:, 1])


@pytest.fixture(scope="module")
def style_sets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sets") / "train"
    save_style_sets(build_style_sets("train", 6, 64, workers=1), folder, split="train")
    return folder


def test_paired_batches_leave_out_the_held_out_style(style_sets):
    batches = PairedStyleBatches(style_sets, 64, exclude_style="anime")
    group = batches.sample(5, torch.Generator().manual_seed(0))
    assert group["images"].shape == (5, 3, 64, 64, 3)
    kept = [STYLES.index(style) for style in STYLES if style != "anime"]
    assert group["style"].tolist() == [kept] * 5
    assert group["emotion"].shape == (5, 3) and group["params"].shape == (5, 3, 4)
    with pytest.raises(ValueError, match="--size 128"):
        PairedStyleBatches(style_sets, 128)


def test_training_with_style_sets_records_the_consistency_loss(tmp_path, style_sets):
    train_manifest = build_stills(tmp_path / "train", count=24, size=64, seed=0)
    val_manifest = build_stills(tmp_path / "val", count=8, size=64, seed=1)
    options = TrainingOptions(
        epochs=1, batch_size=8, pairs=str(style_sets), pair_sets=2, bf16=False, exclude_style="realistic"
    )
    summary = train([train_manifest], [val_manifest], tmp_path / "run", options)
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["train_consistency"] > 0
    assert summary["options"]["pairs"] == str(style_sets)
    assert (tmp_path / "run" / "best.pt").exists()
