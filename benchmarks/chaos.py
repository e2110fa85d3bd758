"""Chaos on loopback: three real replicas under concurrent analyses and library searches; one is SIGKILLed, another
SIGSTOPped for a few seconds and resumed, the killed one restarted. Counts failed requests (what a user would see),
compares every result with a single-replica run, measures how evenly traffic spreads (each replica's
nv_inference_request_success) and the latency during failover, and checks the restarted replica is used again.

    python -m benchmarks.chaos [--seconds-per-phase 12] [--stop-seconds 4]     # writes docs/operations.md's section

tests/test_chaos.py runs the same scenario with shorter phases and holds it to the issue's bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facecast.clients.embedders import Embedders
from facecast.clips.pipeline import ClipAnalyzer
from facecast.config import PROJECT_ROOT, Settings
from facecast.library import Library, Query
from facecast.serving import process, replicas
from facecast.serving.client import DEFAULT_POOL
from facecast.serving.endpoints import MAX_BACKOFF_S
from facecast.serving.health import parse_metrics
from facecast.store import EMBEDDING_DIM, LibraryItem, open_store

QUERIES = ("a happy face", "an angry anime character", "a scared face", "shy smile, cartoon")


@dataclass
class PhaseStats:
    name: str
    seconds: float = 0.0
    analyses: int = 0
    searches: int = 0
    failures: list[str] = field(default_factory=list)
    search_ms: list[float] = field(default_factory=list)
    analysis_s: list[float] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        latency = np.asarray(self.search_ms) if self.search_ms else np.zeros(1)
        return {
            "phase": self.name,
            "seconds": round(self.seconds, 1),
            "analyses": self.analyses,
            "searches": self.searches,
            "failed": len(self.failures),
            "mismatched": len(self.mismatches),
            "search_p50_ms": round(float(np.percentile(latency, 50)), 1),
            "search_p99_ms": round(float(np.percentile(latency, 99)), 1),
            "analysis_max_s": round(max(self.analysis_s, default=0.0), 2),
        }


@dataclass
class ChaosResult:
    phases: list[PhaseStats]
    spread: dict[str, float]  # each replica's share of the requests served in the steady phase
    readmitted: bool
    retried_tries: int  # tries that failed at the connection level and were retried elsewhere
    events: list[str]

    @property
    def failures(self) -> list[str]:
        return [f for phase in self.phases for f in phase.failures]

    @property
    def mismatches(self) -> list[str]:
        return [m for phase in self.phases for m in phase.mismatches]

    def as_dict(self) -> dict[str, object]:
        return {
            "phases": [p.summary() for p in self.phases],
            "spread": self.spread,
            "readmitted": self.readmitted,
            "retried_tries": self.retried_tries,
            "events": self.events,
        }


def request_success(metrics_url: str, wait_s: float = 15.0) -> float:
    """Successful inference requests so far. Triton opens its metrics port after its HTTP port, so a server that has
    just answered ready may refuse here for a moment (seen under CI load): retried until `wait_s`."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + wait_s
    while True:
        try:
            with urllib.request.urlopen(metrics_url, timeout=5) as response:
                rows = parse_metrics(response.read().decode())
            break
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    return sum(row["value"] for row in rows if row["metric"] == "nv_inference_request_success")


def _comparable(report: dict) -> tuple:
    engagement = report["engagement"]
    return (
        report["faces_found"],
        json.dumps(report["counts"], sort_keys=True),
        None if engagement is None else round(engagement["value"], 4),
    )


