"""A bounded soak: mixed traffic from 4 browser clients against the app (`streamlit run`) and its Triton for 10
minutes; every error a client saw, and the memory of both processes over time (resident set of the process and its
children: Triton's python backend runs each model in a stub process of its own).

    python -m benchmarks.soak [--minutes 10] [--clients 4]     # writes docs/reliability.md's soak section

Each client is a Chromium page (one browser, one context per client, so each is its own Streamlit session) that
loops over what the three kinds of user do: a library text search, classifying demo faces, the History page,
analysing a clip (one of four small cuts, so most are reopened from the store as repeat uploads are), the style
mapper, and the Ops page. Growth is judged on the steady part: a least-squares slope over everything after the
first quarter (warm-up: caches, ONNX Runtime arenas, Streamlit's per-session state).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facecast.config import PROJECT_ROOT

RELIABILITY_MD = PROJECT_ROOT / "docs" / "reliability.md"
ARTIFACTS = PROJECT_ROOT / "artifacts"  # screenshots of the first errors (git-ignored)
WAIT_MS = 120_000
QUERIES = ("a furious cartoon villain", "shy smile, anime", "a terrified face", "crying realistic portrait")
DEMO_FACES = ("cartoon-surprise", "anime-happiness", "realistic-sadness", "stylized_3d-anger")


# ---------------------------------------------------------------------------------------------- memory


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and all its descendants, in MB (from /proc: no psutil needed)."""
    total, stack, seen = 0, [pid], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
        stack += _children(current)
    return total / 1024


@dataclass
class Samples:
    t: list[float] = field(default_factory=list)
    app_mb: list[float] = field(default_factory=list)
    triton_mb: list[float] = field(default_factory=list)


def slope_mb_per_min(t: list[float], mb: list[float], skip_fraction: float = 0.25) -> float:
    times, values = np.asarray(t), np.asarray(mb)
    keep = times >= times[-1] * skip_fraction
    if keep.sum() < 3:
        return float("nan")
    return float(np.polyfit(times[keep] / 60.0, values[keep], 1)[0])


# ---------------------------------------------------------------------------------------------- clients


@dataclass
class ClientStats:
    actions: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


async def _open(page, url: str, title: str) -> None:
    await page.goto(url, timeout=WAIT_MS)
    await page.get_by_role("link", name=title).click()
    await page.get_by_role("heading", name=title).wait_for(timeout=WAIT_MS)


async def search(page, url: str, rng: random.Random, _: dict) -> None:
    await _open(page, url, "Expression library")
    await page.get_by_label("Describe the expression").fill(rng.choice(QUERIES))
    await page.get_by_test_id("stBaseButton-primaryFormSubmit").click()
    await page.get_by_role("heading", name="results for the text query").first.wait_for(timeout=WAIT_MS)


async def classify(page, url: str, rng: random.Random, _: dict) -> None:
    await _open(page, url, "Classify faces")
    picker = page.get_by_role("combobox")
    name = rng.choice(DEMO_FACES)
    await picker.click()
    await picker.fill(name)
    await page.get_by_role("option", name=name).click()
    await page.keyboard.press("Escape")
    await page.get_by_role("button", name="Classify").click()
    await page.get_by_text("1 of 1 image(s) classified").wait_for(timeout=WAIT_MS)


async def history(page, url: str, _rng: random.Random, _: dict) -> None:
    await _open(page, url, "History")
    await page.wait_for_timeout(500)


