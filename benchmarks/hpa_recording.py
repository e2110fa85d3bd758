"""Record what an autoscaler would see: N local Triton replicas under a stepped load, /metrics of each every 5 s.

    make hpa-record                  # 2 replicas, 0 → 8 → 60 → 8 → 0 requests/s over 5 minutes, then the report
    .venv/bin/python -m benchmarks.hpa_recording --out /tmp/hpa-smoke --phases idle:10:0 low:15:8 high:20:60 \\
        low:10:8 idle:5:0 --label "smoke run (1 minute)"

What runs: `--replicas` real `tritonserver` processes (facecast.serving.process, distinct free loopback ports, the
same model_repository/), an open-loop load generator and a scraper.

- Load: for each phase `name:seconds:requests_per_s`, requests start at a constant rate (every 1/rate s, whether or
  not earlier ones have finished: open loop, as many independent app sessions would send them), each to the next
  replica in turn (what a per-request balancer does), each for one model drawn from `--mix` (`model:rows:share`;
  default: expression_encoder with 8 face crops per request, 70 %, face_detector with 4 letterboxed frames, 30 %, as
  clip analysis sends them). tritonclient HTTP through facecast's TritonModelClient, one connection per worker
  thread. At most `--max-in-flight` requests are outstanding; a request due while that many are waiting is not
  sent and is counted as shed, so an overloaded phase cannot grow the client's own queue without bound.
- Default phases: idle 30 s, 8 req/s 60 s, 60 req/s 90 s, 8 req/s 60 s, idle 60 s. Two replicas on 2 shared
  cores served 60 req/s of this mix with a client p95 of 0.25 s while the neighbours were quiet, and only ~48 req/s
  (17 % of due requests shed at the in-flight cap, p95 1.5 s, 2.6–5.3 requests waiting per pod) while they were
  busy: the high step sits at or above capacity, the case an autoscaler exists for; 8 req/s is a small fraction of
  it. On faster cores pass a higher step with `--phases`.
- Scrapes: every `--scrape-s` (default 5) seconds, GET /metrics of every replica; the nv_inference_* series of
  version 1, summed over other labels (failures over `reason`) — what Prometheus would store.

Output: one JSONL file per replica in `--out`, `facecast-triton-<i>.jsonl`, each in the format of
docker/k8s/testdata/triton-2.51-cpu-metrics.jsonl and `benchmarks.hpa_simulation.load_recording`: a first line
{"meta": {...}}, then one object per scrape with t (its scheduled time, s since the recording began), phase and
values[metric][model]; each scrape also carries lag_ms and "client" (this replica's requests so far: sent, ok,
failed; shed is fleet-wide), which the loader ignores. Each file replays alone
(`python -m benchmarks.hpa_simulation --replay <file>`); all of them together: `python -m benchmarks.hpa_report
--recording <dir>` (run at the end unless --no-report).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from facecast.config import PROJECT_ROOT, Settings
from facecast.serving.client import TritonModelClient
from facecast.serving.health import metrics
from facecast.serving.process import EXIT_TIMEOUT_S, find_free_ports, running_server

DEFAULT_OUT = PROJECT_ROOT / "benchmarks" / "recordings" / "hpa-2-replicas"
POD_PREFIX = "facecast-triton-"
METRIC_PREFIX = "nv_inference_"
# The server flags facecast.serving.process.build_server_command passes (recorded in the meta line).
SERVER_ARGS = (
    f"--strict-readiness=true --exit-on-error=true --model-control-mode=none --allow-gpu-metrics=false "
    f"--exit-timeout-secs={EXIT_TIMEOUT_S}"
)


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    rps: float  # requests per second over all replicas


@dataclass(frozen=True)
class Workload:
    model: str
    rows: int  # images (rows) per request
    share: float


DEFAULT_PHASES = (
    Phase("idle", 30, 0),
    Phase("low", 60, 8),
    Phase("high", 90, 60),
    Phase("low", 60, 8),
    Phase("idle", 60, 0),
)
DEFAULT_MIX = (Workload("expression_encoder", 8, 0.7), Workload("face_detector", 4, 0.3))


def parse_phase(text: str) -> Phase:
    """`name:seconds:requests_per_s`."""
    name, seconds, rps = text.split(":")
    phase = Phase(name, float(seconds), float(rps))
    if phase.seconds <= 0 or phase.rps < 0:
        raise argparse.ArgumentTypeError(f"phase {text!r}: seconds must be > 0 and requests/s ≥ 0")
    return phase


def parse_workload(text: str) -> Workload:
    """`model:rows:share`."""
    model, rows, share = text.split(":")
    return Workload(model, int(rows), float(share))


def phase_at(phases: Sequence[Phase], t: float) -> Phase | None:
    """The phase running at t seconds after the start (None after the last one)."""
    end = 0.0
    for phase in phases:
        end += phase.seconds
        if t < end:
            return phase
    return None


def send_times(phases: Sequence[Phase]) -> list[tuple[float, int]]:
    """(seconds after the start, index of the phase) of every request: a constant rate within each phase."""
    times, start = [], 0.0
    for number, phase in enumerate(phases):
        if phase.rps > 0:
            count = int(phase.seconds * phase.rps)
            times += [(start + k / phase.rps, number) for k in range(count)]
        start += phase.seconds
    return times


def scrape_values(rows: list[dict]) -> dict[str, dict[str, float]]:
    """facecast.serving.health.metrics rows → values[metric][model] for nv_inference_* of version 1 (or
    unversioned), summed over the other labels."""
    values: dict[str, dict[str, float]] = {}
    for row in rows:
        if not row["metric"].startswith(METRIC_PREFIX) or row["version"] not in ("", "1") or not row["model"]:
            continue
        per_model = values.setdefault(row["metric"], {})
        per_model[row["model"]] = per_model.get(row["model"], 0.0) + row["value"]
    return values


# ------------------------------------------------------------------------------------------------ load
@dataclass
class PodCounters:
    sent: int = 0
    ok: int = 0
    failed: int = 0


class LoadGenerator:
    """Open-loop requests at the phases' rates, round-robin over replicas, bounded in flight."""

    def __init__(self, urls: list[str], mix: Sequence[Workload], max_in_flight: int, seed: int = 0):
        self.urls = urls
        self.mix = list(mix)
        self.max_in_flight = max_in_flight
        rng = np.random.default_rng(seed)
        self.inputs = {}
        self.clients = {(w.model, url): TritonModelClient(w.model, url, timeout_s=60.0) for w in mix for url in urls}
        for workload in mix:
            signature = self.clients[(workload.model, urls[0])].signature
            self.inputs[workload.model] = {
                spec.name: rng.integers(0, 256, (workload.rows, *spec.dims), dtype=np.uint8)
                if spec.dtype == np.uint8
                else rng.random((workload.rows, *spec.dims), dtype=np.float32)
                for spec in signature.inputs
            }
        shares = np.array([w.share for w in mix], dtype=float)
        self.choices = rng.choice(len(mix), size=1_000_000, p=shares / shares.sum())
        self.lock = threading.Lock()
        self.in_flight = 0
        self.shed = 0
        self.pods = [PodCounters() for _ in urls]
        self.latencies: dict[int, list[float]] = {}  # per phase index (two phases may share a name)
        self.errors: list[str] = []

    def _one(self, index: int, model: str, pod: int, phase: int) -> None:
        began = time.perf_counter()
        try:
            self.clients[(model, self.urls[pod])].infer(self.inputs[model])
            ok = True
        except Exception as error:  # noqa: BLE001 - a failed request is data here, not a crash
            ok = False
            if len(self.errors) < 20:
                self.errors.append(f"{model} on pod {pod}: {error}")
        elapsed = time.perf_counter() - began
        with self.lock:
            self.in_flight -= 1
            counters = self.pods[pod]
            counters.ok += ok
            counters.failed += not ok
            if ok:
                self.latencies.setdefault(phase, []).append(elapsed)

    def run(self, phases: Sequence[Phase], t0: float, stop: threading.Event) -> None:
        workers = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="load")
        try:
            for index, (due, phase) in enumerate(send_times(phases)):
                delay = t0 + due - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    break
                pod = index % len(self.urls)
                model = self.mix[int(self.choices[index % len(self.choices)])].model
                with self.lock:
                    if self.in_flight >= self.max_in_flight:
                        self.shed += 1
                        continue
                    self.in_flight += 1
                    self.pods[pod].sent += 1
                workers.submit(self._one, index, model, pod, phase)
            remaining = t0 + sum(p.seconds for p in phases) - time.monotonic()
            if remaining > 0:
                stop.wait(remaining)
        finally:
            workers.shutdown(wait=True, cancel_futures=True)

    def snapshot(self, pod: int) -> dict:
        with self.lock:
            return {**asdict(self.pods[pod]), "shed_fleet": self.shed, "in_flight_fleet": self.in_flight}

    def phase_summary(self, phases: Sequence[Phase]) -> list[dict]:
        """Per phase, in order: requests completed and their client-side p50/p95 (None without requests)."""
        with self.lock:
            latencies = {k: list(v) for k, v in self.latencies.items()}
        summary = []
        for number, phase in enumerate(phases):
            values = latencies.get(number, [])
            summary.append(
                {
                    "phase": phase.name,
                    "completed": len(values),
                    "p50_ms": round(float(np.percentile(values, 50)) * 1000, 2) if values else None,
                    "p95_ms": round(float(np.percentile(values, 95)) * 1000, 2) if values else None,
                }
            )
        return summary


