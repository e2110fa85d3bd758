"""The adversarial suite: the bad input users bring, through the CLI, the app and the served models, each with
what the user saw, checked against what must happen: one clear message naming the input (no traceback, the
documented exit code: facecast/cli/exits.py) and nothing stored half; or, for input that is odd but valid, a
result.

    python -m benchmarks.adversarial                      # starts its own Triton; writes docs/reliability.md
    python -m benchmarks.adversarial --only clip image    # some groups; prints the table, writes nothing

tests/test_adversarial.py runs every case against the suite's Triton and fails on any that misbehaves; this script
writes the table (`<!-- adversarial:begin -->` section of docs/reliability.md) from the same cases.

Every input is made here, from code (PyAV, Pillow, DuckDB): nothing is downloaded or committed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import av
import numpy as np
from PIL import Image

from facecast.config import PROJECT_ROOT, Settings
from facecast.media.video_writer import write_video
from tests.badfiles import audio_only, index_last_mp4, png_claiming_size

RELIABILITY_MD = PROJECT_ROOT / "docs" / "reliability.md"
GROUPS = ("clip", "image", "manifest", "search", "id", "markup", "store", "model", "app")
GROUP_TITLES = {
    "clip": "Clips",
    "image": "Images",
    "manifest": "Manifests",
    "search": "Search strings",
    "id": "Ids",
    "markup": "HTML, JS and formulas in names",
    "store": "The store file and the disk",
    "model": "Served models (requests straight to Triton)",
    "app": "The app (AppTest: the page's own code, in-process)",
}


# ---------------------------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Outcome:
    passed: bool  # what happened is what must happen
    shown: str  # what the user saw: the message, or the result
    detail: str  # exit code, rows stored, ...


@dataclass(frozen=True)
class Case:
    group: str
    name: str
    surface: str
    expected: str
    run: Callable[[Bench], Outcome]


CASES: list[Case] = []


def case(group: str, name: str, surface: str, expected: str) -> Callable[[Callable[[Bench], Outcome]], Callable]:
    def register(run: Callable[[Bench], Outcome]) -> Callable[[Bench], Outcome]:
        assert group in GROUPS, group
        CASES.append(Case(group, name, surface, expected, run))
        return run

    return register


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def last_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def _short(text: str, limit: int = 230) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def refused(run: Run, *, code: int = 2, names: str | None = None, stored: int = 0) -> Outcome:
    """A refusal as it must be: the exit code, one error line (naming `names`), no traceback, nothing stored."""
    error_lines = [line for line in run.stderr.splitlines() if ": error: " in line]
    passed = (
        run.returncode == code
        and "Traceback" not in run.stderr
        and len(error_lines) == 1
        and (names is None or names in error_lines[0])
        and stored == 0
    )
    shown = error_lines[0].split(": error: ", 1)[1] if error_lines else run.last_line or run.stdout
    return Outcome(passed, _short(shown), f"exit {run.returncode}, {stored} rows stored")


def accepted(run: Run, shown: str, *, ok: bool = True, stored: int | None = None) -> Outcome:
    detail = f"exit {run.returncode}" + (f", {stored} rows stored" if stored is not None else "")
    passed = run.returncode == 0 and "Traceback" not in run.stderr and ok
    return Outcome(passed, _short(shown if passed else (run.last_line or shown)), detail)


# ---------------------------------------------------------------------------------------------- the bench


class Bench:
    """A folder to make inputs in, a Triton to send them to, and helpers to run the CLI and count stored rows."""

    def __init__(self, folder: Path, settings: Settings) -> None:
        self.folder = folder
        self.settings = settings
        self._count = 0

    @property
    def triton_url(self) -> str:
        return self.settings.triton_url

    def path(self, name: str) -> Path:
        """A fresh file name in a folder of its own (the name is what the user sees in messages)."""
        self._count += 1
        folder = self.folder / f"case-{self._count:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def db(self) -> Path:
        return self.path("facecast.duckdb")

    def environment(self, **extra: str) -> dict[str, str]:
        environment = {
            **os.environ,
            "FACECAST_TRITON_URLS": self.triton_url,
            "FACECAST_TRITON_DEADLINE_S": "20",
            **extra,
        }
        environment.pop("FACECAST_DB", None)
        return environment

    def cli(
        self,
        *args: str | Path,
        db: Path | None = None,
        timeout: float = 900,
        file_size_limit: int | None = None,
        **env: str,
    ) -> Run:
        command = [sys.executable, "-m", "facecast", *map(str, args)]
        if db is not None:
            command += ["--db", str(db)]

        def limit_file_size() -> None:
            import resource

            assert file_size_limit is not None
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

        began = time.monotonic()
        done = subprocess.run(
            command,
            cwd=PROJECT_ROOT,
            env=self.environment(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=limit_file_size if file_size_limit is not None else None,
        )
        return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - began)

    @staticmethod
    def rows(db: Path) -> int:
        """Rows in every data table of a store (0 if it was never created)."""
        from facecast.store import open_store
        from facecast.store.backup import TABLES

        if not db.exists():
            return 0
        with open_store(db, read_only=True) as store:
            return sum(store.read_rows(f"SELECT count(*) FROM {table}")[0][0] for table in TABLES)

    @cached_property
    def good_clip(self) -> Path:
        """A clip with faces (a synthetic cut, made by the generator the models were trained beside)."""
        from training.data.clips import sample_clip_script, write_clip

        return write_clip(sample_clip_script(7, duration_s=3.0), self.folder / "good.mp4")

    @cached_property
    def library_db(self) -> Path:
        """A library to search: the 28 demo faces, embedded by the served models."""
        from facecast.clients.embedders import Embedders
        from facecast.library import Library
        from training.data.demo import build_demo

        faces = build_demo(self.folder / "demo")
        db = self.folder / "library.duckdb"
        with Library.open(db, embedders=Embedders.for_urls([self.triton_url])) as library:
            library.add_manifest(faces / "labels.csv")
        return db

    def frames(self, count: int, size: tuple[int, int] = (96, 64)) -> list[np.ndarray]:
        rng = np.random.default_rng(count)
        width, height = size
        return [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(count)]


# ---------------------------------------------------------------------------------------------- inputs


def face_png(size: int = 64) -> bytes:
    from training.data.synthetic import sample_still

    image, _ = sample_still(3, size=size, style="cartoon", emotion="anger")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _encode(image: Image.Image, format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def no_frames(path: Path) -> Path:
    """A Matroska file with a video stream and not one frame in it (the header is written, then the trailer)."""
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    return path


def ten_bit(path: Path, frames: list[np.ndarray]) -> Path:
    """10-bit 4:2:0 H.264 (High 10), as HDR masters are delivered in."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p10le"
        stream.codec_context.color_primaries = 9  # BT.2020
        stream.codec_context.color_trc = 16  # SMPTE 2084 (PQ): HDR10
        stream.codec_context.colorspace = 9  # BT.2020 non-constant
        for frame in frames:
            container.mux(
                stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p10le"))
            )
        container.mux(stream.encode(None))
    return path


