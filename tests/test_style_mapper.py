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
    NEW_LAYER_LR_SCALE,
    MapperTrainer,
    PairSampler,
    load_generator,
    map_images,
    parse_args,
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


# Floors for the shipped mapper on QUALITY_SETS held-out test sets (all 12 ordered style pairs each), a little under
# what it measures there (PSNR 0.82 dB over copying the source, beats copy on 0.740 of the pairs, judge-1 style
# conformity 0.433, expression preserved 0.946; `measure` of training/mapping_ablations.py). A mapper that recolours
# fails the first two: the first shipped one scored 0.2 dB over copying. Stage 3's weights (before the override
# edit) measured 0.75 dB, 0.725, 0.340 and 0.923 here, so stage 4's gains are guarded too; the style floor guards
# against losing what there is, not the 0.85 (docs/results-mapping.md).
QUALITY_SETS = 40
FLOORS = {
    "PSNR − copy": 0.7,  # dB gained over handing back the source unchanged
    "beats copy": 0.70,  # share of pairs closer to the truth than the source is
    "style (judge 1)": 0.40,
    "expression preserved": 0.92,
}


@pytest.fixture(scope="module")
def shipped_on_test_sets():
    """The shipped mapper, QUALITY_SETS held-out test sets and judge 1: what the quality and override floors read."""
    from training.mapping_ablations import Judges

    sets = build_style_sets("test", QUALITY_SETS, 128, workers=1)
    model = load_checkpoint(PROJECT_ROOT / "weights" / "style_mapper-cpu.pt")
    judges = Judges(judge=PROJECT_ROOT / "no-second-judge")  # judge 1 ships with the repo; judge 2 is built by make
    return model, sets, judges


@pytest.fixture(scope="module")
def quality(shipped_on_test_sets) -> dict[str, float]:
    from training.mapping_ablations import measure

    model, sets, judges = shipped_on_test_sets
    return measure(model, sets, judges, QUALITY_SETS)


@pytest.mark.parametrize("metric", list(FLOORS))
def test_shipped_mapper_clears_its_quality_floor(quality, metric) -> None:
    assert quality[metric] >= FLOORS[metric], f"{metric}: {quality[metric]:.3f} < floor {FLOORS[metric]}"


# An override must move the drawing toward the request (issue 15 item 4). On the same held-out sets, each set's four
# renderings mapped into its edited rendering's style with the edited parameters requested: judge 1's reading error
# over the requested parameters must beat the same mapping without the request by OVERRIDE_GAIN_FLOOR; and mouth
# requested at 0 and at 1 (realistic faces into cartoon) must move judge 1's mouth reading by MOUTH_SWEEP_FLOOR.
# Measured here: stage 4's weights 0.017 and 0.177; stage 3's, which ignored overrides, 0.0004 and 0.003.
OVERRIDE_GAIN_FLOOR = 0.01
MOUTH_SWEEP_FLOOR = 0.12


@pytest.fixture(scope="module")
def override(shipped_on_test_sets) -> dict[str, float]:
    from training.mapping_ablations import override_error, pictures

    model, sets, judges = shipped_on_test_sets
    errors = override_error(model, sets, judges, QUALITY_SETS)
    faces = pictures(sets, np.arange(QUALITY_SETS), np.zeros(QUALITY_SETS, dtype=int))  # realistic → cartoon
    mouth = torch.zeros(QUALITY_SETS, 4)
    mouth[:, ACTION_PARAMS.index("mouth")] = 1
    target = torch.full((QUALITY_SETS,), STYLES.index("cartoon"))
    readings = [
        judges.read(map_images(model, faces, target, torch.full((QUALITY_SETS, 4), value), mouth))["params"]
        for value in (0.0, 1.0)
    ]
    column = ACTION_PARAMS.index("mouth")
    return {
        "override gain": errors["MAE without override"] - errors["override MAE"],
        "mouth sweep": float((readings[1][:, column] - readings[0][:, column]).mean()),
    }