# ------------------------------------------------------------------------------------------------ replicas
@contextlib.contextmanager
def replicas(count: int, repository: Path, work: Path) -> Iterator[list]:
    (work / "run").mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        servers = []
        for index in range(count):
            http, grpc, metrics_port = find_free_ports(3)
            settings = Settings().with_overrides(
                http_port=http,
                grpc_port=grpc,
                metrics_port=metrics_port,
                run_dir=work / "run",
                model_repository=repository,
            )
            servers.append(
                stack.enter_context(
                    running_server(settings, model_repository=repository, log_path=work / f"triton-{index}.log")
                )
            )
        yield servers


def record(args: argparse.Namespace) -> Path:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = PROJECT_ROOT / "var" / "hpa-recording" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work.mkdir(parents=True, exist_ok=True)
    phases: list[Phase] = args.phases
    duration = sum(p.seconds for p in phases)
    label = args.label or ("smoke run (short recording)" if duration < 180 else "")
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    with replicas(args.replicas, args.model_repository, work) as servers:
        urls = [s.url for s in servers]
        generator = LoadGenerator(urls, args.mix, args.max_in_flight, seed=args.seed)
        scrapes: list[list[dict]] = [[] for _ in servers]
        stop = threading.Event()
        print(f"hpa-record: {len(servers)} replicas ready ({', '.join(urls)}); {duration:.0f} s of load", flush=True)
        t0 = time.monotonic()
        load = threading.Thread(target=generator.run, args=(phases, t0, stop), name="load-generator", daemon=True)
        load.start()
        try:
            step = 0
            while True:
                due = t0 + step * args.scrape_s
                if due > t0 + duration + 1e-6:
                    break
                if stop.wait(max(0.0, due - time.monotonic())):
                    break
                # t is the scheduled scrape time, a multiple of --scrape-s (the GET starts `lag_ms` after it):
                # benchmarks.hpa_simulation compares times against its windows strictly, so times a few ms off
                # the 15-s sync grid would decide whether a recommendation exactly one window old still counts.
                t = round(step * args.scrape_s, 3)
                phase = phase_at(phases, t)
                for index, server in enumerate(servers):
                    lag_ms = round((time.monotonic() - due) * 1000, 1)
                    scrapes[index].append(
                        {
                            "t": t,
                            "lag_ms": lag_ms,
                            "phase": phase.name if phase else phases[-1].name,
                            "values": scrape_values(metrics(server.metrics_url, timeout=5.0)),
                            "client": {"offered_rps": phase.rps if phase else 0.0, **generator.snapshot(index)},
                        }
                    )
                if step % max(1, int(30 / args.scrape_s)) == 0:
                    sent = sum(p.sent for p in generator.pods)
                    print(
                        f"hpa-record: t={t:6.1f} s phase {phase.name if phase else '-':6s} sent {sent} "
                        f"shed {generator.shed} in flight {generator.in_flight}",
                        flush=True,
                    )
                step += 1
        except KeyboardInterrupt:
            label = (label + "; " if label else "") + "interrupted"
        finally:
            stop.set()
            load.join(timeout=120)
    load_after = os.getloadavg()
    summary = generator.phase_summary(phases)
    for index, pod_scrapes in enumerate(scrapes):
        meta = {
            "what": (
                f"GET /metrics of one of {args.replicas} Triton 2.51 replicas (nvidia-pytriton wheel, facecast's 7 CPU "
                f"models from {args.model_repository.name}/) on one machine, scraped every {args.scrape_s:g} s under a "
                "stepped open-loop load from tritonclient.http, round-robin over the replicas; nv_inference_* "
                "series of version 1 kept, failures summed over `reason`."
            ),
            "label": label,
            "pod": f"{POD_PREFIX}{index}",
            "replicas": args.replicas,
            "scrape_interval_s": args.scrape_s,
            "recorded_at": started.isoformat(timespec="seconds"),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, shared; the load generator "
            "runs on the same cores",
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in load_after],
            "server_args": SERVER_ARGS,
            "phases": [asdict(p) for p in phases],
            "mix": [asdict(w) for w in args.mix],
            "max_in_flight": args.max_in_flight,
            "client_latency_by_phase": summary,
            "client_errors": generator.errors[:5],
            "format": "one JSON object per scrape after this line: t (scheduled scrape time, s since the recording "
            "began; the GET started lag_ms later), phase, "
            "values[metric][model] (version 1 only) and client (this replica's requests so far; shed_fleet and "
            "in_flight_fleet over all replicas)",
        }
        path = out / f"{POD_PREFIX}{index}.jsonl"
        with path.open("w") as handle:
            handle.write(json.dumps({"meta": meta}) + "\n")
            for scrape in pod_scrapes:
                handle.write(json.dumps(scrape, separators=(",", ":")) + "\n")
    print(f"hpa-record: wrote {len(scrapes)} files to {out} (server logs in {work})", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument(
        "--phases", nargs="+", type=parse_phase, default=list(DEFAULT_PHASES), metavar="NAME:SECONDS:RPS"
    )
    parser.add_argument("--mix", nargs="+", type=parse_workload, default=list(DEFAULT_MIX), metavar="MODEL:ROWS:SHARE")
    parser.add_argument("--scrape-s", type=float, default=5.0)
    parser.add_argument("--max-in-flight", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-repository", type=Path, default=PROJECT_ROOT / "model_repository")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for the per-replica JSONL files")
    parser.add_argument("--label", default="", help="recorded in the meta line and shown in the report")
    parser.add_argument("--no-report", action="store_true", help="do not run benchmarks.hpa_report afterwards")
    parser.add_argument("--doc", type=Path, help="passed to the report (default docs/operations.md)")
    parser.add_argument("--png", type=Path, help="passed to the report (default docs/images/hpa-simulation.png)")
    args = parser.parse_args(argv)
    args.model_repository = args.model_repository.resolve()
    out = record(args)
    if not args.no_report:
        from benchmarks import hpa_report

        given = argv if argv is not None else sys.argv[1:]
        command = (
            "make hpa-record" if not given else ".venv/bin/python -m benchmarks.hpa_recording " + shlex.join(given)
        )
        report_args = ["--recording", str(out), "--command", command]
        if args.doc:
            report_args += ["--doc", str(args.doc)]
        if args.png:
            report_args += ["--png", str(args.png)]
        return hpa_report.main(report_args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
