"""Faults, for real: Triton SIGKILLed in the middle of an analysis, and `kill -9` (a power cut, as far as the store
can tell) of the CLI, the app and bare writers in the middle of library ingest, feedback and analysis storage.
After each: the store opens, holds only whole things (an analysis with all its tracks and faces, a feedback event
with all its rows), the FAISS index agrees with it, and running the same work again finishes it.

    python -m benchmarks.faults        # starts its own Triton; writes docs/reliability.md's faults section

tests/test_faults.py runs every scenario against the suite's Triton and fails on any check that does not hold.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from facecast.config import PROJECT_ROOT, Settings
from facecast.library import Library
from facecast.store import open_store

RELIABILITY_MD = PROJECT_ROOT / "docs" / "reliability.md"


@dataclass
class FaultResult:
    fault: str
    outcome: str = ""
    checks: list[tuple[str, bool]] = field(default_factory=list)

    def check(self, what: str, holds: bool) -> bool:
        self.checks.append((what, bool(holds)))
        return bool(holds)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(holds for _, holds in self.checks)

    def failures(self) -> list[str]:
        return [what for what, holds in self.checks if not holds]


def environment(settings: Settings, **extra: str) -> dict[str, str]:
    """A subprocess environment pointing at `settings`' Triton."""
    return {**os.environ, "FACECAST_TRITON_URLS": settings.triton_url, **extra}


# ---------------------------------------------------------------------------------------------- bare writers

# Stores the same kind of thing over and over until it is killed; prints how many it has committed.
WRITER = r"""
import json, sys
import numpy as np
from facecast.store import open_store
from facecast.store.rows import AnalysisRecord, ClipRow, FaceRow, ScoreRow, TrackRow

db, kind, run = sys.argv[1], sys.argv[2], sys.argv[3]
store = open_store(db)
probs7, probs4 = np.full(7, 1 / 7, np.float32), np.full(4, 0.25, np.float32)
faces = [FaceRow(t % 5, t * 0.25, (0.1, 0.1, 0.4, 0.5), 0.9, "anger", probs7, probs4, probs4) for t in range(2000)]
tracks = [TrackRow(i, 0.0, 10.0, 400, 10.0, "anger", "cartoon") for i in range(5)]
n = 0
while True:
    if kind == "analysis":
        clip = ClipRow(f"{run}-{n}", f"clip-{run}-{n}.mp4", 1000, 10.0, 640, 360, 12.0, "h264")
        report = json.dumps({"characters": [{"observations": 400}] * 5})
        record = AnalysisRecord(clip, "fp", clip.name, True, ScoreRow(0.5, 0.4, 0.6), "medium", 0.5, 0.5, report,
                                tracks, faces)
        store.analyses.add(record)
    else:
        rows = [{"item_id": i, "kind": "skipped" if i else "selected", "rating": None, "rank": i + 1,
                 "phi": np.zeros(5, np.float32)} for i in range(50)]
        store.feedback.add("ana", f"{run}-{n}", rows)
    n += 1
    print(n, flush=True)
"""
WHAT_WRITERS_STORE = {
    "analysis": "analysis storage (2,000 faces and 5 tracks per analysis, one transaction each)",
    "feedback": "feedback (50 rows per shown list, one transaction each)",
}


