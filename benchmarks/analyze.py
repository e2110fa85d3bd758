"""End-to-end analysis speed: a 30-s 720p clip through decode → detect → track → encode → engagement on a real Triton.

    python -m benchmarks.analyze [--repeats 5] [--seconds 30] [--baseline REV] [--long]

Issue 16's target is the command a user runs: `facecast analyze CLIP` at ≥ 30× real time for a 30-s 720p clip,
process start included, against a Triton that is already running. So the headline numbers are of that command,
run as a subprocess (`python -m facecast analyze CLIP --quiet --force`, storing into a store the warm-up run
created, as a user's existing store): wall time from spawn to exit, the CPU seconds of the command and of the
Triton process tree during it (on these 2 cores the two share, so total CPU / 2 is a floor for the wall time), and
the command's peak RSS (wait4's rusage of that child).

- `--baseline REV` also runs the same command with REV's facecast package (`git archive`, exported once under
  var/bench/, run with this checkout's virtual environment), interleaved with the current code on the same server,
  so the before / after ratio comes from one run on one noisy machine.
- The stage breakdown comes from the analysis's own timings (ClipAnalyzer in this process, after a warm-up).
- The decoding levers are measured alone, side by side: sampling the clip with every frame decoded vs with
  non-reference frames skipped (facecast.media.video), with FFmpeg's frame threads vs single-threaded decoding.
- `--long`: a 2-hour clip through the same command, its wall time and peak RSS (memory must stay bounded). The clip
  is the 30-s clip's packets concatenated 240 times without re-encoding (PyAV remux, timestamps shifted; each copy
  starts on a keyframe): a real 720p H.264 file of 2 h in a few seconds, written once to var/bench/.

The 30-s clip is a synthetic multi-character scene (training/data/clips.py) rendered at 1280×720, 30 fps, H.264,
written once to var/bench/ (rendering takes a few minutes; later runs reuse it). The Triton server and the analysis
share this machine's 2 cores, as they do in the default install. Writes the "analyze" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av

from benchmarks.report import write_section
from export.triton_repository import write_repository
from facecast.clips.pipeline import STAGES, ClipAnalyzer
from facecast.config import PROJECT_ROOT
from facecast.media import video
from facecast.media.video import probe_video
from facecast.serving.process import loopback_server

ANALYSIS_WEIGHTS = [
    PROJECT_ROOT / "weights" / f"{name}-cpu.pt" for name in ("face_detector", "expression_encoder", "engagement")
]
BENCH_DIR = PROJECT_ROOT / "var" / "bench"
TARGET_REALTIME = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def benchmark_clip(seconds: float) -> Path:
    """A 720p synthetic scene of `seconds` (rendered once, then reused)."""
    from training.data.clips import sample_clip_script, write_clip

    path = BENCH_DIR / f"scene-720p-30fps-{seconds:.0f}s.mp4"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        # 30 fps like a trailer: the frame rate sets how many frames there are to decode
        script = sample_clip_script(2026, duration_s=seconds, n_characters=3, fps=30.0, width=1280, height=720)
        started = time.perf_counter()
        write_clip(script, path, width=1280, height=720)
        print(f"[bench] rendered {path} in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def concatenated_clip(source: Path, copies: int) -> Path:
    """`copies` back-to-back copies of `source`'s video packets in one MP4, without re-encoding (written once)."""
    path = source.with_name(f"{source.stem}-x{copies}.mp4")
    if path.is_file():
        return path
    partial = path.with_suffix(".partial.mp4")
    started = time.perf_counter()
    with av.open(str(source)) as probe:
        stream = probe.streams.video[0]
        span = max(packet.pts + packet.duration for packet in probe.demux(stream) if packet.pts is not None)
    with av.open(str(partial), "w", format="mp4") as output:
        with av.open(str(source)) as template:
            out_stream = output.add_stream_from_template(template.streams.video[0])
        for copy in range(copies):
            with av.open(str(source)) as clip:
                for packet in clip.demux(clip.streams.video[0]):
                    if packet.dts is None:  # the demuxer's final empty packet
                        continue
                    packet.pts += copy * span
                    packet.dts += copy * span
                    packet.stream = out_stream
                    output.mux(packet)
    partial.replace(path)
    print(f"[bench] concatenated {copies} × {source.name} → {path.name} in {time.perf_counter() - started:.0f} s")
    return path


# ------------------------------------------------------------------------------------------------ the CLI run


@dataclass(frozen=True)
class CommandRun:
    wall_s: float
    cpu_s: float  # the command's user + system time
    server_cpu_s: float  # the Triton process tree's, during the command
    peak_rss_mb: float


