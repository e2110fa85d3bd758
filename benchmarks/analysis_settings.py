"""Serving settings for the analysis's models, measured on the analysis itself → the "analysis-settings" section of
docs/benchmarks.md.

    .venv/bin/python -m benchmarks.analysis_settings      # ~3 min on 2 cores

benchmarks/batching.py picks settings from one-row requests of many clients (the library's traffic). The analysis
is another load: one client sending batches of frames and faces while it decodes video on the same cores. So the
three models it calls (face_detector, expression_encoder, engagement) are measured here on `facecast analyze` of
benchmarks/analyze.py's 30-s 720p clip (process start included), one Triton per setting, all running at once on
free loopback ports, the runs interleaved setting by setting so the neighbours' load falls on each alike.
Reported: median wall time, the command's CPU and the Triton tree's CPU per run.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
from pathlib import Path

from benchmarks.analyze import ANALYSIS_WEIGHTS, benchmark_clip, run_command
from benchmarks.batching import Setting, repository_for
from benchmarks.report import write_section
from export.triton_repository import write_repository
from facecast.config import PROJECT_ROOT
from facecast.serving.process import loopback_server

ANALYSIS_MODELS = ("face_detector", "expression_encoder", "engagement")
SETTINGS = {
    "1 instance × 2 threads, idle threads sleep": {"instance_count": 1, "intra_op_threads": 0, "spinning": False},
    "1 instance × 2 threads, idle threads spin": {"instance_count": 1, "intra_op_threads": 0, "spinning": True},
    "2 instances × 1 thread": {"instance_count": 2, "intra_op_threads": 1, "spinning": False},
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)
    clip = benchmark_clip(30.0)
    runs: dict[str, list] = {label: [] for label in SETTINGS}
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        built = Path(folder) / "built"
        write_repository(built, ANALYSIS_WEIGHTS)
        servers = {}
        for index, (label, change) in enumerate(SETTINGS.items()):
            repository = Path(folder) / f"repository-{index}"
            repository_for(built, Setting(label, change), list(ANALYSIS_MODELS), repository)
            servers[label] = stack.enter_context(loopback_server(repository, Path(folder) / f"run-{index}"))
        for repeat in range(args.repeats + 1):  # the first round warms every server and creates the stores
            for index, (label, (settings, server)) in enumerate(servers.items()):
                store = Path(folder) / f"store-{index}.duckdb"
                arguments = [
                    "analyze",
                    str(clip),
                    "--url",
                    settings.triton_url,
                    "--db",
                    str(store),
                    "--quiet",
                    "--force",
                ]
                run = run_command(arguments, PROJECT_ROOT, server.pid)
                if repeat:
                    runs[label].append(run)
                print(f"[settings] {label}: {run.wall_s:.2f} s (Triton CPU {run.server_cpu_s:.2f} s)", flush=True)
    lines = [
        "## Serving settings for the analysis's models (issue 16, goals 2 and 5)",
        "",
        "`python -m benchmarks.analysis_settings`: `facecast analyze` of the 30-s 720p clip (process start included)"
        f" against one Triton per setting of {', '.join(ANALYSIS_MODELS)}, {args.repeats} runs each, interleaved "
        "setting by setting after a warm-up round; medians. The analysis decodes on the same 2 cores the server "
        "computes on.",
        "",
        "| setting | wall s | command CPU s | Triton CPU s |",
        "|---|---|---|---|",
    ]
    for label, measured in runs.items():
        lines.append(
            f"| {label} | {statistics.median(r.wall_s for r in measured):.2f} | "
            f"{statistics.median(r.cpu_s for r in measured):.2f} | "
            f"{statistics.median(r.server_cpu_s for r in measured):.2f} |"
        )
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_doc:
        print(f"wrote {write_section('analysis-settings', markdown)}")


if __name__ == "__main__":
    main()
