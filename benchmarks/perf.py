"""Triton's own perf_analyzer against every served model, on 1 and on 3 local replicas → docs/benchmarks.md.

    make perf-env && make perf                     # the full matrix: 7 models × concurrency 1, 4, 16 × 1 and 3 replicas
    .venv/bin/python -m benchmarks.perf --models expression_encoder --concurrency 1 --replicas 1 --measurement-ms 2000

What runs. For each replica count: that many real `tritonserver` processes (facecast.serving.process, distinct free
loopback ports, the same model_repository/); for more than one, Debian's haproxy in front, configured by
docker/loopback_balancer.py from the compose balancer's own docker/haproxy/haproxy.cfg (leastconn, per-request L7
balancing, the same checks and slowstart). Then, per model and concurrency, one perf_analyzer (the binary inside
PyPI `tritonclient[all]==2.51.0`, `make perf-env`) over HTTP with one-row requests (`-b 1`, so infer/s is requests/s;
Triton's dynamic batcher merges them), `--percentile=95`, its CSV (`-f`) parsed for infer/s and p50/p90/p95/p99.

Why one perf_analyzer through the balancer for 3 replicas, not one per replica summed: a client pool (many app
sessions behind compose's balancer, docker/README.md) sends C requests in flight to ONE address and the balancer
spreads them per request. One perf_analyzer at concurrency C through haproxy is exactly that, so each row compares
1 and 3 replicas at the same number of requests in flight, including the balancer's cost and any uneven spreading.
Three perf_analyzers at C each would offer 3C in flight (and C/3 each is not an integer for C = 1, 4, 16) and
measure three independent clients that never contend for a replica, an upper bound no client pool sees. The share
of requests each replica served (Triton's own statistics) is recorded per cell. perf_analyzer reads the server's
statistics before and after each window; behind a balancer those reads reach different replicas, so the model
version is pinned (`-x`, else it fails with "failed to find the requested model version") and its server-side
columns are dropped for more than one replica.

Inputs. perf_analyzer's `random` data fills raw random bytes: int64 token ids become values like
-1420042007188224409 (MiniLM's Gather then fails, docs/platform.md) and the same bytes read as FP32 would include
NaN, Inf and denormals. So every model with a non-pixel input gets `--input-data` JSON: real MiniLM ids from
facecast.tokenizer for text_embedder; for the others uniform [0, 1) floats, 0/1 masks with the first cell set, unit
vectors for embeddings (4 distinct rows each). Pure-pixel models (face_detector, expression_encoder,
image_embedder) use perf_analyzer's random uint8 images, which are valid images.

Measurement windows (defaults, each a flag). Every cell is exactly three windows of `--measurement-ms`, merged
(perf_analyzer's own stability search is switched off with `-s 100000 -r 3`), and `-v` prints each window's
throughput and p95, from which this script judges stability itself: a cell whose windows differ from their mean by
more than `--stability-percent` (throughput or p95) is marked † in the tables. Why not perf_analyzer's search: on
these shared cores it often never converges (a trial at its default 10 % failed at concurrency 4 within four 2-s
windows, one at 20 % at concurrency 1), and then perf_analyzer 2.51 reports nothing for that level, so the matrix's
duration would depend on the neighbours' load. 4000 ms: the slowest model (style_mapper, ~29 requests/s at
concurrency 1 here) still puts ~350 requests, ~17 of them beyond the p95, into the reported 12 s; a cell takes
~13 s; 42 cells plus warm-ups, server starts and the balancer's slowstart: ~10.5 minutes on 2 cores (estimated
from the smoke runs, not measured as a whole).

Everything (CSVs, haproxy config and log, server logs, results.json) goes to var/perf/<UTC time>/; the section of
docs/benchmarks.md between `<!-- perf:begin -->` and `<!-- perf:end -->` is rewritten, the rest of the file is not.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import io
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks.doc_markers import write_section
from benchmarks.report import machine_line
from facecast.config import PROJECT_ROOT, Settings
from facecast.serving.health import model_config, model_index, model_stats
from facecast.serving.process import find_free_ports, running_server
from facecast.tokenizer import tokenize
from facecast.vocab import SERVED_MODELS

# The serving contract's order (README.md).
MODELS = SERVED_MODELS
CONCURRENCY = (1, 4, 16)
REPLICAS = (1, 3)
MEASUREMENT_MS = 4000
STABILITY_PERCENT = 20
WINDOWS = 3
WARMUP_REQUESTS = 32
DOC = PROJECT_ROOT / "docs" / "benchmarks.md"
SECTION = "perf"
BALANCER_SCRIPT = PROJECT_ROOT / "docker" / "loopback_balancer.py"
# Texts for text_embedder's ids: what the library's text search is asked (facecast search --text ...).
QUERY_TEXTS = (
    "shy smile, anime",
    "a furious cartoon villain shouting at the hero",
    "tearful realistic close-up, quiet sadness",
    "surprised stylized 3d kid with wide eyes",
)
# perf_analyzer's CSV (no --verbose-csv): latencies in microseconds.
CSV_LATENCIES = {"p50": "p50 latency", "p90": "p90 latency", "p95": "p95 latency", "p99": "p99 latency"}
WINDOW_LINE = re.compile(r"Pass \[(\d+)\] throughput: ([0-9.]+) infer/sec\. p\d+ latency: ([0-9.]+) usec")


# ------------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class PerfResult:
    model: str
    replicas: int
    concurrency: int
    infer_per_s: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    stable: bool = True  # False: a window's throughput or p95 is more than the threshold from the windows' mean
    window_spread: float = 0.0  # that largest relative difference (0.12 = 12 %)
    server_queue_ms: float | None = None
    server_compute_ms: float | None = None
    replica_share: tuple[float, ...] = ()  # fraction of the cell's requests each replica served


def parse_perf_csv(text: str) -> list[dict[str, float]]:
    """perf_analyzer's `-f` CSV → one row per concurrency (or request rate): concurrency, infer_per_s, p50_ms,
    p90_ms, p95_ms, p99_ms, server_queue_ms, server_compute_ms. Latencies in the file are microseconds."""
    rows = []
    for record in csv.DictReader(io.StringIO(text)):
        if not record or not record.get("Inferences/Second"):
            continue
        level = record.get("Concurrency") or record.get("Request Rate") or "0"
        row = {"concurrency": float(level), "infer_per_s": float(record["Inferences/Second"])}
        for key, column in CSV_LATENCIES.items():
            row[f"{key}_ms"] = float(record[column]) / 1000.0
        if record.get("Server Queue"):
            row["server_queue_ms"] = float(record["Server Queue"]) / 1000.0
        compute = [record.get(c) for c in ("Server Compute Input", "Server Compute Infer", "Server Compute Output")]
        if all(compute):
            row["server_compute_ms"] = sum(float(c) for c in compute if c) / 1000.0
        rows.append(row)
    return rows


def parse_windows(stdout: str) -> list[tuple[float, float]]:
    """perf_analyzer -v's per-window lines → [(infer/s, p95 ms), ...] in window order."""
    return [(float(m[2]), float(m[3]) / 1000.0) for m in WINDOW_LINE.finditer(stdout)]


