"""Batching that pays (issue 16, goal 5): every served model under several scheduling settings, measured with
perf_analyzer, and the setting each model should be served with chosen from the curves → the "batching" section
of docs/benchmarks.md.

    make bench-batching         # = .venv/bin/python -m benchmarks.batching   (~10 min on 2 cores)

The repository `make repository` built (model_repository/) is copied once per setting with only the entries that
setting decides swapped in (export/triton_repository.py scheduling_lines: dynamic batching and its queue delay
and preferred sizes, the instance count, ONNX Runtime's threads per instance); one real Triton serves each copy in
turn, and perf_analyzer measures every model at concurrency 1 (a lone user: latency) and 16 (a busy fleet:
throughput), one-row requests, as benchmarks/perf.py does (its input data, windows and stability marks).

Choosing. For each model the chosen setting is the one with the most infer/s at concurrency 16 among those whose
concurrency-1 p50 is within LONE_P50_SLACK_MS of the best concurrency-1 p50 (a lone artist's query must not wait
for a batch that never forms), ties to the simpler setting (the order of SETTINGS). The table marks the setting
served now (export/triton_repository.py CPU_SERVING) and the chosen one; when they differ, CPU_SERVING is what
should change, and the section says so rather than the script editing code.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.perf import (
    Measurement,
    PerfAnalyzer,
    PerfResult,
    input_data,
    measure,
    served_version,
    serving,
    warm_up,
)
from benchmarks.report import write_section
from export.triton_repository import CPU_SERVING, ServingSettings, scheduling_lines
from facecast.config import PROJECT_ROOT
from facecast.serving.health import model_config
from facecast.vocab import SERVED_MODELS

CONCURRENCY = (1, 16)
LONE_P50_SLACK_MS = 1.0
SCHEDULING = re.compile(
    r"dynamic_batching \{[^}]*\}\n?|instance_group \[\s*\{[^}]*\}\s*\]\n?"
    r'|parameters: \{\s*key: "intra_op_(threads|spinning)"\s*value: \{[^}]*\}\s*\}\n?'
)


@dataclass(frozen=True)
class Setting:
    label: str
    change: dict  # fields of ServingSettings replaced on each model's served settings


SETTINGS = (
    Setting("no batching", {"dynamic_batching": False}),
    Setting("dynamic, delay 0", {"dynamic_batching": True, "max_queue_delay_us": 0}),
    Setting("dynamic, delay 1 ms", {"dynamic_batching": True, "max_queue_delay_us": 1000}),
    Setting(
        "dynamic, preferred 8/16, delay 1 ms",
        {"dynamic_batching": True, "max_queue_delay_us": 1000, "preferred_batch_sizes": (8, 16)},
    ),
    Setting("dynamic, delay 0, threads spin", {"dynamic_batching": True, "max_queue_delay_us": 0, "spinning": True}),
    Setting(
        "dynamic, delay 0, 2 instances × 1 thread",
        {"dynamic_batching": True, "max_queue_delay_us": 0, "instance_count": 2, "intra_op_threads": 1},
    ),
)


def served_settings(model: str) -> ServingSettings:
    return CPU_SERVING.get(model, ServingSettings())


def with_scheduling(config: str, settings: ServingSettings) -> str:
    """A built config.pbtxt with its scheduling entries replaced by those of `settings`."""
    kept = SCHEDULING.sub("", config).rstrip("\n")
    return kept + "\n" + "\n".join(scheduling_lines(settings, "cpu")) + "\n"


def repository_for(source: Path, setting: Setting, models: list[str], target: Path) -> Path:
    for model in models:
        shutil.copytree(source / model, target / model)
        config = target / model / "config.pbtxt"
        config.write_text(with_scheduling(config.read_text(), replace(served_settings(model), **setting.change)))
    return target


def matches_served(model: str, setting: Setting) -> bool:
    served = served_settings(model)
    return replace(served, **setting.change) == served


def choose(rows: dict[str, dict[int, PerfResult]]) -> str:
    """The chosen setting's label for one model (module docstring: the rule)."""
    best_lone = min(cells[1].p50_ms for cells in rows.values())
    eligible = [label for label, cells in rows.items() if cells[1].p50_ms <= best_lone + LONE_P50_SLACK_MS]
    return max(eligible, key=lambda label: (rows[label][16].infer_per_s, -list(rows).index(label)))


