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


def test_training_learns_a_planted_signal(tmp_path) -> None:
    """A few epochs on clips whose engagement is the mean happiness probability rank them far better than chance."""
    from training.data.engagement_dataset import EngagementArrays
    from training.evaluation import spearman
    from training.train_engagement import EngagementTrainingOptions, fit, predict

    rng = np.random.default_rng(0)
    n, steps = 160, 24
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
    arrays = EngagementArrays(
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