# ---------------------------------------------------------------------------------------------- clips

CLIP_SURFACE = "CLI analyze"


def _analyse_refused(bench: Bench, path: Path) -> Outcome:
    db = bench.db()
    return refused(bench.cli("analyze", path, "--quiet", db=db), names=path.name, stored=bench.rows(db))


def _analyse_accepted(bench: Bench, path: Path, *, note: str = "") -> Outcome:
    db = bench.db()
    run = bench.cli("analyze", path, "--json", "--quiet", db=db)
    if run.returncode != 0:
        return refused(run, code=0)
    [report] = json.loads(run.stdout)
    faces = "faces found" if report["faces_found"] else "no faces found (the report says so)"
    info = report["clip"]
    shown = f"analysed: {info['width']}x{info['height']}, {info['duration_s']:.0f} s, {faces}"
    if note:
        shown += f"; {note.format(report=report, notes='; '.join(report.get('notes', [])))}"
    return accepted(run, shown + f" ({run.seconds:.0f} s)", stored=bench.rows(db))


@case("clip", "empty file (0 bytes)", CLIP_SURFACE, "exit 2, nothing stored")
def clip_empty(bench: Bench) -> Outcome:
    path = bench.path("empty.mp4")
    path.write_bytes(b"")
    return _analyse_refused(bench, path)


@case("clip", "random bytes named .mp4", CLIP_SURFACE, "exit 2, nothing stored")
def clip_random(bench: Bench) -> Outcome:
    path = bench.path("noise.mp4")
    path.write_bytes(np.random.default_rng(1).bytes(200_000))
    return _analyse_refused(bench, path)


@case("clip", "a PNG named .mp4", CLIP_SURFACE, "exit 2, nothing stored")
def clip_png(bench: Bench) -> Outcome:
    path = bench.path("poster.mp4")
    path.write_bytes(face_png())
    return _analyse_refused(bench, path)


@case("clip", "a text file named .mp4", CLIP_SURFACE, "exit 2, nothing stored")
def clip_text(bench: Bench) -> Outcome:
    path = bench.path("notes.mp4")
    path.write_text("shot list: open on the villain\n" * 20)
    return _analyse_refused(bench, path)


@case("clip", "audio only (AAC in MP4)", CLIP_SURFACE, "exit 2, nothing stored")
def clip_audio(bench: Bench) -> Outcome:
    return _analyse_refused(bench, audio_only(bench.path("soundtrack.mp4")))


@case("clip", "zero-length video stream (a stream, no frames)", CLIP_SURFACE, "exit 2, nothing stored")
def clip_no_frames(bench: Bench) -> Outcome:
    return _analyse_refused(bench, no_frames(bench.path("empty-stream.mkv")))


@case("clip", "MP4 cut after its header (first 2 kB)", CLIP_SURFACE, "exit 2, nothing stored")
def clip_cut_header(bench: Bench) -> Outcome:
    path = bench.path("cut-header.mp4")
    path.write_bytes(bench.good_clip.read_bytes()[:2000])
    return _analyse_refused(bench, path)


@case("clip", "MP4 cut in half (index at the end, lost)", CLIP_SURFACE, "exit 2, nothing stored")
def clip_cut_half(bench: Bench) -> Outcome:
    whole = index_last_mp4(bench.path("whole.mp4"), bench.frames(40))
    path = bench.path("cut-half.mp4")
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return _analyse_refused(bench, path)


@case("clip", "MKV cut in half (frames up to the cut are readable)", CLIP_SURFACE, "analysed up to the cut, said so")
def clip_cut_mkv(bench: Bench) -> Outcome:
    from training.data.clips import sample_clip_script, write_clip

    whole = write_clip(sample_clip_script(7, duration_s=4.0), bench.path("whole.mkv"))
    path = bench.path("cut-half.mkv")
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return _analyse_accepted(bench, path, note="{notes}")