def test_an_override_moves_the_encoders_reading_toward_the_request(override) -> None:
    assert override["override gain"] >= OVERRIDE_GAIN_FLOOR, override
    assert override["mouth sweep"] >= MOUTH_SWEEP_FLOOR, override


@pytest.mark.parametrize("skip", ["full", "gated", "none"])
def test_every_skip_variant_maps_and_round_trips_through_a_checkpoint(skip, test_sets, tmp_path) -> None:
    torch.manual_seed(0)
    trainer = MapperTrainer("style_mapper", "style_mapper-cpu", torch.device("cpu"), config_overrides={"skip": skip})
    assert trainer.generator.config.skip == skip
    trainer.step(PairSampler(test_sets, torch.device("cpu"), seed=0).sample(4))
    model = load_generator(save_generator(trainer, tmp_path / f"{skip}.pt"))
    assert model.config.skip == skip
    source = torch.from_numpy(test_sets["images"][:2, 0]).permute(0, 3, 1, 2).float() / 255
    out = map_images(model, source, torch.tensor([1, 2]))
    assert out.shape == (2, 3, 128, 128) and torch.isfinite(out).all()
    if skip == "none":  # nothing of Conv1 reaches the decoder: a changed skip path cannot change the picture
        assert not hasattr(model, "skip_gate") and model.fuse_skip.in_channels == model.upconv1.out_channels


def test_loss_weights_and_config_variants_are_checked_by_name() -> None:
    from training.train_style_mapper import LAMBDA, parse_overrides

    assert parse_overrides(["rec=3", "cyc=0"], LAMBDA, "--weight") == {"rec": 3.0, "cyc": 0.0}
    with pytest.raises(SystemExit, match="--weight: expected NAME=VALUE"):
        parse_overrides(["recon=3"], LAMBDA, "--weight")
    with pytest.raises(ValueError, match="skip must be"):
        MapperTrainer("style_mapper", "style_mapper-cpu", torch.device("cpu"), config_overrides={"skip": "half"})


def test_a_zero_weighted_cycle_is_not_computed_and_the_critic_is_frozen(test_sets, tmp_path) -> None:
    from training.networks.style_judge import StyleJudge, save_style_judge

    critic_path = save_style_judge(StyleJudge(), tmp_path / "critic.pt")
    trainer = MapperTrainer(
        "style_mapper",
        "style_mapper-cpu",
        torch.device("cpu"),
        lambdas={"cyc": 0.0, "critic": 2.0},
        style_critic=critic_path,
    )
    critic_before = [p.clone() for p in trainer.style_critic.parameters()]
    losses = trainer.step(PairSampler(test_sets, torch.device("cpu"), seed=1).sample(4))
    assert "cyc" not in losses and "critic" in losses and torch.isfinite(losses["critic"])
    assert all(torch.equal(a, b) for a, b in zip(critic_before, trainer.style_critic.parameters()))


def test_perceptual_loss_compares_the_encoders_readings_of_mapped_and_true_pictures(test_sets) -> None:
    from training.train_style_mapper import perceptual_loss

    encoder = load_checkpoint(PROJECT_ROOT / "weights" / "expression_encoder-cpu.pt")
    images = torch.from_numpy(np.asarray(test_sets["images"][:8])).permute(0, 1, 4, 2, 3).float() / 255
    truth = images[:, 1]  # cartoon renderings, 128 px: reduced to the encoder's 64 px inside the loss
    assert float(perceptual_loss(encoder, truth.clone(), truth)) < 1e-6
    other_style = perceptual_loss(encoder, images[:, 0], truth)  # the same faces, drawn realistic
    other_faces = perceptual_loss(encoder, truth.roll(1, 0), truth)  # other characters and expressions
    assert 0 < float(other_style) and 0 < float(other_faces)
    mapped, truth = images[:, 0].clone().requires_grad_(True), truth.clone().requires_grad_(True)
    perceptual_loss(encoder, mapped, truth).backward()
    assert mapped.grad is not None and float(mapped.grad.abs().sum()) > 0
    assert truth.grad is None  # the truth's reading is a fixed target, never differentiated


