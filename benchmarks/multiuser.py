"""Many users on one store: app sessions and CLI processes writing the same DuckDB file at the same time.

Eight sessions run as the app runs them: threads of one process sharing the app's cached Store and Library
(app/services.py), each writing clip analyses, library items and search feedback and reading the history. Two more
processes run the real CLI in a loop (`facecast library add` of new faces, `facecast analyze --force` of a clip)
against the same file and a real Triton. Afterwards every row each writer says it stored must be there, no writer
may have seen a lock error, and the library's index must agree with the store.

    python -m benchmarks.multiuser --seconds 60        # writes docs/reliability.md's section (needs a running Triton)

tests/test_multiuser.py runs it for a few seconds against the suite's shared Triton.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from facecast.clips.report import ClipInfo, EngagementReport
from facecast.config import PROJECT_ROOT, Settings, load_settings
from facecast.library import Library
from facecast.library.ranking import TERMS
from facecast.library.search import SearchResult, SearchResults
from facecast.serving.replicas import configured_urls
from facecast.store import EMBEDDING_DIM, AnalysisRecord, LibraryItem, open_store
from facecast.store.rows import ClipRow
from facecast.vocab import EMOTIONS, STYLES

SESSIONS = 8
CLI_PROCESSES = 2


@dataclass
class WriterLog:
    """What one writer says it stored, and what went wrong for it."""

    name: str
    analyses: list[str] = field(default_factory=list)  # content hashes of the clips it stored analyses of
    items: list[str] = field(default_factory=list)  # content hashes of the library items it stored
    feedback_queries: list[str] = field(default_factory=list)  # query ids it recorded feedback for
    errors: list[str] = field(default_factory=list)
    operations: int = 0


@dataclass
class MultiUserResult:
    seconds: float
    writers: list[WriterLog]
    lost: dict[str, int]  # per kind: rows a writer stored that the store does not have
    index_agrees: bool
    wait_p50_ms: float
    wait_p95_ms: float
    wait_max_ms: float
    opens: int

    @property
    def errors(self) -> list[str]:
        return [f"{w.name}: {e}" for w in self.writers for e in w.errors]

    def as_dict(self) -> dict[str, object]:
        return {
            "seconds": round(self.seconds, 1),
            "writers": {
                w.name: {
                    "operations": w.operations,
                    "analyses": len(w.analyses),
                    "items": len(w.items),
                    "feedback": len(w.feedback_queries),
                    "errors": len(w.errors),
                }
                for w in self.writers
            },
            "lost": self.lost,
            "index_agrees": self.index_agrees,
            "errors": self.errors[:10],
            "wait_ms": {"p50": self.wait_p50_ms, "p95": self.wait_p95_ms, "max": self.wait_max_ms},
            "file_opens": self.opens,
        }


def _record(name: str) -> AnalysisRecord:
    """A stored analysis as the pipeline would write it (no decoding: this measures the store, not the models)."""
    digest = uuid.uuid4().hex * 2
    clip = ClipInfo(
        name=name,
        sha256=digest,
        size_bytes=1000,
        duration_s=6.0,
        width=640,
        height=360,
        fps=12.0,
        codec="h264",
        rotation=0,
    )
    report = EngagementReport(clip=clip, faces_found=False, notes=["multi-user test analysis"])
    return AnalysisRecord(
        clip=ClipRow(digest, name, 1000, 6.0, 640, 360, 12.0, "h264"),
        fingerprint="multiuser",
        name=name,
        faces_found=False,
        engagement=None,
        engagement_class=None,
        resonance=None,
        shareability=None,
        report_json=json.dumps(report.as_dict()),
    )


def _items(rng: np.random.Generator, count: int, tag: str) -> list[LibraryItem]:
    vectors = rng.normal(size=(count, EMBEDDING_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        LibraryItem(
            content_sha256=f"{tag}-{uuid.uuid4().hex}",
            source="multiuser",
            source_path=f"{tag}/{i}.png",
            emotion=EMOTIONS[i % 7],
            style=STYLES[i % 4],
            emotion_probs=np.eye(7)[i % 7],
            style_probs=np.eye(4)[i % 4],
            embedding=vectors[i],
            thumbnail=b"\x89PNG multi-user",
        )
        for i in range(count)
    ]


def _session(name: str, library: Library, deadline: float, log: WriterLog, seed: int) -> None:
    """What a browser session of the app writes: analyses (Analyze clips), items (Expression library, Style
    mapping's save), feedback (a result used), and what it reads (History)."""
    rng = np.random.default_rng(seed)
    store = library.store
    while time.monotonic() < deadline:
        try:
            record = _record(f"{name}-{log.operations}.mp4")
            store.analyses.add(record)
            log.analyses.append(record.clip.content_sha256)
            items = _items(rng, 2, name)
            library.add_items(items)
            log.items += [item.content_sha256 for item in items]
            ids = store.library.ids()[-6:]
            results = SearchResults(
                uuid.uuid4().hex,
                "text",
                [
                    SearchResult(
                        rank=r + 1,
                        id=int(i),
                        score=0.5,
                        similarity=0.5,
                        phi=dict.fromkeys(TERMS, 0.5),
                        weights={},
                        emotion="anger",
                        style="anime",
                        character=None,
                        intensity=None,
                        source="multiuser",
                        source_path="x",
                    )
                    for r, i in enumerate(ids)
                ],
                name,
                {},
                False,
            )
            library.record_selection(name, results, [int(ids[0])], learn=False)
            log.feedback_queries.append(results.query_id)
            store.analyses.newest(limit=50)
            log.operations += 1
        except Exception as error:  # noqa: BLE001 - what a user would see
            log.errors.append(f"{type(error).__name__}: {error}")


def _cli_loop(
    name: str,
    db: Path,
    urls: list[str],
    clip: Path,
    workdir: Path,
    deadline: float,
    log: WriterLog,
    environment: dict[str, str],
) -> None:
    """A second process (the CLI), again and again: add two new faces to the library, analyse a clip anew."""
    base = [sys.executable, "-m", "facecast"]
    url_flags = [flag for url in urls for flag in ("--url", url)]
    turn = 0
    while time.monotonic() < deadline:
        turn += 1
        faces = []
        for k in range(2):
            path = workdir / f"{name}-{turn}-{k}.png"
            rng = np.random.default_rng(hash((name, turn, k)) % 2**32)
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
            faces.append(path)
        added = subprocess.run(
            [*base, "library", "add", *map(str, faces), "--db", str(db), *url_flags, "--json"],
            capture_output=True,
            text=True,
            env=environment,
            timeout=300,
        )
        if added.returncode != 0:
            log.errors.append(f"library add: exit {added.returncode}: {added.stderr.strip()[-300:]}")
        else:
            import hashlib

            report = json.loads(added.stdout)
            by_path = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in faces}
            log.items += [by_path[entry["path"]] for entry in report["added"]]
        analysed = subprocess.run(
            [*base, "analyze", str(clip), "--force", "--quiet", "--db", str(db), *url_flags, "--json"],
            capture_output=True,
            text=True,
            env=environment,
            timeout=300,
        )
        if analysed.returncode != 0:
            log.errors.append(f"analyze: exit {analysed.returncode}: {analysed.stderr.strip()[-300:]}")
        else:
            log.analyses.append(json.loads(analysed.stdout)[0]["clip"]["sha256"])
        log.operations += 1
        for stderr in (added.stderr, analysed.stderr):
            if "locked" in stderr.lower():
                log.errors.append(f"lock message shown: {stderr.strip()[-300:]}")


