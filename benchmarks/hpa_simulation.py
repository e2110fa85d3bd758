"""What a Kubernetes HorizontalPodAutoscaler does with Triton's metrics: the chart's query against facecast's.

Pure Python + numpy, no facecast imports. Three layers:

1. **PromQL, the parts the two metrics use**: `delta`, `rate`, `increase` with Prometheus' extrapolation
   (`extrapolatedRate` in promql/functions.go) and `avg_over_time`, over per-pod, per-model samples.
2. **The two metric definitions**, per pod, as prometheus-adapter hands them to the HPA:
   - `NVIDIA_CHART`: Triton's k8s-onprem chart, `avg(delta(nv_inference_queue_duration_us[30s]) /
     (1 + delta(nv_inference_request_success[30s]))) by (pod)` with its 50 µs target;
   - `WAITING_REQUESTS`: facecast's (docker/k8s/base/prometheusrule.yaml): per pod, the larger of
     sum over models of avg_over_time(nv_inference_pending_request_count[1m]) and
     sum over models of rate(nv_inference_queue_duration_us[1m]) / 1e6 (Little's law), or 0 for a pod whose
     /metrics is up but has no sample yet; target 2 (CPU).
3. **The HPA controller** (pkg/controller/podautoscaler: replica_calculator.go `calcPlainMetricReplicas`,
   horizontal.go `stabilizeRecommendationWithBehaviors` / `convertDesiredReplicasWithBehaviorRate`): AverageValue
   targets on a Pods metric, milli-unit quantities, the 0.1 tolerance, pending pods as unready and running pods
   without a value as missing (0 of the target when scaling up, the target when scaling down, no change when
   that flips the direction), `behavior` policies (Pods/Percent per period, selectPolicy Max/Min/Disabled)
   and stabilization windows (scale-up: min of the window's recommendations, default 0 s; scale-down: max,
   default 300 s), min/max replicas.

Inputs: either recorded scrapes of real pods (`replay`, e.g. docker/k8s/testdata/triton-2.51-cpu-metrics.jsonl,
open loop: the HPA's decisions do not change the recorded load) or an offered load fed through a simple cluster
model (`simulate`, closed loop): requests split evenly over ready pods, a new pod is Pending for `pending_s`, then
loads its models for `startup_s` with its ports closed (no metrics), then serves. Each pod/model is a fluid
queue: a backlog that grows when arrivals exceed capacity, plus the M/M/1 mean queue ρ²/(1−ρ) below it.

Output: one row per HPA evaluation (list of dicts); `write_outputs` writes JSON/CSV and, optionally, a Vega-Lite
spec that any Vega viewer renders (no plotting library is needed here).

    python -m benchmarks.hpa_simulation --out-json runs/hpa.json --out-csv runs/hpa.csv --vega-lite runs/hpa.vl.json
    python -m benchmarks.hpa_simulation --replay docker/k8s/testdata/triton-2.51-cpu-metrics.jsonl
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facecast.vocab import SERVED_MODELS

QUEUE_US = "nv_inference_queue_duration_us"
SUCCESS = "nv_inference_request_success"
COMPUTE_US = "nv_inference_compute_infer_duration_us"
PENDING = "nv_inference_pending_request_count"
FACECAST_MODELS = SERVED_MODELS


# --------------------------------------------------------------------------------------------------- PromQL subset
def _in_range(samples: list[tuple[float, float]], t: float, range_s: float) -> list[tuple[float, float]]:
    """Samples in (t - range, t] (Prometheus 3 range selection; 2.x also took a sample exactly at t - range)."""
    return [(ts, v) for ts, v in samples if t - range_s < ts <= t]


def extrapolated_delta(samples, t: float, range_s: float, *, counter: bool, per_second: bool) -> float | None:
    """Prometheus' extrapolatedRate: delta()/increase()/rate() over (t - range, t]; None without two samples."""
    window = _in_range(samples, t, range_s)
    if len(window) < 2:
        return None
    first_t, first_v = window[0]
    last_t, last_v = window[-1]
    result = last_v - first_v
    if counter:  # a counter that went down was reset: add back the value before the reset
        previous = first_v
        for _, v in window[1:]:
            if v < previous:
                result += previous
            previous = v
    range_start, range_end = t - range_s, t
    duration_to_start = first_t - range_start
    duration_to_end = range_end - last_t
    sampled = last_t - first_t
    average_step = sampled / (len(window) - 1)
    if counter and result > 0 and first_v >= 0:
        duration_to_zero = sampled * (first_v / result)  # a counter does not extrapolate below zero
        duration_to_start = min(duration_to_start, duration_to_zero)
    threshold = average_step * 1.1
    extrapolate_to = sampled
    extrapolate_to += duration_to_start if duration_to_start < threshold else average_step / 2
    extrapolate_to += duration_to_end if duration_to_end < threshold else average_step / 2
    result *= extrapolate_to / sampled
    return result / range_s if per_second else result