def window_spread(windows: Sequence[tuple[float, float]]) -> float:
    """The largest relative difference of one window's throughput or p95 from the windows' mean (0 for < 2)."""
    if len(windows) < 2:
        return 0.0
    spread = 0.0
    for values in zip(*windows):
        mean = sum(values) / len(values)
        if mean > 0:
            spread = max(spread, max(abs(v - mean) for v in values) / mean)
    return spread


# ------------------------------------------------------------------------------------------------ capacity rule
def replicas_needed(peak_rps: float, replica_rps: float) -> int:
    """replicas = ceil(peak requests/s ÷ one replica's throughput at the accepted p95); at least 1."""
    if replica_rps <= 0:
        raise ValueError("one replica's throughput must be positive")
    return max(1, math.ceil(peak_rps / replica_rps - 1e-9))


def throughput_at_p95(results: Sequence[PerfResult], model: str, p95_budget_ms: float) -> PerfResult | None:
    """The one-replica cell of `model` with the highest throughput whose p95 is within the budget."""
    within = [r for r in results if r.model == model and r.replicas == 1 and r.p95_ms <= p95_budget_ms]
    return max(within, key=lambda r: r.infer_per_s, default=None)


# ------------------------------------------------------------------------------------------------ perf_analyzer
@dataclass(frozen=True)
class PerfAnalyzer:
    binary: Path
    env: dict[str, str] = field(repr=False)

    @classmethod
    def locate(cls, perf_env: Path) -> PerfAnalyzer:
        """`make perf-env`'s perf_analyzer, with libcudart.so.12 from PyPI nvidia-cuda-runtime-cu12 on the path."""
        binary = Path(perf_env) / "bin" / "perf_analyzer"
        if not binary.is_file():
            raise SystemExit(f"perf: {binary} is missing: run `make perf-env`")
        libs = sorted(Path(perf_env).glob("lib/python3*/site-packages/nvidia/cuda_runtime/lib"))
        if not libs:
            raise SystemExit(f"perf: no nvidia/cuda_runtime/lib in {perf_env}: run `make perf-env`")
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join([str(libs[0].resolve()), env.get("LD_LIBRARY_PATH", "")]).rstrip(
            os.pathsep
        )
        analyzer = cls(binary.resolve(), env)
        check = subprocess.run([str(analyzer.binary), "--version"], env=env, capture_output=True, text=True)
        if check.returncode != 0:
            raise SystemExit(
                f"perf: {binary} --version failed ({check.stderr.strip() or check.returncode}); it needs Debian "
                "libb64-0d (apt-get install -y libb64-0d) and libcudart.so.12 (`make perf-env`)"
            )
        return analyzer

    def command(self, model: str, version: str, url: str, concurrency: int, csv_path: Path, *extra: str) -> list[str]:
        return [
            str(self.binary),
            "-m",
            model,
            # An explicit version: without one, perf_analyzer picks the version whose queue count grew between the
            # server statistics it reads before and after each window, and behind a balancer those two reads land
            # on different replicas ("failed to find the requested model version", seen at 3 replicas).
            "-x",
            version,
            "-u",
            url,
            "-i",
            "http",
            "-b",
            "1",
            "--concurrency-range",
            str(concurrency),
            "--percentile=95",
            "-f",
            str(csv_path),
            *extra,
        ]

    def run(self, command: list[str], log: Path, timeout_s: float) -> subprocess.CompletedProcess:
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout_s)
        with log.open("a") as handle:
            handle.write("$ " + shlex.join(command) + f"\n# exit {result.returncode}\n{result.stdout}{result.stderr}\n")
        return result