def _library(db: Path, embedders: Embedders) -> Library:
    """A small library with deterministic items, so searches exercise the embedders and the re-rank."""
    rng = np.random.default_rng(0)
    with open_store(db) as store:
        if store.library.count() == 0:
            from facecast.vocab import EMOTIONS, STYLES

            vectors = rng.normal(size=(300, EMBEDDING_DIM)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            items = [
                LibraryItem(
                    content_sha256=f"chaos-{i}",
                    source="chaos",
                    source_path=f"chaos/{i}.png",
                    emotion=EMOTIONS[i % 7],
                    style=STYLES[i % 4],
                    emotion_probs=np.eye(7)[i % 7],
                    style_probs=np.eye(4)[i % 4],
                    embedding=vectors[i],
                    thumbnail=b"\x89PNG chaos",
                )
                for i in range(300)
            ]
            store.library.add(items)
    return Library.open(db, embedders=embedders)


def run_chaos(
    repository: Path,
    clip: Path,
    workdir: Path,
    *,
    seconds_per_phase: float = 12.0,
    stop_seconds: float = 4.0,
    log: Callable[[str], None] = print,
) -> ChaosResult:
    """The scenario (module docstring). Needs a repository with all seven models and a clip with faces."""
    base = _free_base()
    settings = Settings().with_overrides(
        http_port=base, grpc_port=base + 1, metrics_port=base + 2, run_dir=workdir / "run", model_repository=repository
    )
    events: list[str] = []
    began = time.monotonic()

    def event(text: str) -> None:
        events.append(f"{time.monotonic() - began:6.1f} s  {text}")
        log(events[-1])

    started = replicas.start_replicas(settings, 3, model_repository=repository, timeout=120)
    event(f"3 replicas ready: {', '.join(s.url for s in started)}")
    try:
        urls = replicas.configured_urls(settings)
        # the single-replica reference: the same analyses and searches through the first replica alone
        reference_analyzer = ClipAnalyzer.for_urls([urls[0]])
        reference_report = _comparable(reference_analyzer.analyze(clip).report.as_dict(thumbnails=False))
        with _library(workdir / "chaos.duckdb", Embedders.for_urls([urls[0]])) as library:
            reference_search = {q: library.search(Query(text=q), top_k=10).ids for q in QUERIES}
        event("single-replica reference taken")

        analyzer = ClipAnalyzer.for_urls(urls)
        library = _library(workdir / "chaos.duckdb", Embedders.for_urls(urls))
        retried_before = sum(int(s["failed"]) for s in DEFAULT_POOL.snapshot())
        phases: list[PhaseStats] = []
        stop = threading.Event()
        current: list[PhaseStats] = [PhaseStats("warm-up")]

        def analyses() -> None:
            while not stop.is_set():
                phase, t0 = current[0], time.monotonic()
                try:
                    report = _comparable(analyzer.analyze(clip).report.as_dict(thumbnails=False))
                except Exception as error:  # noqa: BLE001 - counted: a failure a user would see
                    phase.failures.append(f"analysis: {type(error).__name__}: {error}")
                    continue
                phase.analysis_s.append(time.monotonic() - t0)
                phase.analyses += 1
                if report != reference_report:
                    phase.mismatches.append(f"analysis {report} != {reference_report}")

        def searches(offset: int) -> None:
            turn = offset
            while not stop.is_set():
                query = QUERIES[turn % len(QUERIES)]
                turn += 1
                phase, t0 = current[0], time.monotonic()
                try:
                    ids = library.search(Query(text=query), top_k=10).ids
                except Exception as error:  # noqa: BLE001 - counted
                    phase.failures.append(f"search: {type(error).__name__}: {error}")
                    continue
                phase.search_ms.append(1000 * (time.monotonic() - t0))
                phase.searches += 1
                if ids != reference_search[query]:
                    phase.mismatches.append(f"search {query!r}: {ids} != {reference_search[query]}")

        workers = [
            threading.Thread(target=analyses),
            threading.Thread(target=analyses),
            threading.Thread(target=searches, args=(0,)),
            threading.Thread(target=searches, args=(1,)),
        ]
        for worker in workers:
            worker.start()

        def phase(name: str, seconds: float, action: Callable[[], None] | None = None) -> PhaseStats:
            stats = PhaseStats(name)
            current[0] = stats
            t0 = time.monotonic()
            if action:
                action()
            time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
            stats.seconds = time.monotonic() - t0
            phases.append(stats)
            return stats

        try:
            time.sleep(2.0)  # warm-up: every client has read its model's config
            served_before = {s.url: request_success(s.metrics_url) for s in started}
            phase("steady, 3 replicas", seconds_per_phase)
            served = {s.url: request_success(s.metrics_url) - served_before[s.url] for s in started}
            total = sum(served.values()) or 1.0
            spread = {url: round(count / total, 3) for url, count in served.items()}
            event(f"steady phase: shares {spread}")

            killed, stopped = started[1], started[2]

            def faults() -> None:
                os.kill(killed.pid, signal.SIGKILL)
                event(f"SIGKILL {killed.url}")
                time.sleep(1.0)
                os.kill(stopped.pid, signal.SIGSTOP)
                event(f"SIGSTOP {stopped.url}")
                time.sleep(stop_seconds)
                os.kill(stopped.pid, signal.SIGCONT)
                event(f"SIGCONT {stopped.url}")

            phase("kill one, stop another", seconds_per_phase, faults)

            restarted: list[process.TritonProcess] = []

            def restart() -> None:
                killed._wait_gone(10)
                restarted.append(
                    process.start_server(
                        replicas.replica_settings(settings, 1), model_repository=repository, timeout=120
                    )
                )
                event(f"restarted {restarted[0].url} (pid {restarted[0].pid})")

            def readmission() -> None:
                # the pool checks an ejected replica at most every MAX_BACKOFF_S: it is back within that
                deadline = time.monotonic() + MAX_BACKOFF_S + 5
                while not DEFAULT_POOL.state(restarted[0].url)["admitted"] and time.monotonic() < deadline:
                    time.sleep(0.1)
                event(f"{restarted[0].url} re-admitted by the client pool: {DEFAULT_POOL.state(restarted[0].url)}")

            phase("restart the killed one", seconds_per_phase, restart)
            before = request_success(restarted[0].metrics_url)
            phase("after the restart", max(seconds_per_phase, MAX_BACKOFF_S + 5), readmission)
            served_after = request_success(restarted[0].metrics_url) - before
            readmitted = served_after > 0
            event(f"restarted replica served {served_after:.0f} requests after its restart")
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=120)
            library.close()
        retried = sum(int(s["failed"]) for s in DEFAULT_POOL.snapshot()) - retried_before
        return ChaosResult(phases, spread, readmitted, retried, events)
    finally:
        for server in started:
            if server.is_running():
                os.kill(server.pid, signal.SIGCONT)
        replicas.stop_replicas(settings)


