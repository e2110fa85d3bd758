"""Every training run docs/results-mapping.md compares, in one command: data, the style mapper, both baselines and
the leave-one-style-out mappers and their reference.

    python -m training.style_mapper_suite --data data/style_pairs --runs runs/mapping [--train-sets 16000]
        [--time-budget-s 420] [--parallel 7]

Runs share one training split and one time budget each, so the comparison is about the method, not the budget.
On a GPU all eight run side by side (`--parallel 8`: each holds its split on the GPU, ~4 GB); on a CPU they run
one after another (`--parallel 1`) and the budget should be longer. The shipped weights
(weights/style_mapper-cpu.pt) are the `style_mapper` run's best.pt; docs/results-mapping.md names the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from facecast.vocab import STYLES
from training.data.style_pairs import build_style_sets, save_style_sets


def runs(args: argparse.Namespace) -> dict[str, list[str]]:
    """Run name → arguments of training.train_style_mapper."""
    common = [
        "--train",
        str(args.data / "train"),
        "--val",
        str(args.data / "val"),
        "--time-budget-s",
        str(args.time_budget_s),
        "--max-steps",
        str(args.max_steps),
        "--network",
        args.network,
    ]
    named = {
        "style_mapper": ["--model", "style_mapper"],
        "autoencoder": ["--model", "autoencoder"],
        "cyclegan": ["--model", "cyclegan"],
    }
    # Leave-one-style-out: four mappers each without one style and a reference on all four, all with the same
    # shorter schedule (--loso-max-steps), so the drop measures the unseen style, not a difference in training.
    loso = ["--max-steps", str(args.loso_max_steps)] if args.loso_max_steps else []
    named["loso-all-styles"] = ["--model", "style_mapper", *loso]
    for style in STYLES:
        named[f"loso-without-{style}"] = ["--model", "style_mapper", "--exclude-style", style, *loso]
    selected = args.only or list(named)
    # argparse keeps the last --max-steps, so a LOSO run's own cap wins over the common one
    return {name: common + named[name] + ["--out", str(args.runs / name)] for name in selected}


def ensure_data(args: argparse.Namespace) -> None:
    for split, count in (("train", args.train_sets), ("val", args.val_sets)):
        folder = args.data / split
        meta = folder / "meta.json"
        if meta.exists() and json.loads(meta.read_text()).get("count") == count:
            continue
        started = time.perf_counter()
        save_style_sets(build_style_sets(split, count, args.size, args.workers), folder, split=split)
        print(f"[suite] {split}: {count} sets in {time.perf_counter() - started:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/style_pairs"))
    parser.add_argument("--runs", type=Path, default=Path("runs/mapping"))
    parser.add_argument("--network", default="style_mapper-cpu")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--train-sets", type=int, default=16000)
    parser.add_argument("--val-sets", type=int, default=500)
    parser.add_argument("--time-budget-s", type=float, default=420)
    parser.add_argument(
        "--max-steps", type=int, default=3000, help="a cap shared by every run (0: the time budget alone decides)"
    )
    parser.add_argument("--loso-max-steps", type=int, default=800)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0, help="rendering processes (default: every core)")
    parser.add_argument("--only", nargs="*", help="run names to train (default: all eight)")
    args = parser.parse_args(argv)

    ensure_data(args)
    args.runs.mkdir(parents=True, exist_ok=True)
    pending = list(runs(args).items())
    active: list[tuple[str, subprocess.Popen, object]] = []
    failed = []
    while pending or active:
        while pending and len(active) < args.parallel:
            name, run_args = pending.pop(0)
            (args.runs / name).mkdir(parents=True, exist_ok=True)
            log = (args.runs / name / "train.log").open("w")
            process = subprocess.Popen(
                [sys.executable, "-m", "training.train_style_mapper", *run_args], stdout=log, stderr=subprocess.STDOUT
            )
            active.append((name, process, log))
            print(f"[suite] started {name}", flush=True)
        time.sleep(2)
        for entry in list(active):
            name, process, log = entry
            if process.poll() is not None:
                log.close()
                active.remove(entry)
                status = "ok" if process.returncode == 0 else f"FAILED (exit {process.returncode})"
                if process.returncode:
                    failed.append(name)
                print(f"[suite] {name}: {status}", flush=True)
                print("".join((args.runs / name / "train.log").read_text().splitlines(True)[-3:]), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