@case("clip", "a folder named like a clip", CLIP_SURFACE, "exit 2, nothing stored")
def clip_folder(bench: Bench) -> Outcome:
    path = bench.path("trailer.mp4")
    path.mkdir()
    return _analyse_refused(bench, path)


@case("clip", "a file that does not exist", CLIP_SURFACE, "exit 2, nothing stored")
def clip_missing(bench: Bench) -> Outcome:
    return _analyse_refused(bench, bench.path("no-such-cut.mp4"))


@case("clip", "huge dimensions: 7680x4320 (8K)", CLIP_SURFACE, "analysed (decoded downscaled), stored")
def clip_8k(bench: Bench) -> Outcome:
    frame = np.zeros((4320, 7680, 3), np.uint8)
    frame[::64] = 200
    path = write_video(bench.path("8k.mp4"), [frame] * 3, fps=3)
    return _analyse_accepted(bench, path)


@case("clip", "10-bit HDR (H.264 High 10, BT.2020 PQ)", CLIP_SURFACE, "analysed, stored")
def clip_10bit(bench: Bench) -> Outcome:
    import av.video.frame  # noqa: F401

    from training.data.clips import sample_clip_script, write_clip

    source = write_clip(sample_clip_script(7, duration_s=3.0), bench.path("sdr.mp4"))
    with av.open(str(source)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return _analyse_accepted(bench, ten_bit(bench.path("hdr10.mp4"), frames))


@case("clip", "variable frame rate", CLIP_SURFACE, "analysed on the real timestamps, stored")
def clip_vfr(bench: Bench) -> Outcome:
    times = [0.0, 0.1, 0.15, 0.5, 0.55, 0.6, 1.5, 1.6, 1.7, 2.0, 2.9, 3.0]
    path = write_video(bench.path("vfr.mp4"), bench.frames(len(times)), fps=10, timestamps_s=times)
    return _analyse_accepted(bench, path, note="{notes}")


@case("clip", "rotated phone clip (display matrix 90°)", CLIP_SURFACE, "analysed upright, stored")
def clip_rotated(bench: Bench) -> Outcome:
    frames = [np.ascontiguousarray(np.rot90(frame, 1)) for frame in bench.frames(10, size=(64, 96))]
    path = write_video(bench.path("portrait.mp4"), frames, fps=10, rotation=90)
    return _analyse_accepted(bench, path)


@case("clip", "a two-hour clip (64x36, 1 fps)", CLIP_SURFACE, "analysed in bounded time and memory, stored")
def clip_two_hours(bench: Bench) -> Outcome:
    def frames() -> Iterator[np.ndarray]:
        for i in range(7200):
            frame = np.full((36, 64, 3), 40, np.uint8)
            frame[:, i % 64] = 255
            yield frame

    path = write_video(bench.path("two-hours.mp4"), frames(), fps=1)
    return _analyse_accepted(bench, path)


# ---------------------------------------------------------------------------------------------- images

IMAGE_SURFACE = "CLI classify"


def _classify_refused(bench: Bench, path: Path) -> Outcome:
    db = bench.db()
    return refused(bench.cli("classify", path, db=db), names=path.name, stored=bench.rows(db))


def _classify_accepted(bench: Bench, path: Path, note: str = "") -> Outcome:
    db = bench.db()
    run = bench.cli("classify", path, "--json", db=db)
    if run.returncode != 0:
        return refused(run, code=0)
    [result] = json.loads(run.stdout)
    shown = f"classified: {result['emotion']}, {result['style']}" + (f" ({note})" if note else "")
    return accepted(run, shown, stored=bench.rows(db))


def _image_file(bench: Bench, name: str, data: bytes) -> Path:
    path = bench.path(name)
    path.write_bytes(data)
    return path


@case("image", "truncated PNG", IMAGE_SURFACE, "exit 2, nothing stored")
def image_truncated(bench: Bench) -> Outcome:
    data = _encode(Image.fromarray(bench.frames(1, (128, 128))[0]), "PNG")
    return _classify_refused(bench, _image_file(bench, "cut.png", data[: len(data) // 2]))


@case("image", "1x1 picture", IMAGE_SURFACE, "exit 2 (too small to hold a face), nothing stored")
def image_one_pixel(bench: Bench) -> Outcome:
    return _classify_refused(bench, _image_file(bench, "dot.png", _encode(Image.new("RGB", (1, 1)), "PNG")))


@case("image", "100000x1 strip (header)", IMAGE_SURFACE, "exit 2, refused from the header, nothing stored")
def image_strip(bench: Bench) -> Outcome:
    return _classify_refused(bench, _image_file(bench, "strip.png", png_claiming_size(100_000, 1)))


@case("image", "decompression bomb (100000x100000 header, 100 bytes)", IMAGE_SURFACE, "exit 2, nothing decoded")
def image_bomb(bench: Bench) -> Outcome:
    return _classify_refused(bench, _image_file(bench, "bomb.png", png_claiming_size(100_000, 100_000)))


@case("image", "a 70 MB file named .png", IMAGE_SURFACE, "exit 2, refused before reading it")
def image_huge_file(bench: Bench) -> Outcome:
    path = bench.path("huge.png")
    with path.open("wb") as file:
        file.truncate(70 * 1024 * 1024)
    return _classify_refused(bench, path)


@case("image", "empty file (0 bytes)", IMAGE_SURFACE, "exit 2, nothing stored")
def image_empty(bench: Bench) -> Outcome:
    return _classify_refused(bench, _image_file(bench, "empty.png", b""))


@case("image", "SVG", IMAGE_SURFACE, "exit 2 (not a supported format), nothing stored")
def image_svg(bench: Bench) -> Outcome:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><circle cx="32" cy="32" r="30"/></svg>'
    return _classify_refused(bench, _image_file(bench, "face.svg", svg))


@case("image", "a text file named .png", IMAGE_SURFACE, "exit 2, nothing stored")
def image_text(bench: Bench) -> Outcome:
    return _classify_refused(bench, _image_file(bench, "face.png", b"not a picture\n" * 10))


@case("image", "CMYK JPEG", IMAGE_SURFACE, "classified (converted to RGB), stored")
def image_cmyk(bench: Bench) -> Outcome:
    face = Image.open(io.BytesIO(face_png(128))).convert("CMYK")
    return _classify_accepted(bench, _image_file(bench, "print.jpg", _encode(face, "JPEG")), "CMYK → RGB")


@case("image", "16-bit grayscale PNG", IMAGE_SURFACE, "classified (scaled to 8 bits), stored")
def image_16bit(bench: Bench) -> Outcome:
    gray = np.asarray(Image.open(io.BytesIO(face_png(128))).convert("L"), np.uint16) * 257
    image = Image.fromarray(gray)  # uint16 → mode I;16
    return _classify_accepted(bench, _image_file(bench, "deep.png", _encode(image, "PNG")), "16 → 8 bit")


@case("image", "animated GIF (3 frames)", IMAGE_SURFACE, "classified on its first frame, stored")
def image_animated(bench: Bench) -> Outcome:
    first = Image.open(io.BytesIO(face_png(128))).convert("RGB")
    others = [Image.fromarray(frame) for frame in bench.frames(2, (128, 128))]
    data = _encode(first, "GIF", save_all=True, append_images=others, duration=100, loop=0)
    return _classify_accepted(bench, _image_file(bench, "blink.gif", data), "first frame")


@case("image", "EXIF-rotated JPEG (orientation 6)", IMAGE_SURFACE, "classified upright, stored")
def image_exif(bench: Bench) -> Outcome:
    face = Image.open(io.BytesIO(face_png(128))).convert("RGB").rotate(90, expand=True)  # stored turned
    exif = Image.Exif()
    exif[0x0112] = 6  # display: rotate 90° clockwise
    return _classify_accepted(bench, _image_file(bench, "phone.jpg", _encode(face, "JPEG", exif=exif)), "upright")


@case("image", "1x1 picture to map into another style", "CLI map", "exit 2 (too small), nothing written")
def image_map_tiny(bench: Bench) -> Outcome:
    source = _image_file(bench, "dot.png", _encode(Image.new("RGB", (1, 1)), "PNG"))
    out = bench.path("mapped.png")
    outcome = refused(bench.cli("map", source, "--to", "anime", "--out", out), names="dot.png")
    return Outcome(outcome.passed and not out.exists(), outcome.shown, outcome.detail + ", no file written")


# ---------------------------------------------------------------------------------------------- manifests

MANIFEST_SURFACE = "CLI library add"


def _manifest(bench: Bench, text: str, name: str = "labels.csv") -> Path:
    path = bench.path(name)
    path.write_text(text)
    return path


def _add_refused(bench: Bench, path: Path) -> Outcome:
    db = bench.db()
    return refused(bench.cli("library", "add", path, db=db), names=path.name, stored=bench.rows(db))


@case("manifest", "no path column", MANIFEST_SURFACE, "exit 2, nothing stored")
def manifest_no_path(bench: Bench) -> Outcome:
    return _add_refused(bench, _manifest(bench, "file,emotion\nface.png,anger\n"))


@case("manifest", "a million rows", MANIFEST_SURFACE, "exit 2 before parsing it all, nothing stored")
def manifest_million(bench: Bench) -> Outcome:
    return _add_refused(bench, _manifest(bench, "path\n" + "face.png\n" * 1_000_000))


@case("manifest", "an emotion that does not exist (row 3)", MANIFEST_SURFACE, "exit 2 naming the row, nothing stored")
def manifest_bad_emotion(bench: Bench) -> Outcome:
    return _add_refused(bench, _manifest(bench, "path,emotion\na.png,anger\nb.png,smug\n"))


@case("manifest", "binary bytes named .csv", MANIFEST_SURFACE, "exit 2, nothing stored")
def manifest_binary(bench: Bench) -> Outcome:
    path = bench.path("labels.csv")
    path.write_bytes(b"\xff\xfe\x00\x01" + np.random.default_rng(2).bytes(4000))
    return _add_refused(bench, path)


@case("manifest", "rows whose pictures do not exist", MANIFEST_SURFACE, "exit 2, each path named, nothing stored")
def manifest_missing_files(bench: Bench) -> Outcome:
    db = bench.db()
    path = _manifest(bench, "path,emotion\nnot-here.png,anger\nnor-here.png,joy\n".replace("joy", "happiness"))
    run = bench.cli("library", "add", path, db=db)
    stored = bench.rows(db)
    passed = run.returncode == 2 and "not-here.png" in run.stderr and "nor-here.png" in run.stderr and stored == 0
    return Outcome(passed and "Traceback" not in run.stderr, _short(run.last_line), f"exit {run.returncode}")


@case("manifest", "spreadsheet formulas as character names", MANIFEST_SURFACE, "stored as text, never a formula")
def manifest_formulas(bench: Bench) -> Outcome:
    from facecast.library import Library

    path = _manifest(bench, 'path,character\nvillain.png,"=HYPERLINK(""http://evil.example"",""x"")"\n')
    (path.parent / "villain.png").write_bytes(face_png())
    db = bench.db()
    run = bench.cli("library", "add", path, db=db)
    with Library.open(db) as library:
        characters = library.store.library.items()["character"].tolist()
    ok = characters == ['=HYPERLINK("http://evil.example","x")']
    return accepted(run, f"stored verbatim as the name {characters[0]!r}" if ok else str(characters), ok=ok)


# ---------------------------------------------------------------------------------------------- search strings

SEARCH_SURFACE = "CLI search"


def _search(bench: Bench, text: str, label: str) -> Outcome:
    run = bench.cli("search", "--text", text, "--top", "3", "--json", db=bench.library_db)
    if run.returncode != 0:
        return refused(run, code=0)
    results = json.loads(run.stdout)["results"]
    return accepted(run, f"{len(results)} results for {label}", ok=len(results) == 3)


@case("search", "quotes and SQL", SEARCH_SURFACE, "results (parameters, never SQL text)")
def search_sql(bench: Bench) -> Outcome:
    return _search(bench, 'angry\'; DROP TABLE library_items; -- "face"', "the quoted text")


@case("search", "10,000 characters", SEARCH_SURFACE, "results (the first 32 tokens count)")
def search_long(bench: Bench) -> Outcome:
    return _search(bench, ("a furious cartoon villain " * 400)[:10_000], "10,000 characters")


@case("search", "control characters (argv cannot carry NUL; the app case sends one)", SEARCH_SURFACE, "results")
def search_control(bench: Bench) -> Outcome:
    return _search(bench, "angry\x01\x07face\x1b[31m", "text with control characters")


@case("search", "right-to-left text (Arabic, Hebrew)", SEARCH_SURFACE, "results")
def search_rtl(bench: Bench) -> Outcome:
    return _search(bench, "وجه غاضب פנים כועסות", "right-to-left text")


@case("search", "emoji only", SEARCH_SURFACE, "results")
def search_emoji(bench: Bench) -> Outcome:
    return _search(bench, "😡😡😡", "three emoji")


@case("search", "only spaces", SEARCH_SURFACE, "exit 2 with a clear message")
def search_blank(bench: Bench) -> Outcome:
    return refused(bench.cli("search", "--text", "   ", db=bench.library_db))


# ---------------------------------------------------------------------------------------------- ids


@case("id", "negative id", "CLI library remove", "exit 2 (nothing removed), the id named")
def id_negative(bench: Bench) -> Outcome:
    run = bench.cli("library", "remove", "--db", bench.library_db, "--", "-5")
    passed = run.returncode == 2 and "no item -5" in run.stderr and "Traceback" not in run.stderr
    return Outcome(passed, _short(run.last_line), f"exit {run.returncode}")


@case("id", "an id past 64 bits", "CLI library label", "exit 2 naming the id")
def id_huge(bench: Bench) -> Outcome:
    return refused(bench.cli("library", "label", "99999999999999999999", "--emotion", "anger", db=bench.library_db))


@case("id", "not a number", "CLI library remove", "exit 2 (argument error)")
def id_text(bench: Bench) -> Outcome:
    return refused(bench.cli("library", "remove", "abc", db=bench.library_db))


@case("id", "an analysis that does not exist", "CLI library add --analysis", "exit 2 naming the id, nothing stored")
def id_absent_analysis(bench: Bench) -> Outcome:
    db = bench.db()
    return refused(bench.cli("library", "add", "--analysis", "123456", db=db), names="123456", stored=bench.rows(db))


@case("id", "a result id that was not shown", "CLI search --select", "exit 2, no feedback stored")
def id_select_unshown(bench: Bench) -> Outcome:
    before = bench.rows(bench.library_db)
    run = bench.cli("search", "--text", "angry", "--user", "ana", "--select", "999999", db=bench.library_db)
    return refused(run, names="999999", stored=bench.rows(bench.library_db) - before)


# ---------------------------------------------------------------------------------------------- markup


def _analyse_named(bench: Bench, name: str) -> tuple[Path, dict]:
    from training.data.clips import sample_clip_script, write_clip

    db = bench.db()
    clip = write_clip(sample_clip_script(11, duration_s=3.0), bench.path(name))
    run = bench.cli("analyze", clip, "--json", "--quiet", db=db)
    if run.returncode != 0:
        raise RuntimeError(run.stderr)
    return db, json.loads(run.stdout)[0]


@case("markup", "<script> in a clip name, exported as HTML", "HTML report export", "shown as text, no live markup")
def markup_html_report(bench: Bench) -> Outcome:
    from facecast.clips.report import EngagementReport
    from facecast.clips.report_html import report_html

    _, document = _analyse_named(bench, "<script>alert(1)<script>.mp4")
    html = report_html(EngagementReport.from_dict(document))
    ok = "<script>alert" not in html and "&lt;script&gt;alert(1)" in html
    return Outcome(ok, "the name appears as &lt;script&gt;alert(1)… in the HTML", "report rendered")


@case("markup", "a formula as a clip name, exported as CSV", "app History CSV", "the cell starts with ' (text)")
def markup_csv(bench: Bench) -> Outcome:
    from facecast.clips.history import history_csv
    from facecast.store import open_store

    db, _ = _analyse_named(bench, "=cmd|' -C calc'!A0.mp4")
    with open_store(db, read_only=True) as store:
        text = history_csv(store.analyses.newest()).decode()
    cell = text.splitlines()[1].split(",")[1]
    ok = cell.startswith("\"'=cmd") or cell.startswith("'=cmd")
    return Outcome(ok, f"name cell written as {cell}", "CSV written")


@case("markup", "<img onerror> as a character name", "app Expression library", "shown as text")
def markup_app_name(bench: Bench) -> Outcome:
    with _app(bench, bench.library_db) as run_page:
        db = bench.library_db
        from facecast.store import open_store

        with open_store(db) as store, store.transaction() as transaction:
            transaction.execute("UPDATE library_items SET character = ?", ['<img src=x onerror="alert(1)">'])
        app = run_page("expression_library")
        app.text_input[0].set_value("angry")
        _button(app, "Search").click()
        app.run()
        shown = [m.value for m in app.markdown] + [c.value for c in app.caption]
    hit = [text for text in shown if "onerror" in text]
    unsafe = _unsafe_html_in_app()
    ok = not app.exception and not unsafe
    where = "the name is shown as literal text" if hit else "the item's card did not list the name"
    return Outcome(ok, f"{where}; no page passes text to unsafe_allow_html", f"{len(app.exception)} exceptions")


def _unsafe_html_in_app() -> list[str]:
    return [str(p) for p in (PROJECT_ROOT / "app").rglob("*.py") if "unsafe_allow_html=True" in p.read_text()]


# ---------------------------------------------------------------------------------------------- store


@case("store", "store file is random bytes", "CLI library stats", "exit 1 naming the file, file untouched")
def store_corrupt(bench: Bench) -> Outcome:
    db = bench.db()
    db.write_bytes(np.random.default_rng(3).bytes(100_000))
    before = db.read_bytes()
    outcome = refused(bench.cli("library", "stats", db=db), code=1, names=str(db))
    return Outcome(outcome.passed and db.read_bytes() == before, outcome.shown, outcome.detail + ", file untouched")


@case("store", "store of a newer schema (a newer facecast wrote it)", "CLI library stats", "exit 1, file untouched")
def store_newer(bench: Bench) -> Outcome:
    import duckdb

    from facecast.store import open_store

    db = bench.db()
    with open_store(db):
        pass
    with duckdb.connect(str(db)) as connection:
        connection.execute("INSERT INTO schema_version (version, description) VALUES (99, 'from the future')")
    before = db.read_bytes()
    outcome = refused(bench.cli("library", "stats", db=db), code=1, names="99")
    return Outcome(outcome.passed and db.read_bytes() == before, outcome.shown, outcome.detail + ", file untouched")


@case("store", "store file held open by another program", "CLI library stats", "exit 1 naming the holder")
def store_held(bench: Bench) -> Outcome:
    db = bench.db()
    from facecast.store import open_store

    with open_store(db):
        pass
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(db)!r}); print('open', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        holder.stdout.readline()
        run = bench.cli("library", "stats", db=db, FACECAST_STORE_WAIT_S="2")
    finally:
        holder.kill()
        holder.wait()
    return refused(run, code=1, names=f"process {holder.pid}")


@case("store", "store path is a folder", "CLI library stats", "exit 1 naming it")
def store_folder(bench: Bench) -> Outcome:
    db = bench.path("store.duckdb")
    db.mkdir()
    return refused(bench.cli("library", "stats", db=db), code=1, names="is a folder")


@case("store", "a full disk during analysis (the store on a 3 MB tmpfs)", CLIP_SURFACE, "exit 1, nothing half stored")
def store_full_disk(bench: Bench) -> Outcome:
    from facecast.store import open_store

    with _small_filesystem(bench, megabytes=3) as (folder, how, limit):
        db = folder / "facecast.duckdb"
        with open_store(db):
            pass
        if limit is None:  # a real tmpfs: fill it to the last byte
            filler = folder / "filler"
            with filler.open("wb") as file:
                try:
                    while True:
                        file.write(b"\0" * 65536)
                        file.flush()
                except OSError:
                    pass
            run = bench.cli("analyze", bench.good_clip, "--quiet", db=db)
            filler.unlink()
        else:  # the CLI may not grow any file past what the store holds now + 64 kB
            run = bench.cli("analyze", bench.good_clip, "--quiet", db=db, file_size_limit=db.stat().st_size)
        stored = bench.rows(db)  # with the space back, the store opens and holds nothing of the failed run
        outcome = refused(run, code=1, stored=stored)
        return Outcome(outcome.passed, outcome.shown, f"{outcome.detail} ({how}); the store opens afterwards")


@contextmanager
def _small_filesystem(bench: Bench, megabytes: int) -> Iterator[tuple[Path, str, int | None]]:
    """A folder that fills up: a real tmpfs where this process may mount one (root with CAP_SYS_ADMIN), else an
    ordinary folder and a size limit on the files the CLI process writes (RLIMIT_FSIZE: writes past it fail with
    EFBIG, as they fail with ENOSPC on a full disk)."""
    folder = bench.path("small-disk")
    folder.mkdir()
    try:
        mounted = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)], capture_output=True
            ).returncode
            == 0
        )
    except OSError:  # no mount command
        mounted = False
    if not mounted:
        yield folder, "no tmpfs could be mounted here: a file size limit instead", 0
        return
    try:
        yield folder, f"{megabytes} MB tmpfs", None
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


