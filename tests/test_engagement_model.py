"""The engagement network's behaviour beyond the generic network test: masks, character order, empty input, key
moments, calibration buffer through save / load / ONNX, and the conformal and training helpers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from export.onnx_export import export_onnx
from facecast.engagement_features import FRAME_FEATURE_DIM, INTERVAL_ORDER, MAX_CHARACTERS, MAX_STEPS
from training.checkpoints import load_checkpoint, save_checkpoint
from training.networks import build_model, get_config
from training.networks.engagement import FUSIONS, STREAMS, build_engagement

CLIP_OUTPUTS = ("engagement", "resonance", "shareability", "appeal", "class_logits")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors: with several threads on a shared 2-core machine the tests spend their time waiting for threads
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs(batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    features = torch.rand(batch, MAX_CHARACTERS, MAX_STEPS, FRAME_FEATURE_DIM, generator=generator)
    mask = (torch.rand(batch, MAX_CHARACTERS, MAX_STEPS, generator=generator) < 0.8).float()
    mask[:, :, 90:] = 0  # clips shorter than the window
    mask[:, 3] = 0  # three characters
    return features * mask.unsqueeze(-1), mask


def _variants():
    config = get_config("engagement-cpu")
    return [dataclasses.replace(config, fusion=f) for f in FUSIONS] + [
        dataclasses.replace(config, streams=s) for s in STREAMS if s != "both"
    ]


def _run(model, features, mask):
    with torch.no_grad():
        return model.eval()(features, mask)


def test_output_shapes_and_ranges() -> None:
    model = build_model("engagement-cpu")
    outputs = _run(model, *_inputs(batch=5))
    expected = {
        "engagement": (5, 1),
        "resonance": (5, 1),
        "shareability": (5, 1),
        "appeal": (5, 4),
        "class_logits": (5, 3),
        "curve": (5, MAX_STEPS),
        "moment_weights": (5, MAX_STEPS),
        "interval_logit_halfwidth": (5, len(INTERVAL_ORDER)),
    }
    for name, shape in expected.items():
        assert tuple(outputs[name].shape) == shape, name
    for name in ("engagement", "resonance", "shareability", "appeal", "curve"):
        assert ((outputs[name] >= 0) & (outputs[name] <= 1)).all(), name


@pytest.mark.parametrize("config", _variants(), ids=lambda c: f"{c.fusion}-{c.streams}")
def test_masked_character_changes_nothing(config) -> None:
    torch.manual_seed(0)
    model = build_engagement(config)
    features, mask = _inputs()
    reference = _run(model, features, mask)
    # garbage in the masked slot (a 4th character that is never observed) and in masked cells of present ones
    noisy = features.clone()
    noisy[:, 3] = torch.rand_like(noisy[:, 3]) * 5
    noisy[mask == 0] = 3.0
    changed = _run(model, noisy, mask)
    for name in (*CLIP_OUTPUTS, "curve", "moment_weights"):
        torch.testing.assert_close(changed[name], reference[name], atol=1e-5, rtol=1e-5, msg=name)
    # and dropping the empty slot altogether gives the same answer (training cuts batches to present characters)
    trimmed = _run(model, features[:, :3], mask[:, :3])
    for name in CLIP_OUTPUTS:
        torch.testing.assert_close(trimmed[name], reference[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("config", _variants(), ids=lambda c: f"{c.fusion}-{c.streams}")
def test_character_order_does_not_matter(config) -> None:
    torch.manual_seed(1)
    model = build_engagement(config)
    features, mask = _inputs()
    order = torch.tensor([2, 0, 3, 1])
    reference = _run(model, features, mask)
    permuted = _run(model, features[:, order], mask[:, order])
    for name in (*CLIP_OUTPUTS, "curve", "moment_weights"):
        torch.testing.assert_close(permuted[name], reference[name], atol=1e-5, rtol=1e-4, msg=name)


def test_a_character_that_is_present_does_change_the_output() -> None:
    """Guards the two tests above against a model that ignores its input."""
    torch.manual_seed(2)
    model = build_model("engagement-cpu")
    features, mask = _inputs()
    reference = _run(model, features, mask)
    mask[:, 3, :40] = 1
    features[:, 3, :40] = torch.rand(3, 40, FRAME_FEATURE_DIM)
    changed = _run(model, features, mask)
    assert not torch.allclose(changed["engagement"], reference["engagement"], atol=1e-4)


@pytest.mark.parametrize("config", _variants(), ids=lambda c: f"{c.fusion}-{c.streams}")
def test_all_masked_input_is_finite_in_torch_and_onnx(config, tmp_path) -> None:
    import onnxruntime as ort

    model = build_engagement(config).eval()
    features = torch.zeros(2, MAX_CHARACTERS, MAX_STEPS, FRAME_FEATURE_DIM)
    mask = torch.zeros(2, MAX_CHARACTERS, MAX_STEPS)
    mask[1, 0, :10] = 1  # one empty clip next to one with a few observations
    outputs = _run(model, features, mask)
    assert all(torch.isfinite(v).all() for v in outputs.values())
    assert torch.all(outputs["moment_weights"][0] == 0)
    path = export_onnx(model, tmp_path / "engagement.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    served = session.run(None, {"features": features.numpy(), "mask": mask.numpy()})
    assert all(np.isfinite(value).all() for value in served)


def test_moment_weights_sum_to_one_over_unmasked_steps() -> None:
    model = build_model("engagement-cpu")
    features, mask = _inputs(batch=4)
    weights = _run(model, features, mask)["moment_weights"]
    step_mask = mask.amax(1)
    torch.testing.assert_close(weights.sum(1), torch.ones(4), atol=1e-5, rtol=0)
    assert torch.all(weights[step_mask == 0] == 0)
    assert torch.all(weights[step_mask == 1] > 0)


def test_calibration_buffer_survives_save_load_and_export(tmp_path) -> None:
    import onnxruntime as ort

    model = build_model("engagement-cpu").eval()
    halfwidth = torch.linspace(0.05, 0.4, len(INTERVAL_ORDER))
    model.interval_logit_halfwidth.copy_(halfwidth)
    path = save_checkpoint(model, "engagement-cpu", tmp_path / "engagement.pt")
    loaded = load_checkpoint(path)
    torch.testing.assert_close(loaded.interval_logit_halfwidth, halfwidth)
    features, mask = _inputs(batch=2)
    onnx_path = export_onnx(loaded, tmp_path / "engagement.onnx")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (served,) = session.run(["interval_logit_halfwidth"], {"features": features.numpy(), "mask": mask.numpy()})
    np.testing.assert_allclose(served, np.tile(halfwidth.numpy(), (2, 1)), atol=1e-7)


def test_conformal_quantile_covers_the_nominal_share() -> None:
    from training.train_engagement import conformal_quantile

    rng = np.random.default_rng(0)
    calibration, fresh = rng.normal(size=2000), rng.normal(size=20000)
    width = conformal_quantile(calibration, 0.9)
    assert abs(width - 1.645) < 0.1
    assert abs((np.abs(fresh) <= width).mean() - 0.9) < 0.02
    assert conformal_quantile(np.arange(5.0), 0.9) == np.inf  # too few points for a 90 % guarantee


def test_logit_intervals_are_narrow_near_the_ends_and_stay_inside_zero_one() -> None:
    from facecast.engagement_features import logit_interval

    low, high = logit_interval(np.array([0.02, 0.5, 0.98]), 1.5)
    half = (high - low) / 2
    assert (
        np.all(low >= 0) and np.all(high <= 1) and np.all(low < [0.02, 0.5, 0.98]) and np.all(high > [0.02, 0.5, 0.98])
    )
    assert half[1] > 4 * half[0] and np.isclose(half[0], half[2])  # symmetric in p ↔ 1 − p, widest at 0.5
    assert np.isclose(high[1], 1 / (1 + np.exp(-1.5)))


def test_pair_residuals_cover_observed_leads_at_the_conformal_quantile() -> None:
    """The engagement_lead margin calibrated on one set of clips covers 90 % of the leads between fresh clips."""
    from training.train_engagement import conformal_quantile, pair_residuals

    rng = np.random.default_rng(1)

    def clips(n: int) -> tuple[np.ndarray, np.ndarray]:
        truth = rng.normal(0, 3, n)
        return truth + rng.normal(0, 0.8, n), truth  # predicted, observed logits

    margin = conformal_quantile(pair_residuals(*clips(300)), 0.9)
    assert abs(margin - 1.645 * 0.8 * np.sqrt(2)) < 0.15  # the difference of two independent errors
    fresh = pair_residuals(*clips(400))
    assert abs((fresh <= margin).mean() - 0.9) < 0.03


def test_a_lead_is_clear_beyond_the_calibrated_margin_else_by_intervals() -> None:
    from facecast.engagement_features import lead_is_clear

    assert lead_is_clear((0.8, 0.7, 0.9), (0.5, 0.4, 0.6), lead_logit=1.0)  # logits 1.39 vs 0: apart by 1.39
    assert not lead_is_clear((0.6, 0.1, 0.95), (0.5, 0.05, 0.9), lead_logit=1.0)  # 0.41 apart
    assert not lead_is_clear((0.8, 0.5, 0.9), (0.5, 0.4, 0.6))  # no margin: the intervals overlap
    assert lead_is_clear((0.8, 0.7, 0.9), (0.5, 0.4, 0.6))


def _planted_arrays(n: int = 160, steps: int = 24):
    """Clips whose engagement is the mean happiness probability of two characters (a signal any model can learn)."""
    from training.data.engagement_dataset import EngagementArrays

    rng = np.random.default_rng(0)
    features = np.zeros((n, MAX_CHARACTERS, MAX_STEPS, FRAME_FEATURE_DIM), np.float16)
    mask = np.zeros((n, MAX_CHARACTERS, MAX_STEPS), bool)
    mask[:, :2, :steps] = True
    happiness = rng.random(n)
    features[:, :2, :steps] = rng.random((n, 2, steps, FRAME_FEATURE_DIM)) * 0.2
    features[:, :2, :steps, 0] = happiness[:, None, None] + rng.normal(0, 0.05, (n, 2, steps))
    engagement = happiness.astype(np.float32)
    curve = np.zeros((n, MAX_STEPS), np.float32)
    curve[:, :steps] = engagement[:, None]
    targets = {
        "engagement": engagement,
        "resonance": engagement,
        "shareability": engagement,
        "appeal": np.repeat(engagement[:, None], 4, 1),
        "engagement_class": np.digitize(engagement, [1 / 3, 2 / 3]),
        "curve": curve,
    }
    return EngagementArrays(
        features,
        mask,
        np.full(n, steps),
        targets,
        targets,
        np.arange(n).astype(str),
        np.arange(n),
        np.full(n, 2),
        np.full(n, "cartoon"),
    )


def test_training_learns_a_planted_signal(tmp_path) -> None:
    """A few epochs on clips whose engagement is the mean happiness probability rank them far better than chance."""
    from training.evaluation import spearman
    from training.train_engagement import EngagementTrainingOptions, fit, predict

    n = 160
    arrays = _planted_arrays(n)
    engagement = arrays.targets["engagement"]
    torch.manual_seed(0)
    model = build_model("engagement-cpu")
    fit(
        model,
        arrays.subset(np.arange(120)),
        arrays.subset(np.arange(120, 140)),
        EngagementTrainingOptions(curve_epochs=1, max_epochs=6, patience=6),
        log=lambda line: None,
    )
    predictions = predict(model, arrays.subset(np.arange(140, n)))
    assert spearman(predictions["engagement"], engagement[140:]) > 0.8


def test_an_engagement_checkpoint_from_before_logit_intervals_is_refused_with_what_to_do(tmp_path) -> None:
    model = build_model("engagement-cpu")
    state = dict(model.state_dict())
    state["interval_halfwidth"] = state.pop("interval_logit_halfwidth")  # what a 2026-11 checkpoint holds
    path = tmp_path / "old-engagement.pt"
    torch.save({"network": "engagement-cpu", "state_dict": state}, path)
    with pytest.raises(ValueError, match="before 2026-12.*Retrain"):
        load_checkpoint(path)


def test_an_ensemble_of_one_network_repeated_answers_as_that_network() -> None:
    from training.networks.engagement import EngagementEnsemble

    member = build_model("engagement-cpu").eval()
    ensemble = EngagementEnsemble.of([member, member, member])
    features, mask = _inputs(batch=4)
    alone, together = _run(member, features, mask), _run(ensemble, features, mask)
    for name in ("engagement", "resonance", "shareability", "appeal", "curve", "moment_weights"):
        torch.testing.assert_close(together[name], alone[name], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.softmax(together["class_logits"], 1), torch.softmax(alone["class_logits"], 1))


def test_an_ensemble_averages_its_members_logits_and_exports_as_one_graph(tmp_path) -> None:
    import onnxruntime as ort

    from training.networks.engagement import EngagementEnsemble

    torch.manual_seed(0)
    members = [build_model("engagement-cpu").eval() for _ in range(3)]
    ensemble = EngagementEnsemble.of(members)
    features, mask = _inputs(batch=4)
    logits = torch.stack([_run(m, features, mask)["scalar_logits"] for m in members])
    outputs = _run(ensemble, features, mask)
    torch.testing.assert_close(outputs["scalar_logits"], logits.mean(0), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(logits[0], logits[1])  # the members really differ
    torch.testing.assert_close(outputs["moment_weights"].sum(1), torch.ones(4))
    ensemble.interval_logit_halfwidth.copy_(torch.linspace(0.5, 2.0, len(INTERVAL_ORDER)))
    path = save_checkpoint(ensemble, "engagement-x3-cpu", tmp_path / "ensemble.pt")
    loaded = load_checkpoint(path)
    session = ort.InferenceSession(
        str(export_onnx(loaded, tmp_path / "ensemble.onnx")), providers=["CPUExecutionProvider"]
    )
    served, halfwidth = session.run(
        ["engagement", "interval_logit_halfwidth"], {"features": features.numpy(), "mask": mask.numpy()}
    )
    np.testing.assert_allclose(served, outputs["engagement"].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(halfwidth[0], ensemble.interval_logit_halfwidth.numpy(), atol=1e-7)


def test_ensemble_training_fits_each_member_on_its_own_seed(tmp_path, monkeypatch) -> None:
    """`--network engagement-x3-cpu` trains three members apart (seeds 0, 1, 2) and calibrates their average."""
    import training.train_engagement as train_engagement

    seen = []
    real_fit = train_engagement.fit

    def recording_fit(model, train, val, options, log=print):
        seen.append((options.seed, tuple(val.clip_id[:5])))
        return real_fit(model, train, val, dataclasses.replace(options, curve_epochs=0, max_epochs=1), log=log)

    monkeypatch.setattr(train_engagement, "fit", recording_fit)
    arrays = _planted_arrays(n=60)
    options = train_engagement.EngagementTrainingOptions(network="engagement-x3-cpu")
    model, summary, _, _ = train_engagement._fit_members(arrays, get_config("engagement-x3-cpu"), options)
    assert [seed for seed, _ in seen] == [0, 1, 2]
    assert len({val for _, val in seen}) == 3  # each member stops early on different clips
    assert len(summary["best_epoch"]) == 3 and len(model.members) == 3
    assert not torch.allclose(model.members[0].clip_head[0].weight, model.members[1].clip_head[0].weight)


def test_pretraining_runs_before_the_recipe_and_is_recorded(monkeypatch) -> None:
    """`--pretrain`: a fit on the ideal-perception clips (stage 2 included), then the served recipe without its
    stage 2, from the pretrained weights."""
    import training.train_engagement as train_engagement

    calls = []
    real_fit = train_engagement.fit

    def recording_fit(model, train, val, options, log=print):
        calls.append((len(train), options.curve_epochs, model.clip_head[0].weight.detach().clone()))
        return real_fit(model, train, val, dataclasses.replace(options, max_epochs=1), log=log)

    monkeypatch.setattr(train_engagement, "fit", recording_fit)
    arrays = _planted_arrays(n=60)
    options = train_engagement.EngagementTrainingOptions()
    network, summary = train_engagement.fit_network(
        get_config("engagement-cpu"),
        arrays.subset(np.arange(40)),
        arrays.subset(np.arange(40, 50)),
        options,
        pretrain=arrays.subset(np.arange(10, 60)),
    )
    assert [(n, curve) for n, curve, _ in calls] == [(50, train_engagement.PRETRAIN_RECIPE["curve_epochs"]), (40, 0)]
    assert not torch.equal(calls[0][2], calls[1][2])  # the recipe starts from the pretrained weights
    assert summary["pretrain"]["best_epoch"] >= 0
    assert {record.get("phase") for record in summary["history"]} == {"pretrain", None}


def test_one_seed_gives_one_initialisation() -> None:
    """Two runs with the same seed start from the same weights (the shipped network before 2026-12-07 did not: two
    runs of one recipe and seed read 0.787 and 0.840 on the test split)."""
    from training.train_engagement import EngagementTrainingOptions, fit_network

    arrays = _planted_arrays(n=20)
    options = EngagementTrainingOptions(curve_epochs=0, max_epochs=0)
    first, _ = fit_network(get_config("engagement-cpu"), arrays, arrays, options)
    second, _ = fit_network(get_config("engagement-cpu"), arrays, arrays, options)
    other, _ = fit_network(get_config("engagement-cpu"), arrays, arrays, dataclasses.replace(options, seed=1))
    assert torch.equal(first.clip_head[0].weight, second.clip_head[0].weight)
    assert not torch.equal(first.clip_head[0].weight, other.clip_head[0].weight)


def test_per_style_intervals_narrow_only_where_the_label_noise_differs_by_style() -> None:
    """interval_alternatives: when one style's labels are ten times noisier than the other's, per-style half-widths
    are narrower on average than one shared half-width and still cover about 90 %; when the noise is the same, they
    are not narrower."""
    from facecast.engagement_features import to_logit
    from training.evaluate_engagement import interval_alternatives
    from training.train_engagement import predict

    torch.manual_seed(0)
    model = build_model("engagement-cpu").eval()
    arrays = _planted_arrays(n=2000, steps=8)
    arrays = dataclasses.replace(arrays, style=np.where(np.arange(2000) % 2 == 0, "cartoon", "anime"))
    with torch.no_grad():
        z = to_logit(predict(model, arrays)["engagement"])
    noise = np.random.default_rng(1).normal(size=len(z))

    def with_noise(scale: np.ndarray):
        engagement = (1 / (1 + np.exp(-(z + noise * scale)))).astype(np.float32)
        noisy = dataclasses.replace(arrays, targets={**arrays.targets, "engagement": engagement})
        calib, test = noisy.subset(np.arange(1000)), noisy.subset(np.arange(1000, 2000))
        with torch.no_grad():
            return interval_alternatives(model, calib, test, predict(model, test))

    uneven = with_noise(np.where(arrays.style == "cartoon", 0.1, 1.0))
    shared, per_style = uneven.loc["one logit half-width (shipped)"], uneven.loc["per style"]
    assert per_style["mean half-width"] < 0.8 * shared["mean half-width"]
    assert abs(per_style["coverage (observed)"] - 0.9) < 0.03
    assert per_style["lowest coverage in a style"] > 0.85 > shared["lowest coverage in a style"]
    even = with_noise(np.full(len(z), 0.5))
    assert (
        even.loc["per style", "mean half-width"] > 0.95 * even.loc["one logit half-width (shipped)", "mean half-width"]
    )


def test_coverage_interval_resamples_whole_clips() -> None:
    """coverage_interval: the bootstrap range holds the share measured, narrows with more clips, and a clip whose many
    steps are all outside counts as one clip, not as many independent steps."""
    from training.evaluate_engagement import coverage_interval

    rng = np.random.default_rng(0)
    inside = rng.random(400) < 0.9
    low, high = coverage_interval(inside, np.arange(400), 400)
    assert low < inside.mean() < high and 0.04 < high - low < 0.08  # binomial: ± 1.96 · √(0.09 / 400) ≈ ± 0.03
    low_many, high_many = coverage_interval(np.tile(inside, 10), np.arange(4000), 4000)
    assert high_many - low_many < 0.5 * (high - low)
    # 40 clips of 10 steps each, 4 clips entirely outside: as uncertain as 40 clips, not 400 steps
    clip_of = np.repeat(np.arange(40), 10)
    steps_inside = np.repeat(np.arange(40) >= 4, 10)
    low_steps, high_steps = coverage_interval(steps_inside, clip_of, 40)
    assert high_steps - low_steps > 0.15