def test_the_perceptual_encoder_is_frozen_and_its_loss_is_trained(test_sets, tmp_path) -> None:
    trainer = MapperTrainer(
        "style_mapper",
        "style_mapper-cpu",
        torch.device("cpu"),
        lambdas={"cyc": 0.0, "percept": 1.0, "adv": 0.0, "style": 0.0, "expr": 0.0},  # stage 3's recipe
        perceptual_encoder=PROJECT_ROOT / "weights" / "expression_encoder-cpu.pt",
    )
    before = [p.clone() for p in trainer.perceptual_encoder.parameters()]
    discriminator_before = [p.clone() for p in trainer.discriminator.parameters()]
    losses = trainer.step(PairSampler(test_sets, torch.device("cpu"), seed=1).sample(4))
    assert "percept" in losses and float(losses["percept"]) > 0
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.perceptual_encoder.parameters()))
    assert not any(p.requires_grad for p in trainer.perceptual_encoder.parameters())
    # with its three terms weighted 0 the discriminator is neither asked nor trained
    assert not {"adv", "style", "expr"} & set(losses) and float(losses["d"]) == 0
    assert all(torch.equal(a, b) for a, b in zip(discriminator_before, trainer.discriminator.parameters()))


def test_the_shipped_stage_is_chosen_by_the_override_without_losing_a_target() -> None:
    from training.mapping_ablations import shipped_stage, targets_met

    row = {"expression preserved": 0.91, "style (judge 1)": 0.84, "style (judge 2)": 0.9, "override MAE": 0.15}
    assert targets_met({**row, "PSNR − copy": 0.0}) == 3  # 0.84 < 0.85 and a PSNR gain must be above 0
    start = {"expression preserved": 0.91, "style (judge 2)": 0.90, "PSNR − copy": 0.3, "override MAE": 0.30}
    rows = {
        "stage 3, best.pt": start,
        "stage 4, best.pt": {**start, "override MAE": 0.25, "expression preserved": 0.92},
        "stage 4, final.pt": {**start, "override MAE": 0.24},
    }
    assert shipped_stage(rows) == "stage 4, final.pt"  # the lowest override error of those that qualify
    rows["stage 4, final.pt"]["expression preserved"] = 0.89  # below 0.90: loses a target stage 3 met
    assert shipped_stage(rows) == "stage 4, best.pt"
    rows["stage 4, best.pt"]["override MAE"] = 0.29  # a gain under OVERRIDE_GAIN does not count
    assert shipped_stage(rows) == "stage 3, best.pt"
    assert shipped_stage({"stage 4, best.pt": rows["stage 4, best.pt"]}) == "stage 4, best.pt"


def test_an_override_edits_the_content_the_decoder_draws_from(test_sets) -> None:
    from training.networks.registry import build_model

    torch.manual_seed(0)
    model = build_model("style_mapper-cpu").eval()
    last = model.params_edit_field[-1]
    assert model.config.params_edit and not last.weight.any()  # starts out drawing as before
    with torch.no_grad():  # the only way left for a request into the picture is the edit
        for layer in model.params_embedding:
            for p in layer.parameters():
                p.zero_()
        last.weight.normal_(std=0.05)
    source = torch.from_numpy(test_sets["images"][:2, 0]).permute(0, 3, 1, 2).float() / 255
    target = torch.tensor([1, 2])
    low, high = torch.zeros(2, 4), torch.ones(2, 4)
    off = torch.zeros(2, 4)
    assert torch.equal(map_images(model, source, target, low, off), map_images(model, source, target, high, off))
    on = torch.tensor([[1.0, 0, 0, 0]] * 2)  # mouth only
    moved = (map_images(model, source, target, low, on) - map_images(model, source, target, high, on)).abs()
    assert float(moved.mean()) > 1e-3
    with torch.no_grad():  # a request equal to what the encoder read edits nothing
        encoding = model.encode(source)
        read = model.heads(encoding)["source_params"]
        assert float(model.edit(encoding, read).abs().max()) == 0