def delta(samples, t, range_s):
    return extrapolated_delta(samples, t, range_s, counter=False, per_second=False)


def rate(samples, t, range_s):
    return extrapolated_delta(samples, t, range_s, counter=True, per_second=True)


def increase(samples, t, range_s):
    return extrapolated_delta(samples, t, range_s, counter=True, per_second=False)


def avg_over_time(samples, t, range_s) -> float | None:
    window = _in_range(samples, t, range_s)
    return float(np.mean([v for _, v in window])) if window else None


# --------------------------------------------------------------------------------------------------- scraped series
@dataclass
class PodSeries:
    """What Prometheus holds for one pod: per (metric, model) samples, and `up` per scrape."""

    name: str
    series: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=dict)
    up: list[tuple[float, float]] = field(default_factory=list)

    def add_scrape(self, t: float, values: dict[str, dict[str, float]] | None) -> None:
        """values[metric][model] from one scrape; None for a failed scrape (ports closed while models load)."""
        self.up.append((t, 0.0 if values is None else 1.0))
        for metric, per_model in (values or {}).items():
            for model, value in per_model.items():
                self.series.setdefault((metric, model), []).append((t, float(value)))

    def by_model(self, metric: str) -> dict[str, list[tuple[float, float]]]:
        return {model: s for (m, model), s in self.series.items() if m == metric}

    def is_up(self, t: float, lookback_s: float = 300.0) -> bool:
        """`up == 1` at t: the latest scrape within Prometheus' 5-minute lookback succeeded."""
        latest = [v for ts, v in self.up if t - lookback_s < ts <= t]
        return bool(latest) and latest[-1] == 1.0


# --------------------------------------------------------------------------------------------------- metric definitions
@dataclass(frozen=True)
class MetricDefinition:
    name: str
    target: float  # AverageValue target of the HPA
    value: Callable[[PodSeries, float], float | None]  # per pod at time t; None = the adapter returns no value
    unit: str


def nvidia_chart_value(pod: PodSeries, t: float, window_s: float = 30.0) -> float | None:
    """avg over models of delta(queue_us[30s]) / (1 + delta(success[30s])): a model series without two samples
    drops out of the division (no match), and a pod with no model left has no value."""
    success = pod.by_model(SUCCESS)
    ratios = []
    for model, queue in pod.by_model(QUEUE_US).items():
        dq = delta(queue, t, window_s)
        ds = delta(success.get(model, []), t, window_s)
        if dq is not None and ds is not None:
            ratios.append(dq / (1.0 + ds))
    return float(np.mean(ratios)) if ratios else None


def waiting_requests_value(pod: PodSeries, t: float, window_s: float = 60.0) -> float | None:
    """facecast's pod:triton_waiting_requests:max1m (see the module docstring)."""
    pending = [avg_over_time(s, t, window_s) for s in pod.by_model(PENDING).values()]
    pending = [v for v in pending if v is not None]
    queued = [rate(s, t, window_s) for s in pod.by_model(QUEUE_US).values()]
    queued = [v for v in queued if v is not None]
    candidates = ([sum(pending)] if pending else []) + ([sum(queued) / 1e6] if queued else [])
    if candidates:
        return float(max(candidates))
    return 0.0 if pod.is_up(t) else None


def true_mean_queue_us(pod: PodSeries, t: float, window_s: float = 30.0) -> float | None:
    """The real mean queue wait per request over all models (sum of queue time / sum of requests)."""
    success = pod.by_model(SUCCESS)
    dq = [increase(s, t, window_s) for s in pod.by_model(QUEUE_US).values()]
    ds = [increase(s, t, window_s) for s in success.values()]
    dq, ds = [v for v in dq if v is not None], [v for v in ds if v is not None]
    if not dq or not ds or sum(ds) <= 0:
        return None
    return sum(dq) / sum(ds)