def process_tree_cpu_s(root_pid: int) -> float:
    """User + system seconds of a process and all its descendants (Triton and its python-backend stubs)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, parent = int(entry.name), int(fields[1])
        children.setdefault(parent, []).append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    total, stack = 0.0, [root_pid]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack += children.get(pid, [])
    return total


def peak_rss_mb(pid: int) -> float | None:
    """The process's resident high-water mark (VmHWM), or None once it is gone. Read from /proc because wait4's
    ru_maxrss also counts the moments between fork and exec, when the child is a copy of this large process."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_command(arguments: list[str], cwd: Path, server_pid: int) -> CommandRun:
    """One `python -m facecast ...` from spawn to exit; raises if it fails. Its peak RSS is polled every 10 ms
    (a high-water mark, so only a peak in the last 10 ms before exit could be missed)."""
    environment = dict(os.environ, PYTHONPATH=str(cwd))  # the checkout at cwd, not the editable install's
    server_before = process_tree_cpu_s(server_pid)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "facecast", *arguments],
        cwd=cwd,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    peak = 0.0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            high_water = peak_rss_mb(process.pid)
            if high_water is not None:
                peak = max(peak, high_water)
            done.wait(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stderr = process.stderr.read()  # until the command closes it (exits); it writes little with --quiet
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    watcher.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stderr.close()
    server_cpu = process_tree_cpu_s(server_pid) - server_before
    if process.returncode != 0:
        raise RuntimeError(f"facecast {' '.join(arguments)} in {cwd} failed: {stderr.decode()[-2000:]}")
    return CommandRun(wall, usage.ru_utime + usage.ru_stime, server_cpu, peak)


def baseline_checkout(revision: str) -> Path:
    """The facecast package of `revision`, exported under var/bench/ (once: the commit it names never changes)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{revision}^{{commit}}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    path = BENCH_DIR / f"baseline-{commit[:10]}"
    if not (path / "facecast").is_dir():
        partial = path.with_name(path.name + ".partial")
        partial.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", commit, "facecast"], cwd=PROJECT_ROOT, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(partial)], input=archive.stdout, check=True)
        partial.replace(path)
    return path


# What `facecast analyze` imports before it analyses anything (the CLI, the pipeline, the store, the progress bar).
ANALYZE_IMPORTS = "import facecast.cli, facecast.cli.analyze, facecast.clips.pipeline, facecast.store, tqdm"


def start_up_s(checkout: Path, repeats: int = 5) -> float:
    """Median wall seconds of a Python process that only imports what `facecast analyze` needs."""
    environment = dict(os.environ, PYTHONPATH=str(checkout))
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", ANALYZE_IMPORTS], cwd=checkout, env=environment, check=True)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def median_run(runs: list[CommandRun]) -> CommandRun:
    return sorted(runs, key=lambda r: r.wall_s)[len(runs) // 2]


# ------------------------------------------------------------------------------------------------ decoding levers


def sampling_cpu_s(clip: Path, *, skip_nonreference: bool, threads: str, repeats: int) -> tuple[float, int]:
    """Median CPU seconds of sampling the whole clip as the pipeline does, and the frames decoded."""
    saved = (video._NONREF_SKIPPING_CODECS, video.DECODE_THREADS)
    video.DECODE_THREADS = threads
    if not skip_nonreference:
        video._NONREF_SKIPPING_CODECS = set()
    try:
        seconds, decoded = [], 0
        for _ in range(repeats):
            stats = video.SamplingStats()
            started = time.process_time()
            for _frame in video.sample_frames(clip, stats=stats):
                pass
            seconds.append(time.process_time() - started)
            decoded = stats.frames_decoded
        return statistics.median(seconds), decoded
    finally:
        video._NONREF_SKIPPING_CODECS, video.DECODE_THREADS = saved


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--baseline", help="git revision to compare the command with, interleaved (e.g. 4445f66)")
    parser.add_argument("--long", action="store_true", help="also a 2-hour clip: wall time and peak RSS")
    args = parser.parse_args(argv)

    clip = benchmark_clip(args.seconds)
    info = probe_video(clip)
    long_clip = concatenated_clip(clip, round(7200 / info.duration_s)) if args.long else None
    baseline = baseline_checkout(args.baseline) if args.baseline else None

    start_up = {"current": start_up_s(PROJECT_ROOT)}
    if baseline is not None:
        start_up["baseline"] = start_up_s(baseline)
    levers = {
        (skip, threads): sampling_cpu_s(clip, skip_nonreference=skip, threads=threads, repeats=3)
        for skip in (False, True)
        for threads in ("AUTO", "SLICE")
    }
    current: list[CommandRun] = []
    before: list[CommandRun] = []
    long_run = None
    with tempfile.TemporaryDirectory() as folder:
        repository = Path(folder) / "model_repository"
        write_repository(repository, ANALYSIS_WEIGHTS)
        with loopback_server(repository, Path(folder) / "run") as (settings, server):
            analyzer = ClipAnalyzer.for_urls([settings.triton_url])
            analyzer.analyze(clip)  # warm-up: model load, first-request allocations
            reports = []
            for repeat in range(args.repeats):
                reports.append(analyzer.analyze(clip).report)
                print(f"[bench] in-process run {repeat + 1}: {reports[-1].timings_s['total']:.2f} s", flush=True)

            def command(checkout: Path, target: Path, store: Path) -> CommandRun:
                arguments = ["analyze", str(target), "--url", settings.triton_url, "--db", str(store)]
                return run_command([*arguments, "--quiet", "--force"], checkout, server.pid)

            stores = {PROJECT_ROOT: Path(folder) / "current.duckdb"}
            command(PROJECT_ROOT, clip, stores[PROJECT_ROOT])  # warm-up: creates the store, fills the page cache
            if baseline is not None:
                stores[baseline] = Path(folder) / "baseline.duckdb"
                command(baseline, clip, stores[baseline])
            for repeat in range(args.repeats):
                current.append(command(PROJECT_ROOT, clip, stores[PROJECT_ROOT]))
                line = f"[bench] command run {repeat + 1}: {current[-1].wall_s:.2f} s"
                if baseline is not None:
                    before.append(command(baseline, clip, stores[baseline]))
                    line += f" (baseline {before[-1].wall_s:.2f} s)"
                print(line, flush=True)
            if long_clip is not None:
                print(f"[bench] analysing {long_clip.name} (2 h) ...", flush=True)
                long_run = command(PROJECT_ROOT, long_clip, stores[PROJECT_ROOT])
                print(f"[bench] 2 h: {long_run.wall_s:.0f} s, peak RSS {long_run.peak_rss_mb:.0f} MB", flush=True)

    markdown = render(args, info, reports, current, before, levers, start_up, long_clip, long_run)
    print(markdown)
    write_section("analyze", markdown)


def render(
    args: argparse.Namespace,
    info: video.VideoInfo,
    reports: list,
    current: list[CommandRun],
    before: list[CommandRun],
    levers: dict[tuple[bool, str], tuple[float, int]],
    start_up: dict[str, float],
    long_clip: Path | None,
    long_run: CommandRun | None,
) -> str:
    load = os.getloadavg()
    duration = info.duration_s
    now = median_run(current)
    factor = duration / now.wall_s
    met = "met" if factor >= TARGET_REALTIME else f"**missed** by {TARGET_REALTIME / factor:.2f}×"
    walls = [r.wall_s for r in current]
    rows = [
        f"| `facecast analyze`, wall, median of {args.repeats} (min–max) | {now.wall_s:.2f} s "
        f"({min(walls):.2f}–{max(walls):.2f}) | ≤ {duration / TARGET_REALTIME:.2f} s |",
        f"| real-time factor, process start included | {factor:.1f}× ({met}) | ≥ {TARGET_REALTIME:.0f}× |",
        f"| CPU: the command / the Triton tree (median run) | {now.cpu_s:.2f} s / {now.server_cpu_s:.2f} s | |",
        f"| floor on 2 cores, (command + Triton CPU) / 2 | {(now.cpu_s + now.server_cpu_s) / 2:.2f} s | |",
        f"| peak RSS of the command | {now.peak_rss_mb:.0f} MB | |",
        f"| process start and imports alone (`python -c '{ANALYZE_IMPORTS}'`), median of 5 | "
        f"{start_up['current']:.2f} s | |",
    ]
    if before:
        then = median_run(before)
        rows += [
            f"| baseline `{args.baseline}`, same command, interleaved: wall (median) | {then.wall_s:.2f} s "
            f"({duration / then.wall_s:.1f}×) | |",
            f"| baseline CPU: command / Triton tree | {then.cpu_s:.2f} s / {then.server_cpu_s:.2f} s | |",
            f"| **speed-up over the baseline** (wall, median / median) | **{then.wall_s / now.wall_s:.2f}×** | |",
            f"| baseline peak RSS | {then.peak_rss_mb:.0f} MB | |",
            f"| baseline process start and imports (its CLI imports every command) | {start_up['baseline']:.2f} s | |",
        ]
    if long_run is not None:
        rows += [
            f"| 2-hour clip ({long_clip.name}: the 30-s clip's packets concatenated "
            f"{round(7200 / duration)}× without re-encoding): wall | {long_run.wall_s:.0f} s "
            f"({7200 / long_run.wall_s:.1f}× real time) | |",
            f"| 2-hour clip: peak RSS of the command | {long_run.peak_rss_mb:.0f} MB (30-s clip: "
            f"{now.peak_rss_mb:.0f} MB) | bounded |",
        ]
    table = "\n".join(rows)
    floor = (now.cpu_s + now.server_cpu_s) / 2
    verdict = (
        f"**Target {'met' if factor >= TARGET_REALTIME else 'missed'}: {factor:.1f}× real time against "
        f"{TARGET_REALTIME:.0f}×.** The command may take {duration / TARGET_REALTIME:.2f} s for this clip. It used "
        f"{now.cpu_s:.2f} CPU-seconds and Triton {now.server_cpu_s:.2f} while it ran, so on 2 cores even perfect "
        f"overlap could not bring the wall time below {floor:.2f} s ({duration / floor:.1f}× real time)"
    )
    if floor > duration / TARGET_REALTIME:
        budget = 2 * duration / TARGET_REALTIME
        total_cpu = now.cpu_s + now.server_cpu_s
        verdict += (
            f": the target needs the command's and Triton's CPU time together to fall to {budget:.1f} s, "
            f"{total_cpu / budget:.1f}× less than now. Triton (the models' inference) has "
            f"{now.server_cpu_s / total_cpu:.0%} of it, the command {now.cpu_s / total_cpu:.0%} (process start and "
            "imports, then the stages below)."
        )
    else:
        verdict += "."

    median_report = sorted(reports, key=lambda r: r.timings_s["total"])[len(reports) // 2]
    timings = median_report.timings_s
    stage_rows = "\n".join(
        f"| {stage} | {timings[stage]:.3f} | {100 * timings[stage] / timings['total']:.0f} % |" for stage in STAGES
    )
    other = timings["total"] - sum(timings[s] for s in STAGES)
    counts = median_report.counts
    lever_rows = "\n".join(
        f"| {'skipped' if skip else 'decoded'} | {threads} | {frames} | {seconds:.3f} | "
        f"{levers[(False, 'AUTO')][0] / seconds:.2f}× |"
        for (skip, threads), (seconds, frames) in levers.items()
    )
    return f"""## End-to-end analysis of a 30-s 720p clip

`python -m benchmarks.analyze --repeats {args.repeats}{f" --baseline {args.baseline}" if before else ""}\
{" --long" if long_run else ""}` (`make bench-analyze`): a {duration:.1f}-s {info.width}×{info.height} {info.codec}
clip at {info.average_fps:.0f} fps (a synthetic scene with {len(median_report.characters)} tracked characters)
through a real Triton (face_detector, expression_encoder, engagement; CPU flavour) on the same 2 cores. The command
is `python -m facecast analyze CLIP --quiet --force` as a subprocess, storing into an existing store, after one
warm-up run; process start, imports, hashing, probing and storing are included. Load average when the runs
ended: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min; other work shares these cores, so compare the
ratios, not the absolute numbers, with other runs).