# ---------------------------------------------------------------------------------------------- served models


def _infer(bench: Bench, model: str, inputs: dict[str, np.ndarray]) -> Outcome:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    client = httpclient.InferenceServerClient(bench.triton_url.removeprefix("http://"))
    tensors = []
    for name, array in inputs.items():
        tensor = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    try:
        client.infer(model, tensors)
    except InferenceServerException as error:
        message = error.message()
        internal = any(word in message for word in ("Gather", "onnxruntime", "Traceback", "ORT"))
        return Outcome(not internal, _short(message), "request refused")
    finally:
        client.close()
    return Outcome(False, "answered", "a bad request was answered")


def _text_inputs() -> dict[str, np.ndarray]:
    from facecast.tokenizer import tokenize

    ids, mask = tokenize(["an angry face"])
    return {"input_ids": ids, "attention_mask": mask}


@case("model", "token ids outside the vocabulary", "text_embedder", "refused, naming the input and range")
def model_ids(bench: Bench) -> Outcome:
    inputs = _text_inputs()
    inputs["input_ids"][0, 2] = 50_000_000
    return _infer(bench, "text_embedder", inputs)


@case("model", "NaN in the features", "engagement", "refused, naming the input")
def model_nan(bench: Bench) -> Outcome:
    from facecast.engagement_features import FRAME_FEATURE_DIM, MAX_CHARACTERS, MAX_STEPS

    features = np.zeros((1, MAX_CHARACTERS, MAX_STEPS, FRAME_FEATURE_DIM), np.float32)
    features[0, 0, 0, 0] = np.nan
    return _infer(
        bench, "engagement", {"features": features, "mask": np.ones((1, MAX_CHARACTERS, MAX_STEPS), np.float32)}
    )