def _row_values(spec: dict, rows: int, rng: np.random.Generator) -> np.ndarray:
    name, dims = spec["name"], [int(d) for d in spec["dims"]]
    kind = spec["data_type"].removeprefix("TYPE_")
    shape = (rows, *dims)
    if kind == "UINT8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if name.endswith("mask") or name == "present":
        values = (rng.random(shape) < 0.7).astype(np.float32)
        values.reshape(rows, -1)[:, 0] = 1.0
        return values
    if name.endswith("embedding"):
        values = rng.standard_normal(shape).astype(np.float32)
        return values / np.linalg.norm(values.reshape(rows, -1), axis=1).reshape(rows, *([1] * len(dims)))
    return rng.random(shape, dtype=np.float32)


def input_data(config: dict, rows: int = 4, seed: int = 0) -> dict | None:
    """perf_analyzer `--input-data` JSON for a served config, or None when its random uint8 pixels are right."""
    inputs = config.get("input", [])
    if all(spec["data_type"] == "TYPE_UINT8" for spec in inputs):
        return None
    rng = np.random.default_rng(seed)
    if config.get("name") == "text_embedder" or {s["name"] for s in inputs} == {"input_ids", "attention_mask"}:
        if any(int(d) == -1 for spec in inputs for d in spec["dims"]):
            # a dynamic token axis (text_query): each query at its own length, as the library's client sends it
            rows_of = [tokenize([text], pad_to_longest=True) for text in QUERY_TEXTS[:rows]]
            return {
                "data": [
                    {
                        name: {"content": values[0].tolist(), "shape": [values.shape[1]]}
                        for name, values in zip(("input_ids", "attention_mask"), row)
                    }
                    for row in rows_of
                ]
            }
        ids, mask = tokenize(list(QUERY_TEXTS[:rows]))
        columns = {"input_ids": ids, "attention_mask": mask}
    else:
        columns = {spec["name"]: _row_values(spec, rows, rng) for spec in inputs}
    data = []
    for row in range(rows):
        data.append(
            {
                name: {"content": values[row].reshape(-1).tolist(), "shape": list(values.shape[1:])}
                for name, values in columns.items()
            }
        )
    return {"data": data}