NVIDIA_CHART = MetricDefinition("nvidia_chart_avg_time_queue_us", 50.0, nvidia_chart_value, "µs")
WAITING_REQUESTS = MetricDefinition("facecast_triton_waiting_requests", 2.0, waiting_requests_value, "requests")


# --------------------------------------------------------------------------------------------------- the HPA
@dataclass(frozen=True)
class Policy:
    type: str  # "Pods" | "Percent"
    value: int
    period_seconds: int


@dataclass(frozen=True)
class ScalingRules:
    stabilization_window_seconds: int
    select_policy: str = "Max"  # "Max" | "Min" | "Disabled"
    policies: tuple[Policy, ...] = ()


DEFAULT_SCALE_UP = ScalingRules(0, "Max", (Policy("Percent", 100, 15), Policy("Pods", 4, 15)))
DEFAULT_SCALE_DOWN = ScalingRules(300, "Max", (Policy("Percent", 100, 15),))
# docker/k8s/base/triton-hpa.yaml and overlays/gpu/hpa-gpu.yaml
FACECAST_CPU_SCALE_UP = ScalingRules(30, "Max", (Policy("Percent", 100, 60), Policy("Pods", 2, 60)))
FACECAST_CPU_SCALE_DOWN = ScalingRules(300, "Max", (Policy("Pods", 1, 120),))
FACECAST_GPU_SCALE_UP = ScalingRules(60, "Max", (Policy("Pods", 1, 180),))
FACECAST_GPU_SCALE_DOWN = ScalingRules(900, "Max", (Policy("Pods", 1, 300),))


@dataclass(frozen=True)
class HPASpec:
    min_replicas: int
    max_replicas: int
    target: float  # AverageValue per pod
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN
    tolerance: float = 0.1  # kube-controller-manager --horizontal-pod-autoscaler-tolerance
    sync_period_s: float = 15.0


@dataclass(frozen=True)
class PodView:
    """What the HPA knows of a pod matched by the Deployment's selector."""

    name: str
    phase: str = "Running"  # "Pending" | "Running" | "Failed"
    deleting: bool = False


@dataclass
class Decision:
    t: float
    current: int
    desired: int
    proposal: int | None  # the metric's replica count before behavior/limits; None when the metric failed
    average: float | None  # the average value the HPA computed (milli-quantity / 1000)
    reason: str


def _milli(value: float) -> int:
    """prometheus-adapter: resource.NewMilliQuantity(int64(value*1000)); the HPA reads MilliValue()."""
    return int(value * 1000.0)