@case("model", "a style weight of 5", "style_mapper", "refused, naming the input and range")
def model_style(bench: Bench) -> Outcome:
    return _infer(
        bench,
        "style_mapper",
        {
            "image": np.zeros((1, 128, 128, 3), np.uint8),
            "target_style": np.array([[5, 0, 0, 0]], np.float32),
            "params": np.zeros((1, 4), np.float32),
            "params_mask": np.zeros((1, 4), np.float32),
        },
    )


@case("model", "wrong shape (32x32 picture for a 64x64 input)", "expression_encoder", "refused by Triton, shape named")
def model_shape(bench: Bench) -> Outcome:
    return _infer(bench, "expression_encoder", {"image": np.zeros((1, 32, 32, 3), np.uint8)})


@case("model", "wrong dtype (float pixels)", "expression_encoder", "refused by Triton, dtype named")
def model_dtype(bench: Bench) -> Outcome:
    return _infer(bench, "expression_encoder", {"image": np.zeros((1, 64, 64, 3), np.float32)})


@case("model", "a batch over max_batch_size (65)", "text_embedder", "refused by Triton")
def model_batch(bench: Bench) -> Outcome:
    inputs = {name: np.repeat(array, 65, axis=0) for name, array in _text_inputs().items()}
    return _infer(bench, "text_embedder", inputs)