| | value | target |
|---|---|---|
{table}

{verdict}

Where the time goes: the analysis itself (ClipAnalyzer in the benchmark's process, median of {args.repeats}) took
{timings["total"]:.2f} s; the rest of the command's wall time is process start and imports \
({start_up["current"]:.2f} s: numpy, PyAV, tritonclient, DuckDB, pyarrow), the first requests' set-up and opening
and writing the store. Decoding runs in a background thread, detection
in batches of frames as they arrive, so "decode" below is only the time the pipeline waited for frames. Frames
decoded / sampled: {counts.get("frames_decoded", 0)} / {counts.get("frames_sampled", 0)}; faces detected / encoded:
{counts.get("faces_detected", 0)} / {counts.get("faces_encoded", 0)}.

| stage | seconds | share |
|---|---|---|
{stage_rows}
| other (probe, hashing, report) | {other:.3f} | {100 * other / timings["total"]:.0f} % |

Decoding levers alone (sampling the 30-s clip as the pipeline does, CPU seconds, median of 3; the ratio is against
every frame decoded with frame threads (AUTO), the decoding before issue 16; SLICE splits a frame only where the
encoder made slices):

| non-reference frames | FFmpeg threads | frames decoded | CPU s | ratio |
|---|---|---|---|---|
{lever_rows}
"""


if __name__ == "__main__":
    main()