class HorizontalPodAutoscaler:
    def __init__(self, spec: HPASpec):
        self.spec = spec
        self.recommendations: list[tuple[float, int]] = []
        self.scale_up_events: list[tuple[float, int]] = []
        self.scale_down_events: list[tuple[float, int]] = []
        self._seeded = False

    # ---- replica_calculator.go: calcPlainMetricReplicas with GetMetricUsageRatio (AverageValue, Pods metric)
    def replicas_for_metric(self, current: int, pods: Iterable[PodView], values: dict[str, float | None]):
        """(replicas, average) or (None, None) when no pod has a value ("no metrics returned")."""
        target = _milli(self.spec.target)
        metrics: dict[str, int] = {}
        unready, missing, ready_count = [], [], 0
        for pod in pods:
            if pod.deleting or pod.phase == "Failed":
                continue  # ignored
            if pod.phase == "Pending":
                unready.append(pod.name)
                continue
            value = values.get(pod.name)
            if value is None or math.isnan(value):
                missing.append(pod.name)
                continue
            metrics[pod.name] = _milli(value)
            ready_count += 1
        if not metrics:
            return None, None

        def usage_ratio(m: dict[str, int]) -> tuple[float, int]:
            average = sum(m.values()) // len(m)  # int64 division, as in Go
            return average / target, average

        ratio, average = usage_ratio(metrics)
        within = lambda r: 1.0 - self.spec.tolerance <= r <= 1.0 + self.spec.tolerance  # noqa: E731
        scale_up_with_unready = bool(unready) and ratio > 1.0
        if not scale_up_with_unready and not missing:
            if within(ratio):
                return current, average / 1000.0
            return math.ceil(ratio * ready_count), average / 1000.0
        if missing:
            for name in missing:  # scale-down: as if at target; scale-up: as if idle
                metrics[name] = target if ratio < 1.0 else 0
        if scale_up_with_unready:
            for name in unready:
                metrics[name] = 0
        new_ratio, _ = usage_ratio(metrics)
        if within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
            return current, average / 1000.0  # too small a change, or the direction would flip
        new_replicas = math.ceil(new_ratio * len(metrics))
        if (new_ratio < 1.0 and new_replicas > current) or (new_ratio > 1.0 and new_replicas < current):
            return current, average / 1000.0
        return new_replicas, average / 1000.0

    # ---- horizontal.go: stabilizeRecommendationWithBehaviors
    def _stabilize(self, now: float, current: int, desired: int) -> int:
        up_cutoff = now - self.spec.scale_up.stabilization_window_seconds
        down_cutoff = now - self.spec.scale_down.stabilization_window_seconds
        up_recommendation = down_recommendation = desired
        for t, recommendation in self.recommendations:
            if t > up_cutoff:
                up_recommendation = min(up_recommendation, recommendation)
            if t > down_cutoff:
                down_recommendation = max(down_recommendation, recommendation)
        oldest = min(up_cutoff, down_cutoff)
        self.recommendations = [(t, r) for t, r in self.recommendations if t > oldest]
        self.recommendations.append((now, desired))
        return min(max(current, up_recommendation), down_recommendation)

    @staticmethod
    def _changed_in_period(events: list[tuple[float, int]], now: float, period: float) -> int:
        return sum(change for t, change in events if t > now - period)

    def _scale_up_limit(self, now: float, current: int) -> int:
        rules = self.spec.scale_up
        if rules.select_policy == "Disabled":
            return current
        pick, result = (min, math.inf) if rules.select_policy == "Min" else (max, -math.inf)
        for policy in rules.policies:
            start = (
                current
                - self._changed_in_period(self.scale_up_events, now, policy.period_seconds)
                + self._changed_in_period(self.scale_down_events, now, policy.period_seconds)
            )
            if policy.type == "Pods":
                proposed = start + policy.value
            else:
                proposed = math.ceil(start * (1 + policy.value / 100))
            result = pick(result, proposed)
        return int(result)

    def _scale_down_limit(self, now: float, current: int) -> int:
        rules = self.spec.scale_down
        if rules.select_policy == "Disabled":
            return current
        pick, result = (max, -math.inf) if rules.select_policy == "Min" else (min, math.inf)
        for policy in rules.policies:
            start = (
                current
                - self._changed_in_period(self.scale_up_events, now, policy.period_seconds)
                + self._changed_in_period(self.scale_down_events, now, policy.period_seconds)
            )
            if policy.type == "Pods":
                proposed = start - policy.value
            else:
                proposed = int(start * (1 - policy.value / 100))  # Go's int32() truncates
            result = pick(result, proposed)
        return int(result)

    # ---- horizontal.go: convertDesiredReplicasWithBehaviorRate
    def _limit_rate(self, now: float, current: int, desired: int) -> tuple[int, str]:
        if desired > current:
            limit = max(self._scale_up_limit(now, current), current)
            maximum = min(self.spec.max_replicas, limit)
            reason = "ScaleUpLimit" if limit < self.spec.max_replicas else "TooManyReplicas"
            return (maximum, reason) if desired > maximum else (desired, "DesiredWithinRange")
        if desired < current:
            limit = min(self._scale_down_limit(now, current), current)
            minimum = max(self.spec.min_replicas, limit)
            reason = "ScaleDownLimit" if limit > self.spec.min_replicas else "TooFewReplicas"
            return (minimum, reason) if desired < minimum else (desired, "DesiredWithinRange")
        return desired, "DesiredWithinRange"

    def _record_event(self, now: float, previous: int, new: int) -> None:
        longest = max([p.period_seconds for p in self.spec.scale_up.policies + self.spec.scale_down.policies] or [0])
        self.scale_up_events = [(t, c) for t, c in self.scale_up_events if t > now - longest]
        self.scale_down_events = [(t, c) for t, c in self.scale_down_events if t > now - longest]
        if new > previous:
            self.scale_up_events.append((now, new - previous))
        elif new < previous:
            self.scale_down_events.append((now, previous - new))

    # ---- horizontal.go: reconcileAutoscaler for one Pods metric
    def reconcile(self, now: float, current: int, pods: Iterable[PodView], values: dict[str, float | None]) -> Decision:
        if current > self.spec.max_replicas:
            desired, proposal, average, reason = self.spec.max_replicas, None, None, "TooManyReplicas"
        elif current < self.spec.min_replicas:
            desired, proposal, average, reason = self.spec.min_replicas, None, None, "TooFewReplicas"
        else:
            proposal, average = self.replicas_for_metric(current, list(pods), values)
            if proposal is None:  # FailedGetPodsMetric: status updated, nothing scaled, nothing recorded
                return Decision(now, current, current, None, None, "FailedGetPodsMetric")
            if not self._seeded:  # maybeInitScaleDownStabilizationWindow: a (re)started controller does not
                self._seeded = True  # scale down before one window has passed
                if self.spec.scale_down.stabilization_window_seconds > 0:
                    self.recommendations = [(now, current)]
            stabilized = self._stabilize(now, current, proposal)
            desired, reason = self._limit_rate(now, current, stabilized)
        if desired != current:
            self._record_event(now, current, desired)
        return Decision(now, current, desired, proposal, average, reason)