@case("model", "a model that is not served", "Triton", "refused, the model named")
def model_unknown(bench: Bench) -> Outcome:
    return _infer(bench, "face_swapper", {"image": np.zeros((1, 64, 64, 3), np.uint8)})


# ---------------------------------------------------------------------------------------------- app


@contextmanager
def _app(bench: Bench, db: Path) -> Iterator[Callable[[str], object]]:
    """Run app pages with AppTest against the bench's Triton and `db`."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    saved = {key: os.environ.get(key) for key in ("FACECAST_TRITON_URLS", "FACECAST_DB", "FACECAST_DEMO_DIR")}
    os.environ.update(
        FACECAST_TRITON_URLS=bench.triton_url, FACECAST_DB=str(db), FACECAST_DEMO_DIR=str(bench.folder / "demo")
    )
    st.cache_resource.clear()

    def run_page(page: str) -> AppTest:
        app = AppTest.from_file(str(PROJECT_ROOT / "app" / "pages" / f"{page}.py"), default_timeout=180)
        app.run()
        return app

    try:
        yield run_page
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        st.cache_resource.clear()


def _button(app: object, label: str) -> object:
    return next(button for button in app.button if button.label == label)


def _page_messages(app: object) -> list[str]:
    return [element.value for kind in ("error", "warning") for element in getattr(app, kind)]


@case("app", "random bytes uploaded as a clip", "app Analyze clips", "an error naming the file, nothing stored")
def app_bad_clip(bench: Bench) -> Outcome:
    db = bench.db()
    with _app(bench, db) as run_page:
        app = run_page("analyze_clips")
        app.get("file_uploader")[0].set_value([("noise.mp4", np.random.default_rng(5).bytes(50_000), "video/mp4")])
        app.button[0].click()
        app.run()
        messages = _page_messages(app)
    stored = bench.rows(db)
    ok = not app.exception and any("noise.mp4" in m for m in messages) and stored == 0
    return Outcome(ok, _short(messages[0] if messages else "no message"), f"{stored} rows stored")


@case("app", "an 11 MB picture in the Classify faces uploader", "app Classify faces", "refused before decoding")
def app_big_picture(bench: Bench) -> Outcome:
    db = bench.db()
    with _app(bench, db) as run_page:
        app = run_page("classify_faces")
        app.get("file_uploader")[0].set_value([("poster.png", b"\0" * (11 * 1024 * 1024), "image/png")])
        app.button[0].click()
        app.run()
        messages = _page_messages(app)
    ok = not app.exception and any("poster.png is 11.5 MB" in m for m in messages)
    return Outcome(ok, _short(next((m for m in messages if "poster" in m), "no message")), "nothing decoded")


@case("app", "a decompression bomb as the reference face", "app Expression library", "a warning, no search")
def app_bomb_reference(bench: Bench) -> Outcome:
    with _app(bench, bench.library_db) as run_page:
        app = run_page("expression_library")
        uploaders = app.get("file_uploader")
        uploaders[-1].set_value(("bomb.png", png_claiming_size(100_000, 100_000), "image/png"))
        _button(app, "Search").click()
        app.run()
        messages = _page_messages(app)
    ok = not app.exception and any("too large" in m for m in messages)
    return Outcome(ok, _short(next((m for m in messages if "large" in m), str(messages))), "no search run")


@case("app", "a 10,000-character search with null bytes", "app Expression library", "results or a clear warning")
def app_long_search(bench: Bench) -> Outcome:
    with _app(bench, bench.library_db) as run_page:
        app = run_page("expression_library")
        app.text_input[0].set_value("angry\x00 " * 1250)
        _button(app, "Search").click()
        app.run()
        messages = _page_messages(app)
        headings = [h.value for h in app.subheader] + [h.value for h in app.header]
    ok = not app.exception and (bool(messages) or any("results" in h for h in headings))
    shown = messages[0] if messages else next((h for h in headings if "results" in h), "nothing")
    return Outcome(ok, _short(shown), f"{len(app.exception)} exceptions")


# ---------------------------------------------------------------------------------------------- running


def run_cases(
    bench: Bench,
    groups: tuple[str, ...] = GROUPS,
    say: Callable[[str], None] = print,
    name_contains: str | None = None,
) -> list[tuple[Case, Outcome]]:
    results = []
    for item in CASES:
        if item.group not in groups or (name_contains and name_contains not in item.name):
            continue
        began = time.monotonic()
        try:
            outcome = item.run(bench)
        except Exception as error:  # noqa: BLE001 - a case that breaks is a finding, reported in the table
            outcome = Outcome(False, _short(f"the case itself failed: {type(error).__name__}: {error}"), "")
        # the bench's temporary folders say nothing to a reader: show file names as the user gave them
        shown = re.sub(rf"{re.escape(str(bench.folder))}/(case-\d+/)?", "", outcome.shown)
        outcome = Outcome(outcome.passed, shown, outcome.detail)
        results.append((item, outcome))
        mark = "ok " if outcome.passed else "BAD"
        say(f"adversarial: {mark} {item.group:<8} {item.name} ({time.monotonic() - began:.1f} s): {outcome.shown}")
    return results


def table(results: list[tuple[Case, Outcome]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")

    passed = sum(outcome.passed for _, outcome in results)
    lines = [
        f"{len(results)} kinds of bad input, {passed} handled as they must be"
        + ("." if passed == len(results) else f"; **{len(results) - passed} not**: see the rows marked ✗."),
        "",
    ]
    number = 0
    for group in GROUPS:
        rows = [(c, o) for c, o in results if c.group == group]
        if not rows:
            continue
        lines += [
            f"**{GROUP_TITLES[group]}**",
            "",
            "| # | input | where | must | what the user saw | outcome | |",
            "|---|---|---|---|---|---|---|",
        ]
        for item, outcome in rows:
            number += 1
            lines.append(
                f"| {number} | {cell(item.name)} | {cell(item.surface)} | {cell(item.expected)} | "
                f"{cell(outcome.shown)} | {cell(outcome.detail)} | {'✓' if outcome.passed else '✗'} |"
            )
        lines.append("")
    return "\n".join(lines)


@contextmanager
def serving(repository: Path, folder: Path) -> Iterator[Settings]:
    from facecast.serving import process

    with process.loopback_server(repository, folder / "run", timeout=180) as (settings, _):
        yield settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=PROJECT_ROOT / "model_repository")
    parser.add_argument("--only", nargs="+", choices=GROUPS, help="run these groups only (the doc is not written)")
    parser.add_argument("--case", help="run the cases whose name contains this (the doc is not written)")
    args = parser.parse_args(argv)
    from benchmarks.doc_markers import write_section

    with (
        tempfile.TemporaryDirectory(prefix="facecast-adversarial-") as folder,
        serving(args.repository, Path(folder)) as settings,
    ):
        results = run_cases(Bench(Path(folder), settings), tuple(args.only or GROUPS), name_contains=args.case)
    body = table(results)
    print(body)
    if not args.only and not args.case:
        command = "python -m benchmarks.adversarial"
        write_section(RELIABILITY_MD, "adversarial", f"Written by `{command}`.\n\n{body}", title="# Reliability")
        print(f"wrote {RELIABILITY_MD}")
    if not all(outcome.passed for _, outcome in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