def test_boolean_config_fields_parse_by_value() -> None:
    from training.train_style_mapper import parse_overrides

    known = {"params_edit": True, "skip": "gated"}
    assert parse_overrides(["params_edit=false"], known, "--config") == {"params_edit": False}
    assert parse_overrides(["params_edit=1"], known, "--config") == {"params_edit": True}
    with pytest.raises(SystemExit, match="true or false"):
        parse_overrides(["params_edit=maybe"], known, "--config")


def test_the_params_critic_is_frozen_and_its_loss_is_trained(test_sets, tmp_path) -> None:
    from training.networks.style_judge import PARAMS_CRITIC, StyleJudge, save_style_judge

    critic_path = save_style_judge(StyleJudge(PARAMS_CRITIC), tmp_path / "params_critic.pt")
    trainer = MapperTrainer(
        "style_mapper", "style_mapper-cpu", torch.device("cpu"), lambdas={"params": 2.0}, params_critic=critic_path
    )
    before = [p.clone() for p in trainer.params_critic.parameters()]
    edit_before = trainer.generator.params_edit_field[-1].weight.clone()
    sampler = PairSampler(test_sets, torch.device("cpu"), edited_fraction=1.0, seed=1)
    losses = trainer.step(sampler.sample(4))
    assert "params" in losses and float(losses["params"]) > 0
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.params_critic.parameters()))
    assert not torch.equal(edit_before, trainer.generator.params_edit_field[-1].weight)  # the edit learns
    scales = {group["lr_scale"] for group in trainer.g_optimizer.param_groups}
    assert scales == {1.0, NEW_LAYER_LR_SCALE}
    trainer.set_learning_rate(1e-5)
    assert {g["lr"] for g in trainer.g_optimizer.param_groups} == {1e-5, 1e-5 * NEW_LAYER_LR_SCALE}
    style_critic = save_style_judge(StyleJudge(), tmp_path / "style_critic.pt")
    with pytest.raises(ValueError, match="not a params critic"):
        MapperTrainer("style_mapper", "style_mapper-cpu", torch.device("cpu"), params_critic=style_critic)


def test_the_params_critic_trains_on_drawn_parameters_and_round_trips(test_sets, tmp_path) -> None:
    from training.networks.style_judge import PARAMS_CRITIC, load_style_judge, save_style_judge
    from training.style_judge import params_error, rendered_params, train_style_judge

    images, params = rendered_params(test_sets)
    assert images.shape[0] == params.shape[0] == 5 * len(test_sets["images"]) and params.shape[1] == 4
    model, history = train_style_judge(images, params, epochs=1, batch=16, config=PARAMS_CRITIC)
    assert history and all(np.isfinite(h["loss"]) for h in history)
    again = load_style_judge(save_style_judge(model, tmp_path / "params_critic.pt"))
    assert again.config == PARAMS_CRITIC
    error = params_error(again, images, params)
    assert error == params_error(model, images, params) and 0 <= error < 1
    x = torch.from_numpy(images[:3]).permute(0, 3, 1, 2).float() / 255
    assert again(x).shape == (3, 4) and bool(((again(x) >= 0) & (again(x) <= 1)).all())


@pytest.mark.parametrize("role", ["judge", "critic"])
def test_style_judge_and_critic_train_and_round_trip(role, test_sets, tmp_path) -> None:
    from training.networks.style_judge import CRITIC, JUDGE, load_style_judge, save_style_judge
    from training.style_judge import accuracy, rendered_styles, train_style_judge

    images, labels = rendered_styles(test_sets)
    assert len(images) == 5 * len(test_sets["images"]) and set(labels) == set(range(len(STYLES)))
    config = JUDGE if role == "judge" else CRITIC
    model, history = train_style_judge(images, labels, epochs=1, batch=16, config=config)
    assert history and all(np.isfinite(h["loss"]) for h in history)
    again = load_style_judge(save_style_judge(model, tmp_path / "judge.pt"))
    assert again.config == config  # the critic's other shape survives the round trip
    assert accuracy(again, images, labels) == accuracy(model, images, labels)
    assert not any(p.requires_grad for p in again.parameters())