# --------------------------------------------------------------------------------------------------- replay
def load_recording(
    path: Path | str, pod: str = "facecast-triton-0"
) -> tuple[dict, dict[str, list[tuple[float, dict]]]]:
    """docker/k8s/testdata/*.jsonl → (meta, {pod: [(t, values[metric][model]), ...]})."""
    lines = Path(path).read_text().splitlines()
    meta = json.loads(lines[0]).get("meta", {})
    scrapes = [json.loads(line) for line in lines[1:] if line.strip()]
    return meta, {pod: [(s["t"], s["values"]) for s in scrapes]}


def replay(
    recorded: dict[str, list[tuple[float, dict]]],
    metric: MetricDefinition,
    spec: HPASpec,
    start_replicas: int | None = None,
) -> list[dict]:
    """The HPA over recorded pods (all Running), every sync period, open loop. Returns one row per evaluation."""
    pods = {name: PodSeries(name) for name in recorded}
    times = sorted({t for scrapes in recorded.values() for t, _ in scrapes})
    cursor = {name: 0 for name in recorded}
    hpa = HorizontalPodAutoscaler(spec)
    current = start_replicas or max(spec.min_replicas, len(recorded))
    rows, next_sync = [], times[0] + spec.sync_period_s if times else 0
    for t in np.arange(times[0], times[-1] + 1e-9, 1.0) if times else []:
        for name, scrapes in recorded.items():
            while cursor[name] < len(scrapes) and scrapes[cursor[name]][0] <= t:
                pods[name].add_scrape(*scrapes[cursor[name]])
                cursor[name] += 1
        if t + 1e-9 >= next_sync:
            next_sync += spec.sync_period_s
            values = {name: metric.value(pod, t) for name, pod in pods.items()}
            decision = hpa.reconcile(float(t), current, [PodView(n) for n in pods], values)
            true_q = [true_mean_queue_us(p, t) for p in pods.values()]
            rows.append(
                {
                    "t": round(float(t), 3),
                    "metric": metric.name,
                    "target": metric.target,
                    "pod_values": {n: v for n, v in values.items()},
                    "average": decision.average,
                    "true_mean_queue_us": None if None in true_q else float(np.mean(true_q)),
                    "current": decision.current,
                    "proposal": decision.proposal,
                    "desired": decision.desired,
                    "reason": decision.reason,
                }
            )
            current = decision.desired
    return rows


# --------------------------------------------------------------------------------------------------- cluster model
@dataclass(frozen=True)
class ModelProfile:
    name: str
    capacity_rps: float  # requests one pod serves per second on this model (one instance, dynamic batching)
    share: float  # fraction of the offered requests that go to this model