def _kill_writer_at_random(db: Path, kind: str, run: int, rng: np.random.Generator) -> int:
    """Start a writer, let it commit two, SIGKILL it at a random moment; returns how many it said it committed."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), kind, str(run)], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    committed = 0
    while committed < 2:
        line = writer.stdout.readline()
        if not line:
            raise RuntimeError(f"the {kind} writer stopped on its own")
        committed = int(line)
    time.sleep(float(rng.uniform(0, 0.4)))  # anywhere in the next few transactions
    writer.send_signal(signal.SIGKILL)
    output, _ = writer.communicate()
    return int(output.split()[-1]) if output.split() else committed


def storing_killed(kind: str, folder: Path, kills: int = 5, seed: int = 7) -> FaultResult:
    """`kill -9` of a process writing `kind` (analysis / feedback), `kills` times on one store."""
    result = FaultResult(f"kill -9 during {WHAT_WRITERS_STORE[kind]}, {kills} times")
    db = folder / f"{kind}.duckdb"
    rng = np.random.default_rng(seed)
    said, stored = 0, 0
    for run in range(kills):
        said += _kill_writer_at_random(db, kind, run, rng)
        with open_store(db) as store:  # recovers from the write-ahead log, or refuses loudly
            if kind == "analysis":
                shapes = store.read_rows(
                    "SELECT (SELECT count(*) FROM clip_faces f WHERE f.analysis_id = a.id), "
                    "(SELECT count(*) FROM clip_tracks t WHERE t.analysis_id = a.id), "
                    "(SELECT count(*) FROM clips c WHERE c.content_sha256 = a.content_sha256) FROM clip_analyses a"
                )
                result.check(
                    f"after kill {run + 1}: every analysis has its 2,000 faces, 5 tracks and its clip",
                    all(shape == (2000, 5, 1) for shape in shapes),
                )
                stored = len(shapes)
            else:
                sizes = store.read_rows("SELECT count(*) FROM library_feedback GROUP BY query_id")
                result.check(
                    f"after kill {run + 1}: every feedback event has its 50 rows", all(size == (50,) for size in sizes)
                )
                stored = len(sizes)
        # what a writer printed was committed; each may have committed one more just before the kill
        result.check(f"after kill {run + 1}: nothing reported committed is missing", said <= stored <= said + run + 1)
    result.outcome = (
        f"the store opened after each of {kills} kills; {stored} {kind} records, every one whole "
        f"({said} reported committed before the kills, {stored - said} committed in the instant before one)"
    )
    return result


# ---------------------------------------------------------------------------------------------- library ingest


def _noise_faces(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(folder / f"face-{index:05d}.png")
    return folder


def ingest_killed(settings: Settings, folder: Path, count: int = 2600) -> FaultResult:
    """`kill -9` of `facecast library add` once its first chunk is committed, then the same command again."""
    result = FaultResult(f"kill -9 during `facecast library add` of {count:,} images, then the same command again")
    faces = _noise_faces(folder / "faces", count)
    db = folder / "library.duckdb"
    command = [sys.executable, "-m", "facecast", "library", "add", str(faces), "--db", str(db), "--json"]
    env = environment(settings)
    adding = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    committed = 0
    while committed == 0 and time.monotonic() < deadline and adding.poll() is None:
        time.sleep(0.2)
        if db.exists():
            with open_store(db, read_only=True, wait_s=60) as store:
                committed = store.library.count()
    adding.send_signal(signal.SIGKILL)
    adding.communicate()
    if not result.check("the kill landed mid-ingest", 0 < committed < count):
        result.outcome = f"the kill missed: {committed} of {count} items were stored when it landed"
        return result
    with Library.open(db) as library:  # the index is a cache of DuckDB: it catches up on open
        stats = library.stats()
        kept, notes = stats["items"], list(library.notes)
        result.check("after the kill the index holds exactly the stored items", stats["index"]["vectors"] == kept)
    rerun = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    result.check("the rerun exits 0", rerun.returncode == 0)
    report = json.loads(rerun.stdout) if rerun.returncode == 0 else {"duplicates": [], "added": []}
    result.check(
        "the rerun skips what was stored and adds the rest",
        len(report["duplicates"]) == kept and len(report["added"]) == count - kept,
    )
    with Library.open(db) as library:
        stats = library.stats()
        result.check(
            f"finally {count:,} items and {count:,} vectors", stats["items"] == stats["index"]["vectors"] == count
        )
    result.outcome = (
        f"killed with {kept:,} of {count:,} stored (whole chunks); on reopening the index matched them"
        + (f" ({notes[0]})" if notes else "")
        + f"; the rerun skipped those {len(report['duplicates']):,} and added {len(report['added']):,}: "
        f"{stats['items']:,} items, {stats['index']['vectors']:,} vectors"
    )
    return result


# ---------------------------------------------------------------------------------------------- Triton killed


def synthetic_clip(path: Path, seconds: float, seed: int = 5) -> Path:
    from training.data.clips import sample_clip_script, write_clip

    return write_clip(sample_clip_script(seed, duration_s=seconds), path)


@contextmanager
def own_triton(repository: Path, folder: Path) -> Iterator[Settings]:
    """A Triton of its own (the fault kills it)."""
    from facecast.serving import process

    with process.loopback_server(repository, folder / "run", timeout=180) as (settings, _):
        yield settings


class AnalysisRun:
    """`facecast analyze CLIP` as a process, with its stderr collected and a signal once its progress bar is
    drawn (the clip's frames are then going to Triton)."""

    def __init__(self, clip: Path, db: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "facecast", "analyze", str(clip), "--db", str(db)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started = threading.Event()
        self._parts: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        while chunk := self.process.stderr.read(1):
            self._parts.append(chunk)
            if chunk == "|":
                self.started.set()

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        """(exit code, stdout, stderr)"""
        stdout = self.process.stdout.read() if self.process.stdout else ""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code, stdout, "".join(self._parts)


def triton_killed_mid_analysis(repository: Path, folder: Path) -> FaultResult:
    """One replica, SIGKILLed while `facecast analyze` sends it a 30-s clip's windows, and not started again."""
    from facecast.serving import process

    result = FaultResult("Triton (the only replica) SIGKILLed in the middle of `facecast analyze`, not restarted")
    clip = synthetic_clip(folder / "cut.mp4", 30.0)
    db = folder / "store.duckdb"
    with own_triton(repository, folder) as settings:
        analysing = AnalysisRun(clip, db, environment(settings, FACECAST_TRITON_DEADLINE_S="15"))
        analysing.started.wait(timeout=120)
        result.check("the analysis was still running when Triton was killed", analysing.process.poll() is None)
        server = process.read_pid_file(settings)
        if server is not None:
            os.kill(server.pid, signal.SIGKILL)
        began = time.monotonic()
        code, _, stderr = analysing.finish()
    waited = time.monotonic() - began
    errors = [line for line in stderr.splitlines() if ": error: " in line]
    result.check("exit 1", code == 1)
    result.check("no traceback", "Traceback" not in stderr)
    result.check("one error line, about Triton", len(errors) == 1 and "Triton" in errors[0])
    with open_store(db, read_only=True) if db.exists() else _no_store() as store:
        result.check("nothing stored", store is None or store.analyses.newest().empty)
    line = errors[0].split(": error: ", 1)[1] if errors else stderr.strip()[-200:]
    result.outcome = (
        f"exit {code} {waited:.0f} s after the kill (it had answered, so the client waited "
        f"FACECAST_TRITON_DEADLINE_S=15 for a restart), nothing stored; the one line: “{line}”"
    )
    return result


@contextmanager
def _no_store() -> Iterator[None]:
    yield None


def triton_restarted_mid_analysis(repository: Path, folder: Path) -> FaultResult:
    """One replica, SIGKILLed while `facecast analyze` runs and started again (as a supervisor, compose's restart
    policy or Kubernetes would): the analysis waits for it and finishes."""
    from facecast.serving import process

    result = FaultResult("Triton (the only replica) SIGKILLed in the middle of `facecast analyze` and started again")
    clip = synthetic_clip(folder / "cut.mp4", 30.0)
    db = folder / "store.duckdb"
    with own_triton(repository, folder) as settings:
        reference = subprocess.run(  # the same clip without a fault, to compare with
            [sys.executable, "-m", "facecast", "analyze", str(clip), "--json", "--quiet", "--no-store"],
            cwd=PROJECT_ROOT,
            env=environment(settings),
            capture_output=True,
            text=True,
            timeout=300,
        )
        analysing = AnalysisRun(clip, db, environment(settings))  # the default 60-s deadline
        analysing.started.wait(timeout=120)
        server = process.read_pid_file(settings)
        if server is not None:
            os.kill(server.pid, signal.SIGKILL)
            for _ in range(100):  # the ports are free once it is gone
                if process.port_is_free(settings.host, settings.http_port):
                    break
                time.sleep(0.1)
        began = time.monotonic()
        again = process.start_server(settings, model_repository=repository, timeout=180)
        restarted = time.monotonic() - began
        try:
            code, _, stderr = analysing.finish()
        finally:
            again.stop()
    result.check("the analysis was still running when Triton was killed", True)
    result.check("exit 0", code == 0)
    result.check("no traceback", "Traceback" not in stderr)
    with open_store(db, read_only=True) as store:
        stored = store.analyses.newest()
        result.check("stored once", len(stored) == 1)
        same = False
        if len(stored) == 1 and reference.returncode == 0:
            expected = json.loads(reference.stdout)[0]["engagement"]
            got = json.loads(store.analyses.get(int(stored["id"].iloc[0])).report_json)["engagement"]
            same = expected == got
        result.check("the same engagement as without the fault", same)
    result.outcome = (
        f"Triton was back {restarted:.0f} s after the kill; the analysis waited for it, finished with exit {code} and "
        "stored one report, the same as an undisturbed run"
    )
    return result


# ---------------------------------------------------------------------------------------------- the app


def app_killed_mid_analysis(settings: Settings, folder: Path) -> FaultResult:
    """`kill -9` of `streamlit run` while it analyses three uploads (the first stored), then start it again."""
    from playwright.sync_api import expect

    from tests.browser_helpers import chromium, start_streamlit

    result = FaultResult("kill -9 of the app (`streamlit run`) while it analyses and stores uploaded clips")
    # a short first clip, then long ones: the kill lands while the second is analysed
    clips = [
        synthetic_clip(folder / f"cut-{seed}.mp4", seconds, seed) for seed, seconds in ((1, 4.0), (2, 25.0), (3, 25.0))
    ]
    db = folder / "app.duckdb"
    env = environment(settings, FACECAST_DB=str(db), FACECAST_DEMO_DIR=str(folder / "demo"))

    def start_app() -> tuple[subprocess.Popen, str]:
        return start_streamlit(env, output=subprocess.DEVNULL)

    with chromium() as browser:
        app, url = start_app()
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(url, timeout=90_000)
            page.get_by_role("link", name="Analyze clips").click()
            page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files([str(c) for c in clips])
            page.get_by_text(clips[-1].name).first.wait_for(timeout=30_000)
            page.get_by_role("button", name="Analyze").click()
            # kill at a random moment of the second clip's analysis, after the first is stored
            # (attached, not visible: the finished clip's status box is collapsed)
            page.get_by_text("Stored as analysis 1").first.wait_for(state="attached", timeout=180_000)
            time.sleep(float(np.random.default_rng().uniform(0, 1.5)))
        finally:
            app.send_signal(signal.SIGKILL)
            app.wait()

        with open_store(db) as store:
            stored = store.read_rows("SELECT id, report_json FROM clip_analyses")
            whole = True
            for analysis_id, report_json in stored:
                characters = json.loads(report_json)["characters"]
                tracks = store.read_rows("SELECT count(*) FROM clip_tracks WHERE analysis_id = ?", [analysis_id])
                faces = store.read_rows("SELECT count(*) FROM clip_faces WHERE analysis_id = ?", [analysis_id])
                whole &= tracks[0][0] == len(characters)
                whole &= faces[0][0] == sum(c["observations"] for c in characters)
        result.check("the store opens and every stored analysis has all its tracks and faces", whole)
        result.check("the kill landed between the first clip and the last", 1 <= len(stored) < len(clips))

        app, url = start_app()
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(url, timeout=90_000)
            page.get_by_role("link", name="History").click()
            page.get_by_role("combobox", name="Open an analysis").click(timeout=60_000)  # the table is a canvas
            expect(page.get_by_role("option", name=re.compile(re.escape(clips[0].name)))).to_be_visible()
            result.check("the app started again on the same store lists the stored analysis", True)
            result.check("no traceback on the page", page.get_by_text("Traceback").count() == 0)
        finally:
            app.terminate()
            app.wait(timeout=20)
    result.outcome = (
        f"killed after {len(stored)} of {len(clips)} uploads were stored; every stored analysis whole; the app started "
        "again on the same store and History lists them"
    )
    return result


# ---------------------------------------------------------------------------------------------- the table


def table(results: list[FaultResult]) -> str:
    lines = ["| fault | what happened | as it must be |", "|---|---|---|"]
    for result in results:
        verdict = "✓" if result.passed else "✗ " + "; ".join(result.failures())
        lines.append(f"| {result.fault} | {result.outcome} | {verdict} |")
    return "\n".join(lines)


def store_kill_soak(kills: int, per_store: int = 8) -> int:
    """`kill -9` of analysis writers `kills` times, `per_store` per fresh store; prints every store that failed to
    reopen or lost a record and returns 1 if any did."""
    failed, done, started = [], 0, time.monotonic()
    with tempfile.TemporaryDirectory(prefix="facecast-kill-soak-") as temporary:
        for round_index in range((kills + per_store - 1) // per_store):
            folder = Path(temporary) / str(round_index)
            folder.mkdir()
            try:
                result = storing_killed("analysis", folder, kills=per_store, seed=100 + round_index)
                if not result.passed:
                    failed.append(f"store {round_index}: {'; '.join(result.failures())}")
            except Exception as error:  # noqa: BLE001 - a store that cannot reopen is what this counts
                failed.append(f"store {round_index}: {type(error).__name__}: {error}")
            done += per_store
    print(
        f"kill soak: {done} kills of analysis writers on {done // per_store} stores in "
        f"{time.monotonic() - started:.0f} s; {len(failed)} store(s) failed to reopen whole"
    )
    for failure in failed:
        print(f"  {failure}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=PROJECT_ROOT / "model_repository")
    parser.add_argument(
        "--store-kills",
        type=int,
        metavar="N",
        help="only kill analysis writers, N times (8 per fresh store), and count stores that fail to reopen: how "
        "rare a corruption after kill -9 is (nothing is written to docs/)",
    )
    args = parser.parse_args(argv)
    if args.store_kills:
        sys.exit(store_kill_soak(args.store_kills))
    from benchmarks.doc_markers import write_section

    results = []
    with tempfile.TemporaryDirectory(prefix="facecast-faults-") as temporary:
        folder = Path(temporary)
        for kind in ("analysis", "feedback"):
            results.append(storing_killed(kind, folder))
            print(f"faults: {results[-1].outcome}", flush=True)
        results.append(triton_killed_mid_analysis(args.repository, folder / "triton"))
        print(f"faults: {results[-1].outcome}", flush=True)
        results.append(triton_restarted_mid_analysis(args.repository, folder / "restart"))
        print(f"faults: {results[-1].outcome}", flush=True)
        with own_triton(args.repository, folder / "shared") as settings:
            results.append(ingest_killed(settings, folder / "ingest"))
            print(f"faults: {results[-1].outcome}", flush=True)
            results.append(app_killed_mid_analysis(settings, folder / "app"))
            print(f"faults: {results[-1].outcome}", flush=True)
    body = table(results)
    print(body)
    write_section(
        RELIABILITY_MD, "faults", f"Written by `python -m benchmarks.faults`.\n\n{body}", title="# Reliability"
    )
    print(f"wrote {RELIABILITY_MD}")
    if not all(result.passed for result in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