def run_multiuser(db: Path, urls: list[str], clip: Path, workdir: Path, seconds: float = 20.0) -> MultiUserResult:
    environment = {**os.environ, "FACECAST_DB": str(db)}
    library = Library(open_store(db))  # the app's cached resources: one Store, one Library, shared by sessions
    deadline = time.monotonic() + seconds
    began = time.monotonic()
    writers = [WriterLog(f"session-{i}") for i in range(SESSIONS)]
    cli_writers = [WriterLog(f"cli-{i}") for i in range(CLI_PROCESSES)]
    threads = [threading.Thread(target=_session, args=(w.name, library, deadline, w, i)) for i, w in enumerate(writers)]
    threads += [
        threading.Thread(target=_cli_loop, args=(w.name, db, urls, clip, workdir, deadline, w, environment))
        for w in cli_writers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 600)
    elapsed = time.monotonic() - began
    all_writers = writers + cli_writers
    with open_store(db) as store:
        stored_analyses = {row[0] for row in store.read_rows("SELECT content_sha256 FROM clip_analyses")}
        stored_items = {row[0] for row in store.read_rows("SELECT content_sha256 FROM library_items")}
        stored_queries = {row[0] for row in store.read_rows("SELECT DISTINCT query_id FROM library_feedback")}
    lost = {
        "analyses": sum(h not in stored_analyses for w in all_writers for h in w.analyses),
        "items": sum(h not in stored_items for w in all_writers for h in w.items),
        "feedback": sum(q not in stored_queries for w in all_writers for q in w.feedback_queries),
    }
    library.follow_store()
    index_agrees = bool(np.array_equal(np.sort(library.index.live_ids()), np.sort(library.store.library.ids())))
    waits = np.asarray(library.store.wait_stats.waits_ms or [0.0])
    result = MultiUserResult(
        elapsed,
        all_writers,
        lost,
        index_agrees,
        round(float(np.percentile(waits, 50)), 2),
        round(float(np.percentile(waits, 95)), 2),
        round(float(waits.max()), 2),
        library.store.wait_stats.opens,
    )
    library.close()
    return result