def _free_base() -> int:
    import random

    for _ in range(200):
        base = random.randrange(20_000, 60_000, 100)
        if all(process.port_is_free("127.0.0.1", base + 10 * i + j) for i in range(3) for j in range(3)):
            return base
    raise RuntimeError("no free block of ports for three replicas")


def write_report(result: ChaosResult, args: argparse.Namespace, out: Path) -> None:
    from benchmarks.doc_markers import write_section

    lines = [
        "### Chaos on loopback: three replicas, one killed, one stopped, the killed one restarted",
        "",
        f"`python -m benchmarks.chaos --seconds-per-phase {args.seconds_per_phase:g} --stop-seconds "
        f"{args.stop_seconds:g}` on {os.cpu_count()} cores ({time.strftime('%Y-%m-%d')}). Load: two threads analysing "
        "a 6-s clip with two characters, two threads searching a 300-item library by text, all through the "
        "client pool over the three replicas.",
        "",
        "| phase | s | analyses | searches | failed | results ≠ single replica | search p50 ms | search p99 ms | "
        "slowest analysis s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for phase in result.phases:
        s = phase.summary()
        lines.append(
            f"| {s['phase']} | {s['seconds']} | {s['analyses']} | {s['searches']} | {s['failed']} | "
            f"{s['mismatched']} | {s['search_p50_ms']} | {s['search_p99_ms']} | {s['analysis_max_s']} |"
        )
    shares = ", ".join(f"{url} {share:.1%}" for url, share in result.spread.items())
    lines += [
        "",
        f"- Traffic in the steady phase (each replica's `nv_inference_request_success`): {shares}.",
        f"- Tries that failed at the connection level and were retried on another replica: {result.retried_tries}; "
        f"requests that failed for the user: {len(result.failures)}.",
        f"- The restarted replica was re-admitted and served requests again: {'yes' if result.readmitted else 'no'}.",
        "",
        "Timeline:",
        "",
        "```",
        *result.events,
        "```",
    ]
    write_section(out, "chaos", "\n".join(lines), title="# Operating facecast")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds-per-phase", type=float, default=12.0)
    parser.add_argument("--stop-seconds", type=float, default=4.0)
    parser.add_argument("--repository", type=Path, default=PROJECT_ROOT / "model_repository")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "operations.md")
    args = parser.parse_args(argv)
    from tests.clipmaker import emoji_over_photo

    with tempfile.TemporaryDirectory(prefix="facecast-chaos-") as tmp:
        clip = emoji_over_photo(Path(tmp) / "two.mp4", [("grin|sob", "twemoji"), ("rage", "noto")], seconds=6.0)
        result = run_chaos(
            args.repository, clip, Path(tmp), seconds_per_phase=args.seconds_per_phase, stop_seconds=args.stop_seconds
        )
    print(json.dumps(result.as_dict(), indent=2))
    write_report(result, args, args.out)


if __name__ == "__main__":
    main()