def _browser_log(page) -> list[str]:
    """What the browser reports (console errors, failed requests, upload responses), printed when an action fails."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(f"console {m.type}: {m.text[:120]}") if m.type == "error" else None)
    page.on("requestfailed", lambda r: seen.append(f"request failed: {r.method} {r.url[-60:]} {r.failure}"))
    page.on("response", lambda r: seen.append(f"{r.url[-40:]} -> {r.status}") if "upload_file" in r.url else None)
    return seen


async def analyse(page, url: str, rng: random.Random, inputs: dict) -> None:
    """In a session of its own (a marketer opening the app to try a cut): the page keeps earlier results on screen,
    which would make "this clip is done" ambiguous in a session that analysed before."""
    clip = rng.choice(inputs["clips"])
    context = await page.context.browser.new_context(viewport={"width": 1400, "height": 1600})
    try:
        fresh = await context.new_page()
        seen = _browser_log(fresh)
        await _open(fresh, url, "Analyze clips")
        uploader = fresh.locator('[data-testid="stFileUploader"]')
        upload_button = uploader.get_by_role("button", name="Upload", exact=True)
        # As a person does: press Upload and pick the file in the chooser. Setting the hidden <input> directly
        # (playwright's set_input_files) lost about one choice in seven under load: no upload request was sent.
        for attempt in range(3):  # a rerun still finishing can re-draw the widget and drop the file: choose again
            async with fresh.expect_file_chooser(timeout=WAIT_MS) as chooser:
                await upload_button.click(timeout=WAIT_MS)
            await (await chooser.value).set_files(str(clip))
            try:
                await uploader.get_by_text(clip.name).first.wait_for(timeout=15_000)
                break
            except Exception:  # noqa: BLE001 - playwright's TimeoutError; the last attempt re-raises
                if attempt == 2:
                    raise
        await fresh.get_by_role("button", name="Analyze").click()
        # "<name>: analysed" or "<name>: reopened analysis N", the status box's label once it is stored
        await fresh.get_by_text(re.compile(rf"{re.escape(clip.name)}: (analysed|reopened)")).first.wait_for(
            state="attached", timeout=WAIT_MS
        )
        if await fresh.get_by_text("Traceback").count():
            raise RuntimeError("a traceback on the page")
    except Exception:
        print("analyse failed; the browser saw:", *seen[-12:], sep="\n  ", file=sys.stderr)
        ARTIFACTS.mkdir(exist_ok=True)
        await fresh.screenshot(
            path=str(ARTIFACTS / f"soak-analyse-{clip.stem}-{time.monotonic():.0f}.png"), full_page=True
        )
        raise
    finally:
        await context.close()


async def map_style(page, url: str, _rng: random.Random, inputs: dict) -> None:
    await _open(page, url, "Style mapping")
    await page.get_by_text("An uploaded face").click()
    await page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(inputs["face"]))
    await page.get_by_role("heading", name="In all four styles").wait_for(timeout=WAIT_MS)


async def ops(page, url: str, _rng: random.Random, _: dict) -> None:
    await _open(page, url, "Triton status")
    server = page.locator('[data-testid="stMetric"]').filter(has_text="Server")
    await server.get_by_text("ready", exact=True).wait_for(timeout=WAIT_MS)


ACTIONS = {"search": search, "classify": classify, "history": history, "analyse": analyse, "map": map_style, "ops": ops}
WEIGHTS = {"search": 4, "classify": 3, "history": 2, "analyse": 2, "map": 1, "ops": 1}


async def client(browser, url: str, index: int, until: float, inputs: dict, stats: ClientStats) -> None:
    rng = random.Random(index)
    context = await browser.new_context(viewport={"width": 1400, "height": 1600})
    page = await context.new_page()
    names, weights = list(WEIGHTS), list(WEIGHTS.values())
    while time.monotonic() < until:
        name = rng.choices(names, weights)[0]
        began = time.monotonic()
        try:
            await ACTIONS[name](page, url, rng, inputs)
            if await page.get_by_text("Traceback").count():
                raise RuntimeError("a traceback on the page")
            stats.actions[name] = stats.actions.get(name, 0) + 1
            stats.seconds.setdefault(name, []).append(time.monotonic() - began)
        except Exception as error:  # noqa: BLE001 - every failure a user would see is counted and kept
            stats.errors.append(f"client {index} {name}: {type(error).__name__}: {str(error).splitlines()[0][:160]}")
            if len(stats.errors) <= 10:  # what the page showed, to tell a slow app from a wrong expectation
                ARTIFACTS.mkdir(exist_ok=True)
                shot = ARTIFACTS / f"soak-error-{len(stats.errors)}-{name}.png"
                try:
                    await page.screenshot(path=str(shot), full_page=True)
                except Exception:  # noqa: BLE001 - a page that cannot be photographed is still counted above
                    pass
            await page.close()
            page = await context.new_page()
    await context.close()


async def drive(url: str, clients: int, seconds: float, inputs: dict, samples: Samples, pids: dict) -> ClientStats:
    from playwright.async_api import async_playwright

    from tests.browser_helpers import CHROMIUM, CHROMIUM_ARGS

    stats = ClientStats()
    began = time.monotonic()
    until = began + seconds

    async def sample() -> None:
        while time.monotonic() < until:
            samples.t.append(time.monotonic() - began)
            samples.app_mb.append(tree_rss_mb(pids["app"]))
            samples.triton_mb.append(tree_rss_mb(pids["triton"]))
            await asyncio.sleep(10)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        await asyncio.gather(sample(), *(client(browser, url, i, until, inputs, stats) for i in range(clients)))
        await browser.close()
    samples.t.append(time.monotonic() - began)
    samples.app_mb.append(tree_rss_mb(pids["app"]))
    samples.triton_mb.append(tree_rss_mb(pids["triton"]))
    return stats


# ---------------------------------------------------------------------------------------------- the run


def prepare_inputs(folder: Path) -> dict:
    from training.data.clips import sample_clip_script, write_clip
    from training.data.demo import build_demo

    faces = build_demo(folder / "demo")
    clips = [write_clip(sample_clip_script(seed, duration_s=4.0), folder / f"cut-{seed}.mp4") for seed in range(4)]
    return {"clips": clips, "face": faces / "cartoon-surprise.png"}


def report(samples: Samples, stats: ClientStats, minutes: float, clients: int) -> str:
    total = sum(stats.actions.values())
    rows = ["| action | done | p50 s | p95 s |", "|---|---|---|---|"]
    for name in ACTIONS:
        times = stats.seconds.get(name, [])
        if times:
            rows.append(f"| {name} | {len(times)} | {np.percentile(times, 50):.1f} | {np.percentile(times, 95):.1f} |")
    memory = [
        "| process | start MB | after warm-up MB | end MB | max MB | slope after warm-up |",
        "|---|---|---|---|---|---|",
    ]
    for label, values in (
        ("app (streamlit run)", samples.app_mb),
        ("Triton (+ python backend stubs)", samples.triton_mb),
    ):
        warm = next(v for t, v in zip(samples.t, values) if t >= samples.t[-1] * 0.25)
        memory.append(
            f"| {label} | {values[0]:.0f} | {warm:.0f} | {values[-1]:.0f} | {max(values):.0f} | "
            f"{slope_mb_per_min(samples.t, values):+.1f} MB/min |"
        )
    errors = "\n".join(f"- {error}" for error in stats.errors[:20]) or "None."
    load = os.getloadavg()
    return "\n".join(
        [
            f"{clients} browser clients for {minutes:g} minutes against one app process and one Triton (CPU), "
            f"machine: {os.cpu_count()} cores, shared (load average at the end {load[0]:.1f} / {load[1]:.1f} / "
            f"{load[2]:.1f}). {total} actions done, **{len(stats.errors)} errors**.",
            "",
            *rows,
            "",
            "Memory, sampled every 10 s (resident set of the process tree):",
            "",
            *memory,
            "",
            "Errors the clients saw:",
            "",
            errors,
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--repository", type=Path, default=PROJECT_ROOT / "model_repository")
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing it")
    args = parser.parse_args(argv)
    from benchmarks.doc_markers import write_section
    from facecast.serving import process
    from tests.browser_helpers import start_streamlit

    with tempfile.TemporaryDirectory(prefix="facecast-soak-") as temporary:
        folder = Path(temporary)
        with process.loopback_server(args.repository, folder / "run", timeout=180) as (settings, triton):
            env = {
                **os.environ,
                "FACECAST_TRITON_URLS": settings.triton_url,
                "FACECAST_HTTP_PORT": str(settings.http_port),  # training.data.demo talks to the local server
                "FACECAST_RUN_DIR": str(settings.run_dir),
                "FACECAST_DB": str(folder / "soak.duckdb"),
                "FACECAST_DEMO_DIR": str(folder / "demo"),
            }
            inputs = prepare_inputs(folder)
            subprocess.run(
                [sys.executable, "-m", "training.data.demo", "--library"], cwd=PROJECT_ROOT, env=env, check=True
            )
            app, url = start_streamlit(env, output=subprocess.DEVNULL)
            try:
                samples = Samples()
                stats = asyncio.run(
                    drive(url, args.clients, args.minutes * 60, inputs, samples, {"app": app.pid, "triton": triton.pid})
                )
            finally:
                app.terminate()
                app.wait(timeout=30)
    body = f"Written by `python -m benchmarks.soak`.\n\n{report(samples, stats, args.minutes, args.clients)}"
    print(body)
    if not args.no_write:
        write_section(RELIABILITY_MD, "soak", body, title="# Reliability")
        print(f"wrote {RELIABILITY_MD}")


if __name__ == "__main__":
    main()