# Capacities in the order of what one CPU pod served in the recording (expression_encoder: ~100 requests of 8
# images per second; face_detector: ~30 of 4 frames), the rest scaled by the models' cost. Illustrative only.
FACECAST_CPU_PROFILE = (
    ModelProfile("face_detector", 30.0, 0.35),
    ModelProfile("expression_encoder", 100.0, 0.45),
    ModelProfile("engagement", 60.0, 0.05),
    ModelProfile("image_embedder", 90.0, 0.05),
    ModelProfile("text_embedder", 200.0, 0.04),
    ModelProfile("query_fuser", 400.0, 0.04),
    ModelProfile("style_mapper", 8.0, 0.02),
)


@dataclass
class _Pod:
    name: str
    created: float
    ready_at: float
    running_at: float
    backlog: dict[str, float] = field(default_factory=dict)
    counters: dict[str, dict[str, float]] = field(default_factory=dict)
    pending_now: dict[str, float] = field(default_factory=dict)

    def phase(self, t: float) -> str:
        return "Pending" if t < self.running_at else "Running"

    def ready(self, t: float) -> bool:
        return t >= self.ready_at


@dataclass(frozen=True)
class ClusterModel:
    profile: tuple[ModelProfile, ...] = FACECAST_CPU_PROFILE
    pending_s: float = 5.0  # scheduling + image already on the node
    startup_s: float = 10.0  # model load with the ports closed (measured ~4 s on 2 busy cores; margin)
    scrape_interval_s: float = 10.0  # the ServiceMonitor's interval
    max_utilisation: float = 0.98  # cap for the M/M/1 term; above capacity the backlog grows instead


def _serve(pod: _Pod, offered_rps: float, profile, dt: float, cap: float) -> None:
    for model in profile:
        lam = offered_rps * model.share
        mu = model.capacity_rps
        backlog = pod.backlog.get(model.name, 0.0)
        backlog = max(0.0, backlog + (lam - mu) * dt)
        rho = min(lam / mu, cap)
        waiting = backlog + rho * rho / (1.0 - rho)
        served = mu * dt if backlog > 0 else lam * dt
        pod.backlog[model.name] = backlog
        pod.pending_now[model.name] = waiting
        c = pod.counters
        for metric in (QUEUE_US, SUCCESS, COMPUTE_US):
            c.setdefault(metric, {}).setdefault(model.name, 0.0)
        c[QUEUE_US][model.name] += waiting * dt * 1e6  # Little: queue-seconds accrue at the number waiting
        c[SUCCESS][model.name] += served
        c[COMPUTE_US][model.name] += served / mu * 1e6


def simulate(
    offered_rps: Callable[[float], float],
    metric: MetricDefinition,
    spec: HPASpec,
    duration_s: float,
    cluster: ClusterModel = ClusterModel(),
    start_replicas: int | None = None,
) -> list[dict]:
    """Closed loop: the HPA's decisions create and delete pods, which changes every pod's share of the load."""
    pods: list[_Pod] = []
    serial = 0

    def add_pod(t: float) -> None:
        nonlocal serial
        pods.append(
            _Pod(f"facecast-triton-{serial}", t, t + cluster.pending_s + cluster.startup_s, t + cluster.pending_s)
        )
        serial += 1

    for _ in range(start_replicas or spec.min_replicas):
        pods.append(_Pod(f"facecast-triton-{serial}", -600.0, -600.0, -600.0))
        serial += 1
    series: dict[str, PodSeries] = {p.name: PodSeries(p.name) for p in pods}
    hpa = HorizontalPodAutoscaler(spec)
    replicas = len(pods)
    rows = []
    dt = 1.0
    for step in range(int(duration_s) + 1):
        t = float(step)
        ready = [p for p in pods if p.ready(t)]
        load = offered_rps(t)
        for pod in ready:
            _serve(pod, load / len(ready), cluster.profile, dt, cluster.max_utilisation)
        if step % int(cluster.scrape_interval_s) == 0:
            for pod in pods:
                if pod.phase(t) == "Pending":
                    continue  # no IP yet: not a scrape target
                s = series.setdefault(pod.name, PodSeries(pod.name))
                if not pod.ready(t):
                    s.add_scrape(t, None)  # models loading: ports closed
                else:
                    values = {m: dict(v) for m, v in pod.counters.items()}
                    values[PENDING] = dict(pod.pending_now)
                    for model in cluster.profile:  # Triton 2.51 exports every series at 0 from its first scrape
                        for name in (QUEUE_US, SUCCESS, COMPUTE_US, PENDING):
                            values.setdefault(name, {}).setdefault(model.name, 0.0)
                    s.add_scrape(t, values)
        if step % int(spec.sync_period_s) == 0 and step > 0:
            values = {p.name: metric.value(series[p.name], t) if p.name in series else None for p in pods}
            views = [PodView(p.name, p.phase(t)) for p in pods]
            decision = hpa.reconcile(t, replicas, views, values)
            waiting = [sum(p.pending_now.values()) for p in ready]
            rows.append(
                {
                    "t": t,
                    "metric": metric.name,
                    "target": metric.target,
                    "offered_rps": load,
                    "ready": len(ready),
                    "replicas": replicas,
                    "average": decision.average,
                    "proposal": decision.proposal,
                    "desired": decision.desired,
                    "reason": decision.reason,
                    "waiting_per_ready_pod": float(np.mean(waiting)) if waiting else None,
                }
            )
            if decision.desired > replicas:
                for _ in range(decision.desired - replicas):
                    add_pod(t)
            elif decision.desired < replicas:
                # ReplicaSet deletion order: pending first, then not ready, then the most recently created
                victims = sorted(pods, key=lambda p: (p.phase(t) != "Pending", p.ready(t), -p.created))
                for pod in victims[: replicas - decision.desired]:
                    pods.remove(pod)
                    series.pop(pod.name, None)
            replicas = decision.desired
    return rows