# ------------------------------------------------------------------------------------------------ replicas
def _load_balancer_module():
    """docker/loopback_balancer.py (not a package): the compose balancer config rendered for loopback ports."""
    name = "facecast_loopback_balancer"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BALANCER_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def haproxy_servers(stats_port: int) -> dict[tuple[str, str], str]:
    """(backend, server) → status, from haproxy's `/stats;csv`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{stats_port}/stats;csv", timeout=2.0) as response:
        text = response.read().decode().lstrip("# ")
    return {
        (row["pxname"], row["svname"]): row["status"]
        for row in csv.DictReader(io.StringIO(text))
        if row["svname"] not in ("FRONTEND", "BACKEND")
    }


@contextlib.contextmanager
def balancer(servers: list, work: Path, haproxy: str) -> Iterator[str]:
    """haproxy in front of `servers` (TritonProcess) with compose's settings; yields its HTTP host:port once every
    replica is UP and past the template's slowstart ramp."""
    lb = _load_balancer_module()
    http_port, grpc_port, stats_port = find_free_ports(3)
    replicas = [lb.Replica("127.0.0.1", s.http_port, s.grpc_port) for s in servers]
    config = lb.render(replicas, {"http": http_port, "grpc": grpc_port, "stats": stats_port})
    (work / "haproxy.cfg").write_text(config)
    slowstart = max((int(s) for s in re.findall(r"\bslowstart (\d+)s\b", config)), default=0)
    log = (work / "haproxy.log").open("wb")
    popen = subprocess.Popen([haproxy, "-f", str(work / "haproxy.cfg"), "-db"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30.0
        while True:
            if popen.poll() is not None:
                raise RuntimeError(f"haproxy exited with {popen.returncode}: see {work / 'haproxy.log'}")
            with contextlib.suppress(OSError, ValueError):
                states = haproxy_servers(stats_port)
                http = [v for (backend, _), v in states.items() if backend == "triton_http"]
                if len(http) == len(servers) and all(v == "UP" for v in http):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not mark every replica UP within 30 s: see {work / 'haproxy.log'}")
            time.sleep(0.25)
        time.sleep(slowstart)  # a new server gets a ramped share of requests for `slowstart` seconds
        yield f"127.0.0.1:{http_port}"
    finally:
        popen.terminate()
        try:
            popen.wait(10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(5)
        log.close()


@contextlib.contextmanager
def serving(count: int, repository: Path, work: Path, haproxy: str) -> Iterator[tuple[str, list]]:
    """`count` replicas; yields (the URL perf_analyzer targets, the servers)."""
    (work / "run").mkdir(parents=True, exist_ok=True)  # the server's working directory
    with contextlib.ExitStack() as stack:
        servers = []
        for index in range(count):
            http, grpc, metrics = find_free_ports(3)
            settings = Settings().with_overrides(
                http_port=http,
                grpc_port=grpc,
                metrics_port=metrics,
                run_dir=work / "run",
                model_repository=repository,
            )
            log = work / f"triton-{index}.log"
            servers.append(stack.enter_context(running_server(settings, model_repository=repository, log_path=log)))
        if count == 1:
            yield servers[0].url, servers
        else:
            yield stack.enter_context(balancer(servers, work, haproxy)), servers


def served_version(url: str, model: str) -> str:
    """The highest READY version of `model` (what perf_analyzer would pick on one server)."""
    versions = [e.get("version", "") for e in model_index(url) if e["name"] == model and e.get("state") == "READY"]
    numeric = [v for v in versions if v.isdigit()]
    if not numeric:
        raise RuntimeError(f"{model} has no READY version at {url}")
    return max(numeric, key=int)


def _successes(servers: list, model: str) -> list[int]:
    counts = []
    for server in servers:
        per_model, _ = model_stats(server.url)
        counts.append(sum(r["requests"] for r in per_model if r["model"] == model))
    return counts


# ------------------------------------------------------------------------------------------------ one cell
@dataclass(frozen=True)
class Measurement:
    measurement_ms: int = MEASUREMENT_MS
    stability_percent: float = STABILITY_PERCENT
    windows: int = WINDOWS
    warmup_requests: int = WARMUP_REQUESTS


def measure(
    analyzer: PerfAnalyzer,
    model: str,
    version: str,
    url: str,
    servers: list,
    concurrency: int,
    data_args: list[str],
    settings: Measurement,
    work: Path,
) -> PerfResult:
    """One cell: exactly `settings.windows` windows at `concurrency`, merged by perf_analyzer."""
    stem = f"{model}-r{len(servers)}-c{concurrency}"
    csv_path, log = work / f"{stem}.csv", work / "perf_analyzer.log"
    csv_path.unlink(missing_ok=True)
    fixed = ["-p", str(settings.measurement_ms), "-s", "100000", "-r", str(settings.windows), "-v"]
    command = analyzer.command(model, version, url, concurrency, csv_path, *data_args, *fixed)
    before = _successes(servers, model)
    result = analyzer.run(command, log, settings.measurement_ms / 1000.0 * (settings.windows + 2) + 60.0)
    rows = parse_perf_csv(csv_path.read_text()) if csv_path.is_file() else []
    if result.returncode != 0 or not rows:
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise RuntimeError(f"perf_analyzer failed on {stem} (exit {result.returncode}): {' | '.join(tail)}")
    after = _successes(servers, model)
    served = [b - a for a, b in zip(before, after)]
    spread = window_spread(parse_windows(result.stdout))
    row = rows[0]
    return PerfResult(
        model=model,
        replicas=len(servers),
        concurrency=concurrency,
        infer_per_s=row["infer_per_s"],
        p50_ms=row["p50_ms"],
        p90_ms=row["p90_ms"],
        p95_ms=row["p95_ms"],
        p99_ms=row["p99_ms"],
        stable=spread <= settings.stability_percent / 100.0,
        window_spread=spread,
        # perf_analyzer's server-side columns are differences of two statistics reads; behind a balancer those come
        # from different replicas and mean nothing
        server_queue_ms=row.get("server_queue_ms") if len(servers) == 1 else None,
        server_compute_ms=row.get("server_compute_ms") if len(servers) == 1 else None,
        replica_share=tuple(s / max(sum(served), 1) for s in served),
    )


def warm_up(
    analyzer: PerfAnalyzer, model: str, version: str, url: str, data_args: list[str], requests: int, work: Path
) -> None:
    """A fixed number of requests at concurrency 4, outside any measurement (first-run allocations, slowstart)."""
    if requests <= 0:
        return
    csv_path = work / f"warmup-{model}.csv"
    command = analyzer.command(model, version, url, 4, csv_path, *data_args, "--request-count", str(requests))
    result = analyzer.run(command, work / "perf_analyzer.log", 120.0)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise RuntimeError(f"perf_analyzer warm-up of {model} failed (exit {result.returncode}): {' | '.join(tail)}")


# ------------------------------------------------------------------------------------------------ report
def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def model_table(results: Sequence[PerfResult], model: str, replicas: Sequence[int]) -> str:
    cells = {(r.replicas, r.concurrency): r for r in results if r.model == model}
    levels = sorted({r.concurrency for r in results if r.model == model})
    header = ["concurrency"]
    for n in replicas:
        label = "1 replica" if n == 1 else f"{n} replicas"
        header += [f"{label}: infer/s", "p50 ms", "p95 ms", "p99 ms"]
    if len(replicas) > 1:
        header.append(f"{replicas[-1]} ÷ {replicas[0]} infer/s")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for level in levels:
        row = [str(level)]
        for n in replicas:
            cell = cells.get((n, level))
            if cell is None:
                row += ["–"] * 4
                continue
            mark = "" if cell.stable else " †"
            row += [_fmt(cell.infer_per_s) + mark, _fmt(cell.p50_ms), _fmt(cell.p95_ms), _fmt(cell.p99_ms)]
        if len(replicas) > 1:
            first, last = cells.get((replicas[0], level)), cells.get((replicas[-1], level))
            row.append(f"{last.infer_per_s / first.infer_per_s:.2f}×" if first and last else "–")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _spread(results: Sequence[PerfResult]) -> str:
    shares = [r.replica_share for r in results if len(r.replica_share) > 1]
    if not shares:
        return ""
    low = min(min(s) for s in shares)
    high = max(max(s) for s in shares)
    return (
        f"Requests per replica behind haproxy (Triton's own counts, every multi-replica cell): "
        f"{low:.0%}–{high:.0%} of a cell's requests each."
    )


def capacity_paragraph(
    results: Sequence[PerfResult], model: str, p95_budget_ms: float, peak_rps: float, cores: int
) -> str:
    rule = (
        "**Capacity rule.** replicas = ⌈peak requests/s ÷ one replica's throughput at the p95 you accept⌉, "
        "where one replica's throughput is the highest infer/s of the 1-replica column whose p95 is within the "
        "budget (requests here are one row each; a client that sends 8 faces per request counts 8)."
    )
    best = throughput_at_p95(results, model, p95_budget_ms)
    if best is None:
        return rule + f" No 1-replica cell of {model} met p95 ≤ {p95_budget_ms:g} ms in this run."
    needed = replicas_needed(peak_rps, best.infer_per_s)
    return (
        f"{rule} Today, {model} with p95 ≤ {p95_budget_ms:g} ms: one replica sustains {best.infer_per_s:,.0f} "
        f"infer/s (concurrency {best.concurrency}, p95 {best.p95_ms:.1f} ms), so a peak of {peak_rps:,.0f} "
        f"requests/s needs ⌈{peak_rps:,.0f} ÷ {best.infer_per_s:,.0f}⌉ = **{needed} replicas**, each with "
        f"{cores} cores of its own, as the measured replica was (no other replica on them)."
    )


def scaling_paragraph(results: Sequence[PerfResult], replicas: Sequence[int], cores: int) -> str:
    if len(replicas) < 2:
        return ""
    low, high = replicas[0], replicas[-1]
    ratios = []
    for model in dict.fromkeys(r.model for r in results):
        cells = {(r.replicas, r.concurrency): r for r in results if r.model == model}
        top = max((c for (n, c) in cells if n == high and (low, c) in cells), default=None)
        if top is not None:
            ratio = cells[(high, top)].infer_per_s / cells[(low, top)].infer_per_s
            ratios.append(f"{model} {ratio:.2f}× (concurrency {top})")
    said = "; ".join(ratios) if ratios else "no model was measured at both counts"
    return (
        f"**{high} replicas on {cores} cores cannot be faster than {low}.** They are {high} servers sharing the same "
        f"{cores} cores (each ONNX Runtime sizes its thread pools to all of them), with haproxy in the path: no "
        f"compute is added, so the {high}-replica column measures the balancer's and the oversubscription's cost, "
        f"not scaling. {high} ÷ {low} in this run: {said}. A ratio above 1× is not capacity: either one replica left "
        "part of the cores idle (one model instance runs one batch at a time, with the python backend's copies in "
        "between, so several servers can overlap where one cannot) or the neighbours' load changed between the two "
        "runs. Real scaling needs each replica on its own cores (a pod with its CPU request); the capacity rule "
        "below therefore uses the 1-replica column.\n"
    )


def render_section(
    results: Sequence[PerfResult],
    *,
    models: Sequence[str],
    concurrency: Sequence[int],
    replicas: Sequence[int],
    measurement: Measurement,
    command: str,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
    started: datetime,
    seconds: float,
    cores: int,
    machine: str,
    example: tuple[str, float, float],
) -> str:
    full = set(models) == set(MODELS) and set(concurrency) == set(CONCURRENCY) and set(replicas) == set(REPLICAS)
    title = "## perf_analyzer: every served model, 1 and 3 replicas"
    if not full:
        title += " — PARTIAL RUN (smoke test: not the benchmark; `make perf` runs the full matrix)"
    loads = lambda v: " / ".join(f"{x:.2f}" for x in v)  # noqa: E731
    parts = [
        title,
        "",
        f"`{command}` — Triton 2.51 (CPU, python backend + ONNX Runtime) from model_repository/, perf_analyzer "
        f"2.51 over HTTP on the same machine, one-row requests, concurrency = requests in flight. "
        f"{'3 replicas' if 3 in replicas else 'More than one replica'}: one perf_analyzer through haproxy "
        "(docker/loopback_balancer.py's rendering of the compose balancer), as a client pool sees the fleet. "
        f"Each cell: {measurement.windows} windows of {measurement.measurement_ms} ms, merged; † = a window's "
        f"throughput or p95 more than {measurement.stability_percent:g} % from the windows' mean. Latencies are "
        "client-side, in ms. Inputs: random uint8 pixels; real MiniLM token ids (text_embedder); valid floats, "
        "masks and unit embeddings elsewhere (benchmarks/perf.py says why).",
        "",
        f"Machine: {cores} cores, shared. Load average (1/5/15 min) before {loads(load_before)}, after "
        f"{loads(load_after)}; started {started:%Y-%m-%d %H:%M} UTC, took {seconds / 60:.1f} min.",
        "",
    ]
    for model in models:
        if any(r.model == model for r in results):
            parts += [f"### {model}", "", model_table(results, model, replicas), ""]
    spread = _spread(results)
    if spread:
        parts += [spread, ""]
    scaling = scaling_paragraph(results, replicas, cores)
    if scaling:
        parts += [scaling, ""]
    model, budget, peak = example
    parts += [capacity_paragraph(results, model, budget, peak, cores), "", machine]
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------ main
def run_matrix(args: argparse.Namespace, analyzer: PerfAnalyzer, work: Path) -> list[PerfResult]:
    results: list[PerfResult] = []
    measurement = Measurement(args.measurement_ms, args.stability_percent, args.windows, args.warmup_requests)
    began = time.monotonic()
    for count in args.replicas:
        replica_dir = work / f"replicas-{count}"
        replica_dir.mkdir(parents=True, exist_ok=True)
        with serving(count, args.model_repository, replica_dir, args.haproxy) as (url, servers):
            print(f"perf: {count} replica(s) ready, target {url} ({time.monotonic() - began:.0f} s)", flush=True)
            for model in args.models:
                data = input_data(model_config(servers[0].url, model))
                data_args: list[str] = []
                if data is not None:
                    path = work / f"input-{model}.json"
                    path.write_text(json.dumps(data))
                    data_args = ["--input-data", str(path)]
                version = served_version(servers[0].url, model)
                warm_up(analyzer, model, version, url, data_args, args.warmup_requests, replica_dir)
                for concurrency in args.concurrency:
                    cell = measure(
                        analyzer, model, version, url, servers, concurrency, data_args, measurement, replica_dir
                    )
                    results.append(cell)
                    share = "/".join(f"{s:.0%}" for s in cell.replica_share)
                    print(
                        f"perf: {model:18s} replicas {count} c {concurrency:2d}: {cell.infer_per_s:8.1f} infer/s "
                        f"p50 {cell.p50_ms:7.1f} p95 {cell.p95_ms:7.1f} p99 {cell.p99_ms:7.1f} ms"
                        f" windows ±{cell.window_spread:.0%}{'' if cell.stable else ' †'} share {share}"
                        f" ({time.monotonic() - began:.0f} s)",
                        flush=True,
                    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, metavar="MODEL")
    parser.add_argument("--concurrency", nargs="+", type=int, default=list(CONCURRENCY))
    parser.add_argument("--replicas", nargs="+", type=int, default=list(REPLICAS))
    parser.add_argument("--measurement-ms", type=int, default=MEASUREMENT_MS)
    parser.add_argument("--stability-percent", type=float, default=STABILITY_PERCENT)
    parser.add_argument("--windows", type=int, default=WINDOWS, help="measurement windows per cell")
    parser.add_argument("--warmup-requests", type=int, default=WARMUP_REQUESTS)
    parser.add_argument("--perf-env", type=Path, default=PROJECT_ROOT / ".venv-perf")
    parser.add_argument("--model-repository", type=Path, default=PROJECT_ROOT / "model_repository")
    parser.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    parser.add_argument("--work-dir", type=Path, help="default var/perf/<UTC time>")
    parser.add_argument("--doc", type=Path, default=DOC, help="document whose perf section is rewritten")
    parser.add_argument("--no-doc", action="store_true", help="print the section instead of writing it")
    parser.add_argument("--example-model", default="expression_encoder", choices=MODELS)
    parser.add_argument("--example-p95-ms", type=float, default=50.0)
    parser.add_argument("--example-peak-rps", type=float, default=1000.0)
    args = parser.parse_args(argv)
    args.model_repository = args.model_repository.resolve()
    args.replicas = sorted(set(args.replicas))
    args.concurrency = sorted(set(args.concurrency))
    args.models = [m for m in MODELS if m in args.models]
    if max(args.replicas) > 1 and not Path(args.haproxy).is_file() and shutil.which(args.haproxy) is None:
        raise SystemExit("perf: more than one replica needs Debian haproxy (apt-get install -y haproxy)")
    if max(args.replicas) > 1:
        _load_balancer_module()  # fail now, not after the 1-replica half of the matrix
    analyzer = PerfAnalyzer.locate(args.perf_env)
    started = datetime.now(UTC)
    work = (args.work_dir or PROJECT_ROOT / "var" / "perf" / f"{started:%Y%m%dT%H%M%SZ}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    began = time.monotonic()
    results = run_matrix(args, analyzer, work)
    seconds = time.monotonic() - began
    load_after = os.getloadavg()
    given = argv if argv is not None else sys.argv[1:]
    command = "make perf" if not given else ".venv/bin/python -m benchmarks.perf " + shlex.join(given)
    (work / "results.json").write_text(
        json.dumps(
            {
                "command": command,
                "started": started.isoformat(),
                "seconds": seconds,
                "load_before": load_before,
                "load_after": load_after,
                "results": [asdict(r) for r in results],
            },
            indent=1,
        )
    )
    section = render_section(
        results,
        models=args.models,
        concurrency=args.concurrency,
        replicas=args.replicas,
        measurement=Measurement(args.measurement_ms, args.stability_percent, args.windows, args.warmup_requests),
        command=command,
        load_before=load_before,
        load_after=load_after,
        started=started,
        seconds=seconds,
        cores=os.cpu_count() or 0,
        machine=machine_line(),
        example=(args.example_model, args.example_p95_ms, args.example_peak_rps),
    )
    if args.no_doc:
        print(section)
    else:
        write_section(args.doc, SECTION, section)
        print(f"perf: wrote the {SECTION} section of {args.doc}; raw results in {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