def write_report(result: MultiUserResult, args: argparse.Namespace, out: Path) -> None:
    from benchmarks.doc_markers import write_section

    rows = "\n".join(
        f"| {w.name} | {w.operations} | {len(w.analyses)} | {len(w.items)} | {len(w.feedback_queries)} | "
        f"{len(w.errors)} |"
        for w in result.writers
    )
    body = f"""### Many users on one store

`python -m benchmarks.multiuser --seconds {args.seconds:g}` ({time.strftime("%Y-%m-%d")}, {os.cpu_count()} cores):
{SESSIONS} app sessions (threads sharing the app's Store and Library, as Streamlit sessions do) and {CLI_PROCESSES}
CLI processes (`facecast library add`, `facecast analyze --force`, through a real Triton) wrote one DuckDB file for
{result.seconds:.0f} s.

| writer | rounds | analyses | library items | feedback lists | errors |
|---|---|---|---|---|---|
{rows}

- Rows a writer stored that the store does not have: {result.lost}.
- Lock errors or other errors shown to a writer: {len(result.errors)}.
- The app process's waits for the file: p50 {result.wait_p50_ms} ms, p95 {result.wait_p95_ms} ms, max
  {result.wait_max_ms} ms ({result.opens} opens of the file in {result.seconds:.0f} s).
- The library's FAISS index agrees with the store afterwards: {"yes" if result.index_agrees else "no"}.
"""
    write_section(out, "multiuser", body, title="# Reliability")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "reliability.md")
    args = parser.parse_args(argv)
    settings: Settings = load_settings()
    from tests.clipmaker import emoji_over_photo

    with tempfile.TemporaryDirectory(prefix="facecast-multiuser-") as tmp:
        clip = emoji_over_photo(Path(tmp) / "clip.mp4", [("grin", "twemoji")], seconds=2.0, fps=8)
        result = run_multiuser(Path(tmp) / "shared.duckdb", configured_urls(settings), clip, Path(tmp), args.seconds)
    print(json.dumps(result.as_dict(), indent=2))
    write_report(result, args, args.out)


if __name__ == "__main__":
    main()