def step_load(base_rps: float, peak_rps: float, start_s: float, end_s: float) -> Callable[[float], float]:
    return lambda t: peak_rps if start_s <= t < end_s else base_rps


# --------------------------------------------------------------------------------------------------- output
def write_outputs(
    rows: list[dict], out_json: Path | None = None, out_csv: Path | None = None, vega_lite: Path | None = None
) -> None:
    flat = [{k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in row.items()} for row in rows]
    if out_json:
        Path(out_json).write_text(json.dumps(rows, indent=1, default=float))
    if out_csv and flat:
        keys = list(dict.fromkeys(k for row in flat for k in row))
        with open(out_csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(flat)
    if vega_lite:
        spec = {
            "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
            "title": "Desired Triton replicas per HPA metric",
            "data": {"values": flat},
            "mark": {"type": "line", "interpolate": "step-after"},
            "encoding": {
                "x": {"field": "t", "type": "quantitative", "title": "seconds"},
                "y": {"field": "desired", "type": "quantitative", "title": "desired replicas"},
                "color": {"field": "metric", "type": "nominal"},
            },
        }
        Path(vega_lite).write_text(json.dumps(spec, indent=1, default=float))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--replay", type=Path, help="recorded scrapes (docker/k8s/testdata/*.jsonl) instead of the model"
    )
    parser.add_argument("--duration", type=float, default=1800.0)
    parser.add_argument("--base-rps", type=float, default=20.0)
    parser.add_argument("--peak-rps", type=float, default=150.0)
    parser.add_argument("--out-json", type=Path)
    parser.add_argument("--out-csv", type=Path)
    parser.add_argument("--vega-lite", type=Path)
    args = parser.parse_args(argv)
    chart = HPASpec(1, 8, NVIDIA_CHART.target)  # the chart sets no behavior: Kubernetes' defaults apply
    ours = HPASpec(2, 8, WAITING_REQUESTS.target, FACECAST_CPU_SCALE_UP, FACECAST_CPU_SCALE_DOWN)
    if args.replay:
        _, recorded = load_recording(args.replay)
        one_pod = dict(min_replicas=1)  # the recording is one pod: let both HPAs start from it
        rows = replay(recorded, NVIDIA_CHART, dataclasses.replace(chart, **one_pod), 1) + replay(
            recorded, WAITING_REQUESTS, dataclasses.replace(ours, **one_pod), 1
        )
    else:
        load = step_load(args.base_rps, args.peak_rps, 300.0, 900.0)
        rows = simulate(load, NVIDIA_CHART, chart, args.duration) + simulate(
            load, WAITING_REQUESTS, ours, args.duration
        )
    write_outputs(rows, args.out_json, args.out_csv, args.vega_lite)
    for row in rows:
        average = "-" if row["average"] is None else f"{row['average']:.3f}"
        print(f"{row['metric']:34s} t={row['t']:7.1f} avg={average:>10s} desired={row['desired']:2d} {row['reason']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
