"""The HPA simulator (benchmarks/hpa_simulation.py): Prometheus' functions, the Kubernetes HPA algorithm, and the
two autoscaling metrics — Triton's chart query and facecast's — on synthetic pods and on recorded Triton metrics."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from benchmarks import hpa_simulation as sim

RECORDING = Path(__file__).resolve().parents[1] / "docker" / "k8s" / "testdata" / "triton-2.51-cpu-metrics.jsonl"


def views(n: int, phase: str = "Running", prefix: str = "pod") -> list[sim.PodView]:
    return [sim.PodView(f"{prefix}-{i}", phase) for i in range(n)]


def same_value(pods, value):
    return {p.name: value for p in pods}


# ----------------------------------------------------------------------------------------------- PromQL functions
def test_rate_of_a_steady_counter_is_its_slope():
    samples = [(float(t), 5.0 * t) for t in range(0, 301, 10)]
    assert sim.rate(samples, 300.0, 60.0) == pytest.approx(5.0)
    assert sim.increase(samples, 300.0, 60.0) == pytest.approx(300.0)


def test_rate_adds_back_a_counter_reset():
    samples = [(0.0, 100.0), (10.0, 150.0), (20.0, 10.0), (30.0, 60.0)]  # restart between 10 s and 20 s
    # window (0, 30]: 150 → 10 is a reset, so +60 over the 20 s sampled, extrapolated to 30 s
    assert sim.increase(samples, 30.0, 30.0) == pytest.approx(90.0)
    assert sim.delta(samples, 30.0, 30.0) < 0  # the chart's delta() on a restarted counter goes negative


def test_delta_needs_two_samples_and_extrapolates_to_the_window():
    assert sim.delta([(300.0, 7.0)], 300.0, 30.0) is None
    # samples at 280, 290, 300 in a (270, 300] window: extrapolated by the 10 s gap at the start
    assert sim.delta([(280.0, 0.0), (290.0, 10.0), (300.0, 20.0)], 300.0, 30.0) == pytest.approx(30.0)


def test_avg_over_time_works_from_one_sample():
    assert sim.avg_over_time([(120.0, 0.0)], 120.0, 60.0) == 0.0
    assert sim.avg_over_time([(0.0, 1.0), (30.0, 3.0)], 30.0, 60.0) == 2.0


# ----------------------------------------------------------------------------------------------- the HPA algorithm
def test_tolerance_band_keeps_the_replica_count():
    hpa = sim.HorizontalPodAutoscaler(sim.HPASpec(1, 10, target=2.0))
    pods = views(4)
    assert hpa.replicas_for_metric(4, pods, same_value(pods, 2.15))[0] == 4  # ratio 1.075: inside ±0.1
    assert hpa.replicas_for_metric(4, pods, same_value(pods, 1.81))[0] == 4  # ratio 0.905
    assert hpa.replicas_for_metric(4, pods, same_value(pods, 2.3))[0] == 5  # ceil(4 × 1.15)
    assert hpa.replicas_for_metric(4, pods, same_value(pods, 1.0))[0] == 2  # ceil(4 × 0.5)


def test_averages_in_milli_units_like_the_controller():
    hpa = sim.HorizontalPodAutoscaler(sim.HPASpec(1, 10, target=2.0))
    pods = views(3)
    _, average = hpa.replicas_for_metric(3, pods, {"pod-0": 1.0, "pod-1": 1.0, "pod-2": 1.0005})
    assert average == 1.0  # 1000 + 1000 + 1000 (1.0005 → int64(1000.5) = 1000) over 3, integer division


def test_scale_down_waits_for_the_stabilization_window():
    hpa = sim.HorizontalPodAutoscaler(sim.HPASpec(1, 10, target=2.0))  # default behavior: 300 s, 100 % / 15 s
    pods = views(4)
    desired = {}
    for t in range(0, 400, 15):
        value = 2.0 if t <= 60 else 0.1
        desired[t] = hpa.reconcile(float(t), 4 if t < 360 else desired[t - 15], pods, same_value(pods, value)).desired
    assert desired[75] == desired[345] == 4  # a recommendation of 4 (t ≤ 60) is still in the window
    assert desired[360] == 1


def test_scale_down_policy_removes_one_pod_per_period():
    spec = sim.HPASpec(1, 10, 2.0, sim.FACECAST_CPU_SCALE_UP, sim.FACECAST_CPU_SCALE_DOWN)
    hpa = sim.HorizontalPodAutoscaler(spec)
    current, history = 4, {}
    for t in range(0, 900, 15):
        pods = views(current)
        current = hpa.reconcile(float(t), current, pods, same_value(pods, 0.0)).desired
        history[t] = current
    assert history[285] == 4  # the controller's first window: no scale-down before 300 s
    assert history[300] == 3
    assert history[405] == 3 and history[420] == 2  # Pods 1 per 120 s
    assert history[540] == 1


def test_scale_up_policies_limit_the_rate():
    spec = sim.HPASpec(2, 12, 2.0, sim.FACECAST_CPU_SCALE_UP, sim.FACECAST_CPU_SCALE_DOWN)
    hpa = sim.HorizontalPodAutoscaler(spec)
    current, history = 2, {}
    for t in range(0, 300, 15):
        pods = views(current)
        current = hpa.reconcile(float(t), current, pods, same_value(pods, 20.0)).desired  # 10× target
        history[t] = current
    assert history[15] == 2  # the 30-s scale-up window has not seen a high recommendation for 30 s yet
    assert history[30] == 4  # max(+100 %, +2 pods) per 60 s
    assert history[75] == 4
    assert history[90] == 8
    assert history[150] == 12  # 16 allowed, clamped to maxReplicas
    assert hpa.reconcile(300.0, 12, views(12), same_value(views(12), 20.0)).reason == "TooManyReplicas"


def test_select_policy_min_takes_the_smaller_step():
    rules = sim.ScalingRules(0, "Min", (sim.Policy("Percent", 100, 60), sim.Policy("Pods", 1, 60)))
    hpa = sim.HorizontalPodAutoscaler(sim.HPASpec(1, 20, 1.0, scale_up=rules))
    pods = views(4)
    decision = hpa.reconcile(0.0, 4, pods, same_value(pods, 10.0))
    assert (decision.proposal, decision.desired, decision.reason) == (40, 5, "ScaleUpLimit")


def test_min_and_max_replicas_clamp():
    hpa = sim.HorizontalPodAutoscaler(
        sim.HPASpec(2, 5, 1.0, scale_down=sim.ScalingRules(0, "Max", sim.DEFAULT_SCALE_DOWN.policies))
    )
    pods = views(3)
    assert hpa.reconcile(0.0, 3, pods, same_value(pods, 0.0)).desired == 2
    assert hpa.reconcile(15.0, 3, pods, same_value(pods, 100.0)).desired == 5
    assert hpa.reconcile(30.0, 7, views(7), same_value(views(7), 1.0)).desired == 5  # above max: straight to max
    assert hpa.reconcile(45.0, 1, views(1), same_value(views(1), 0.0)).desired == 2  # below min: straight to min


def test_pods_not_yet_running_count_as_idle_when_scaling_up():
    hpa = sim.HorizontalPodAutoscaler(sim.HPASpec(1, 20, 1.0))
    ready, pending = views(2), views(4, "Pending", "new")
    values = same_value(ready, 3.0)
    assert hpa.replicas_for_metric(2, ready, values)[0] == 6
    # the 4 pods already asked for are counted at 0: (3 + 3 + 0 × 4) / 6 = 1.0 → no further scale-up
    assert hpa.replicas_for_metric(6, ready + pending, values)[0] == 6


def test_pods_without_a_value_count_as_at_target_when_scaling_down():
    hpa = sim.HorizontalPodAutoscaler(sim.HPASpec(1, 20, 2.0))
    pods = views(3)
    values = {"pod-0": 0.5, "pod-1": 0.5, "pod-2": None}  # pod-2 runs but has no value yet
    assert hpa.replicas_for_metric(3, pods, values)[0] == 2  # (0.5 + 0.5 + 2) / 3 / 2 = 0.5 → ceil(1.5)
    assert hpa.replicas_for_metric(2, pods[:2], values)[0] == 1  # without it: ceil(0.25 × 2)
    # scaling up with a missing pod counted at 0 that brings the ratio back inside the band: no change
    assert hpa.replicas_for_metric(3, pods, {"pod-0": 2.5, "pod-1": 2.5, "pod-2": None})[0] == 3


def test_no_value_for_any_pod_is_a_failed_evaluation():
    hpa = sim.HorizontalPodAutoscaler(sim.HPASpec(1, 8, 50.0))
    pods = views(2)
    decision = hpa.reconcile(0.0, 2, pods, same_value(pods, None))
    assert (decision.desired, decision.proposal, decision.reason) == (2, None, "FailedGetPodsMetric")


# ----------------------------------------------------------------------------------------------- the two metrics
def seven_model_pod(name="pod-a", seconds=300, busy_rps=100.0, wait_s=0.010, scrape_s=10):
    """Every served model on one pod; face_detector takes busy_rps requests that each wait wait_s, the rest idle."""
    pod = sim.PodSeries(name)
    for t in range(0, seconds + 1, scrape_s):
        values = {
            metric: {m: 0.0 for m in sim.FACECAST_MODELS}
            for metric in (sim.QUEUE_US, sim.SUCCESS, sim.COMPUTE_US, sim.PENDING)
        }
        values[sim.SUCCESS]["face_detector"] = busy_rps * t
        values[sim.QUEUE_US]["face_detector"] = busy_rps * t * wait_s * 1e6
        values[sim.PENDING]["face_detector"] = busy_rps * wait_s  # Little's law: 1 request waiting
        pod.add_scrape(float(t), values)
    return pod


def test_chart_query_under_reports_a_pod_serving_seven_models():
    pod = seven_model_pod()
    assert sim.true_mean_queue_us(pod, 300.0) == pytest.approx(10_000)
    chart = sim.nvidia_chart_value(pod, 300.0)
    # the idle models' 0 terms (every served model has a series), and the n+1
    assert chart == pytest.approx(10_000 * 3000 / 3001 / len(sim.FACECAST_MODELS))
    assert sim.waiting_requests_value(pod, 300.0) == pytest.approx(1.0)

    # Give both metrics a target meaning the same thing — 5 ms mean wait at 100 req/s, i.e. 0.5 requests waiting —
    # so only the aggregation differs. The real wait is twice the target: the HPA should double the pods.
    pods = [sim.PodView("pod-a"), sim.PodView("pod-b")]
    series = {"pod-a": pod, "pod-b": seven_model_pod("pod-b")}
    for metric, target, expected in ((sim.NVIDIA_CHART, 5000.0, 1), (sim.WAITING_REQUESTS, 0.5, 4)):
        hpa = sim.HorizontalPodAutoscaler(sim.HPASpec(1, 10, target))
        values = {name: metric.value(s, 300.0) for name, s in series.items()}
        assert hpa.replicas_for_metric(2, pods, values)[0] == expected, metric.name


def test_chart_query_has_no_value_at_a_pods_first_scrape():
    pod = sim.PodSeries("new")
    pod.add_scrape(
        120.0, {metric: {m: 0.0 for m in sim.FACECAST_MODELS} for metric in (sim.QUEUE_US, sim.SUCCESS, sim.PENDING)}
    )
    assert sim.nvidia_chart_value(pod, 120.0) is None  # delta() needs two samples
    assert sim.waiting_requests_value(pod, 120.0) == 0.0
    older_triton = sim.PodSeries("no-series-yet")
    older_triton.add_scrape(120.0, {})  # /metrics answers, no per-model series before the first request
    assert sim.nvidia_chart_value(older_triton, 120.0) is None
    assert sim.waiting_requests_value(older_triton, 120.0) == 0.0  # the `up == 1` fallback
    loading = sim.PodSeries("loading")
    loading.add_scrape(120.0, None)  # ports closed while the models load
    assert sim.waiting_requests_value(loading, 120.0) is None  # left to the HPA's missing-pod rule


def test_replay_of_recorded_triton_metrics():
    meta, recorded = sim.load_recording(RECORDING)
    assert meta["startup"]["metrics_port_before_ready"] is False
    first = json.loads(RECORDING.read_text().splitlines()[1])["values"]
    # all 7 series exist, at 0, before any request (recorded before text_query, the 8th, was served)
    assert set(first[sim.PENDING]) == set(sim.FACECAST_MODELS) - {"text_query"}
    assert all(v == 0 for per_model in first.values() for v in per_model.values())

    chart = sim.replay(recorded, sim.NVIDIA_CHART, sim.HPASpec(1, 8, 50.0, sync_period_s=5.0), 1)
    ours = sim.replay(
        recorded,
        sim.WAITING_REQUESTS,
        dataclasses.replace(
            sim.HPASpec(1, 8, 2.0, sim.FACECAST_CPU_SCALE_UP, sim.FACECAST_CPU_SCALE_DOWN), sync_period_s=5.0
        ),
        1,
    )
    # phase 2 (t 6–21 s): only expression_encoder has traffic → the chart reads ~1/7 of the real wait
    at_20 = next(r for r in chart if r["t"] == 20.0)
    assert at_20["average"] == pytest.approx(at_20["true_mean_queue_us"] / 7, rel=0.05)
    # milliseconds of CPU queueing against a 50 µs target: the chart asks for maxReplicas for one light pod
    assert max(r["desired"] for r in chart) == 8
    # about one request waiting: facecast's metric keeps the one pod
    assert max(r["desired"] for r in ours) == 1
    assert all(r["average"] is not None and r["average"] < 2.0 for r in ours)


# ----------------------------------------------------------------------------------------------- closed loop
def test_closed_loop_follows_the_load_with_ours_and_pins_cpu_at_max_with_the_chart():
    load = sim.step_load(20.0, 150.0, 300.0, 900.0)
    chart = sim.simulate(load, sim.NVIDIA_CHART, sim.HPASpec(1, 8, 50.0), 1500.0)
    ours = sim.simulate(
        load,
        sim.WAITING_REQUESTS,
        sim.HPASpec(2, 8, 2.0, sim.FACECAST_CPU_SCALE_UP, sim.FACECAST_CPU_SCALE_DOWN),
        1500.0,
    )
    assert all(r["desired"] == 8 for r in chart if r["t"] >= 60)  # even at 20 req/s
    before = [r["replicas"] for r in ours if r["t"] < 300]
    peak = [r["replicas"] for r in ours if 400 <= r["t"] < 900]
    assert set(before) == {2}
    assert max(peak) > 2
    assert ours[-1]["desired"] == 2  # back to minReplicas after the burst and the scale-down window
    assert all(r["reason"] != "FailedGetPodsMetric" for r in ours)


def test_write_outputs(tmp_path):
    rows = sim.simulate(sim.step_load(20.0, 60.0, 30.0, 60.0), sim.WAITING_REQUESTS, sim.HPASpec(2, 4, 2.0), 120.0)
    sim.write_outputs(rows, tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "r.vl.json")
    assert len(json.loads((tmp_path / "r.json").read_text())) == len(rows)
    assert (tmp_path / "r.csv").read_text().splitlines()[0].startswith("t,metric,target")
    assert json.loads((tmp_path / "r.vl.json").read_text())["encoding"]["y"]["field"] == "desired"