def render(results: dict[str, dict[str, dict[int, PerfResult]]], measurement: Measurement, minutes: float) -> str:
    lines = [
        "## Batching that pays: every served model, scheduling settings compared (issue 16, goal 5)",
        "",
        "`python -m benchmarks.batching` (`make bench-batching`): model_repository/ served by one real Triton per "
        "setting (only the scheduling entries of each config.pbtxt swapped), perf_analyzer 2.51 over HTTP, "
        f"one-row requests, {measurement.windows} windows of {measurement.measurement_ms} ms per cell († = a "
        f"window more than {measurement.stability_percent:.0f} % from the mean). Server and load generator share "
        f"the same 2 cores; the run took {minutes:.1f} min. Chosen = most infer/s at concurrency 16 among the "
        f"settings whose concurrency-1 p50 is within {LONE_P50_SLACK_MS:g} ms of the best (a lone request must "
        "not wait for a batch); **bold** = served now (export/triton_repository.py CPU_SERVING; each setting changes "
        "the served one, so two rows may both be it).",
    ]
    verdicts = []
    for model, rows in results.items():
        chosen = choose(rows)
        lines += [
            "",
            f"### {model}",
            "",
            "| setting | c 1: infer/s | p50 ms | p95 ms | c 16: infer/s | p50 ms | p95 ms | c 16 ÷ no batching |",
            "|---|---|---|---|---|---|---|---|",
        ]
        unbatched = rows[SETTINGS[0].label][16].infer_per_s
        # a setting is a change to the served one, so for some models two rows serve the same configuration (a model
        # whose threads spin already: "threads spin" changes nothing); both are the served one
        served_labels = [s.label for s in SETTINGS if s.label in rows and matches_served(model, s)]
        served_label = served_labels[0] if served_labels else None
        for label, cells in rows.items():
            one, many = cells[1], cells[16]
            name = f"**{label}**" if label in served_labels else label
            name += " ← chosen" if label == chosen else ""
            marks = ["" if c.stable else " †" for c in (one, many)]
            lines.append(
                f"| {name} | {one.infer_per_s:.0f}{marks[0]} | {one.p50_ms:.1f} | {one.p95_ms:.1f} | "
                f"{many.infer_per_s:.0f}{marks[1]} | {many.p50_ms:.1f} | {many.p95_ms:.1f} | "
                f"{many.infer_per_s / unbatched:.2f}× |"
            )
        if served_label is None:
            verdicts.append(f"{model}: its served setting was not measured in this run")
        elif chosen in served_labels and chosen != served_label:
            verdicts.append(f"{model}: served `{served_label}` = chosen (`{chosen}` is the same configuration)")
        elif chosen != served_label:
            gain = rows[chosen][16].infer_per_s / rows[served_label][16].infer_per_s
            verdicts.append(f"{model}: served `{served_label}`, chosen `{chosen}` ({gain:.2f}× at concurrency 16)")
        else:
            verdicts.append(f"{model}: served `{served_label}` = chosen")
    lines += ["", "Served against chosen, per model:", ""] + [f"- {line}" for line in verdicts]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(SERVED_MODELS), choices=SERVED_MODELS)
    parser.add_argument("--settings", nargs="+", type=int, help="indices into SETTINGS (default: all)")
    parser.add_argument("--model-repository", type=Path, default=PROJECT_ROOT / "model_repository")
    parser.add_argument("--measurement-ms", type=int, default=1500)
    parser.add_argument("--windows", type=int, default=3, help="perf_analyzer needs ≥ 3")
    parser.add_argument("--perf-env", type=Path, default=PROJECT_ROOT / ".venv-perf")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)
    settings = [SETTINGS[i] for i in args.settings] if args.settings else list(SETTINGS)
    models = [m for m in SERVED_MODELS if m in args.models]
    analyzer = PerfAnalyzer.locate(args.perf_env)
    measurement = Measurement(measurement_ms=args.measurement_ms, windows=args.windows)
    results: dict[str, dict[str, dict[int, PerfResult]]] = {m: {} for m in models}
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="facecast-batching-"))
    try:
        for index, setting in enumerate(settings):
            repository = repository_for(args.model_repository, setting, models, work / f"repository-{index}")
            run_dir = work / f"run-{index}"
            run_dir.mkdir()
            with serving(1, repository, run_dir, "") as (url, servers):
                for model in models:
                    data = input_data(model_config(url, model))
                    data_args: list[str] = []
                    if data is not None:
                        path = run_dir / f"input-{model}.json"
                        path.write_text(json.dumps(data))
                        data_args = ["--input-data", str(path)]
                    version = served_version(url, model)
                    warm_up(analyzer, model, version, url, data_args, 32, run_dir)
                    for concurrency in CONCURRENCY:
                        cell = measure(
                            analyzer, model, version, url, servers, concurrency, data_args, measurement, run_dir
                        )
                        results[model].setdefault(setting.label, {})[concurrency] = cell
                        print(
                            f"batching: {setting.label:42s} {model:18s} c {concurrency:2d}: {cell.infer_per_s:7.1f} "
                            f"infer/s p50 {cell.p50_ms:6.1f} p95 {cell.p95_ms:6.1f} ms "
                            f"({time.monotonic() - began:.0f} s)",
                            flush=True,
                        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    markdown = render(results, measurement, (time.monotonic() - began) / 60)
    print(markdown)
    if not args.no_doc:
        print(f"wrote {write_section('batching', markdown)}")


if __name__ == "__main__":
    main()
