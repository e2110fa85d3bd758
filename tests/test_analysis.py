"""`facecast analyze` end to end on a real Triton (face_detector, expression_encoder, engagement), real video files
decoded with PyAV and a real DuckDB file: the happy path on a clip the generator did not make, the stored report
read back, de-duplication by content hash, and every kind of bad input from issue 3."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from facecast.clips.pipeline import ClipAnalyzer
from facecast.clips.report import EngagementReport
from facecast.media.video import AnalysisCancelled
from facecast.store import open_store
from facecast.vocab import AUDIENCE_GROUPS, ENGAGEMENT_CLASSES
from tests.clipmaker import emoji_over_photo, photo_only
from tests.conftest import settings_environment

pytestmark = pytest.mark.triton


def run_cli(settings, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    environment = {**os.environ, **settings_environment(settings)}
    return subprocess.run(
        [sys.executable, "-m", "facecast", *args], capture_output=True, text=True, env=environment, timeout=timeout
    )


@pytest.fixture(scope="module")
def emoji_clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    return emoji_over_photo(
        folder / "two-emoji-over-coffee.mp4", [("grin|sob", "twemoji"), ("rage", "noto")], seconds=6.0
    )


def stored_count(db: Path) -> int:
    if not db.exists():
        return 0
    with open_store(db) as store:
        return len(store.analyses.newest(limit=None))


def test_analyze_a_clip_the_generator_did_not_make(full_server, emoji_clip, tmp_path):
    db = tmp_path / "facecast.duckdb"
    result = run_cli(full_server, "analyze", str(emoji_clip), "--json", "--thumbnails", "--db", str(db))
    assert result.returncode == 0, result.stderr
    [document] = json.loads(result.stdout)
    report = EngagementReport.from_dict(document)

    assert report.faces_found
    assert report.clip.duration_s == pytest.approx(6.0, abs=0.2) and (report.clip.width, report.clip.height) == (
        640,
        360,
    )
    for scored in (report.engagement, report.resonance, report.shareability, *report.appeal.values()):
        assert 0.0 <= scored.low <= scored.value <= scored.high <= 1.0
        assert scored.high > scored.low, "every number carries an interval"
    assert set(report.appeal) == set(AUDIENCE_GROUPS)
    assert report.engagement_class in ENGAGEMENT_CLASSES
    assert sum(report.class_probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    assert len(report.curve) == 6 and [p.t_s for p in report.curve] == [0, 1, 2, 3, 4, 5]
    # Two emoji glide across the photo for the whole clip: two characters, each seen most of the time.
    assert 2 <= len(report.characters) <= 4
    long_tracks = [c for c in report.characters if c.screen_time_s >= 3.0]
    assert len(long_tracks) == 2, [(c.track_id, c.screen_time_s) for c in report.characters]
    assert all(c.timeline for c in long_tracks)
    assert report.key_moments, "key moments say what drove the score"
    for moment in report.key_moments:
        thumbnail = Image.open(io.BytesIO(base64.b64decode(moment.thumbnail_png_b64)))
        assert thumbnail.size == (64, 64) and 0 <= moment.t_s <= 6.0
    assert report.counts["frames_sampled"] >= 24 and report.counts["faces_encoded"] >= 40
    assert set(report.timings_s) >= {"decode", "detect", "track", "encode", "engagement", "total"}

    # The stored report reads back as the same document, with its per-face rows.
    with open_store(db) as store:
        [row] = store.analyses.newest(limit=None).itertuples()
        stored = store.analyses.get(row.id)
        assert EngagementReport.from_dict(json.loads(stored.report_json)) == report
        faces = store.analyses.faces(row.id)
    assert len(faces) == sum(c.observations for c in report.characters) <= report.counts["faces_encoded"]
    assert set(faces["track_id"]) == {c.track_id for c in report.characters}

    # The same content is recognised by hash and not analysed twice unless asked.
    again = run_cli(full_server, "analyze", str(emoji_clip), "--json", "--db", str(db))
    assert again.returncode == 0 and "already analysed" in again.stderr
    assert json.loads(again.stdout)[0]["engagement"] == document["engagement"]
    assert stored_count(db) == 1
    forced = run_cli(full_server, "analyze", str(emoji_clip), "--force", "--quiet", "--db", str(db))
    assert forced.returncode == 0, forced.stderr
    assert "engagement" in forced.stdout and stored_count(db) == 2


def test_human_readable_report(full_server, emoji_clip, tmp_path):
    result = run_cli(full_server, "analyze", str(emoji_clip), "--no-store", "--quiet")
    assert result.returncode == 0, result.stderr
    for words in (
        "engagement",
        "resonance",
        "shareability",
        "appeal",
        "per second",
        "character",
        "key moment",
        "real time",
    ):
        assert words in result.stdout


def make_bad_inputs(folder: Path, good_clip: Path) -> dict[str, Path]:
    bad = {"empty.mp4": b"", "notes.mp4": b"this is a text file, not a video\n" * 10}
    paths = {}
    for name, data in bad.items():
        (folder / name).write_bytes(data)
        paths[name] = folder / name
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(good_clip.read_bytes()[:2000])
    paths["truncated.mp4"] = truncated
    png = folder / "still.png"
    Image.new("RGB", (64, 64), "red").save(png)
    paths["still.png"] = png
    audio = folder / "audio-only.mp4"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (np.sin(np.linspace(0, 400, 16000)) * 0.3).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    paths["audio-only.mp4"] = audio
    return paths


def test_bad_inputs_get_a_clear_message_and_store_nothing(full_server, emoji_clip, tmp_path):
    db = tmp_path / "facecast.duckdb"
    for name, path in make_bad_inputs(tmp_path, emoji_clip).items():
        result = run_cli(full_server, "analyze", str(path), "--quiet", "--db", str(db))
        assert result.returncode == 2, (name, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert str(path) in result.stderr or path.name in result.stderr, (name, result.stderr)
    assert stored_count(db) == 0
    missing = run_cli(full_server, "analyze", str(tmp_path / "nope.mp4"), "--db", str(db))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_a_clip_with_no_faces_says_so(full_server, tmp_path):
    clip = photo_only(tmp_path / "coffee-pan.mp4")
    result = run_cli(full_server, "analyze", str(clip), "--json", "--db", str(tmp_path / "db.duckdb"))
    assert result.returncode == 0, result.stderr
    [report] = json.loads(result.stdout)
    assert report["faces_found"] is False and report["engagement"] is None
    assert any("no faces" in note for note in report["notes"])


def test_a_one_frame_clip(full_server, tmp_path):
    clip = emoji_over_photo(tmp_path / "one-frame.mp4", [("grin", "twemoji")], seconds=1 / 12, face_px=150)
    result = run_cli(full_server, "analyze", str(clip), "--json", "--no-store")
    assert result.returncode == 0, result.stderr
    [report] = json.loads(result.stdout)
    assert report["counts"]["frames_sampled"] == 1
    assert report["faces_found"] and 0 <= report["engagement"]["value"] <= 1


def test_a_clip_longer_than_one_window(full_server, tmp_path):
    """70 s = three 32-s windows: tracks continue across windows and the curve covers every second."""
    clip = emoji_over_photo(
        tmp_path / "long.mp4", [("smile|fearful|smile", "twemoji")], seconds=70, fps=6, size=(320, 180), face_px=70
    )
    analyzer = ClipAnalyzer.for_urls([full_server.triton_url])
    report = analyzer.analyze(clip).report
    assert report.counts["windows"] == 3
    assert len(report.curve) == 70
    assert max(c.screen_time_s for c in report.characters) > 50


def test_cancelling_stops_the_analysis(full_server, emoji_clip):
    analyzer = ClipAnalyzer.for_urls([full_server.triton_url])
    cancel = threading.Event()

    def progress(_stage: str, fraction: float) -> None:
        if fraction > 0.3:
            cancel.set()

    with pytest.raises(AnalysisCancelled):
        analyzer.analyze(emoji_clip, progress=progress, cancel=cancel)


def test_triton_down_is_one_clear_line(emoji_clip, tmp_path):
    from facecast.config import Settings
    from facecast.serving.process import find_free_ports

    [port] = find_free_ports(1)
    down = Settings().with_overrides(http_port=port, db_path=tmp_path / "db.duckdb")
    result = run_cli(down, "analyze", str(emoji_clip))
    assert result.returncode == 1
    assert "Triton is not reachable" in result.stderr and "facecast serve" in result.stderr
    assert "Traceback" not in result.stderr


def _comparable(report: EngagementReport) -> dict:
    """A report without what depends on the run rather than the clip (timings)."""
    document = report.as_dict(thumbnails=False)
    document.pop("timings_s")
    return document


def test_two_clips_at_once_on_one_analyzer_give_their_solo_results(full_server, emoji_clip, tmp_path):
    """The app shares one analyzer across browser sessions: a clip without faces analysed while a clip with faces is
    in flight must still say "no faces", and the face clip must keep its own tracks (per-run state, not shared)."""
    no_faces = photo_only(tmp_path / "coffee-pan.mp4", seconds=6.0)
    analyzer = ClipAnalyzer.for_urls([full_server.triton_url])
    solo = {path: _comparable(analyzer.analyze(path).report) for path in (emoji_clip, no_faces)}
    assert solo[emoji_clip]["faces_found"] and not solo[no_faces]["faces_found"]

    for _ in range(2):
        start = threading.Barrier(2)
        together: dict[Path, dict] = {}
        failures: list[BaseException] = []

        # this round's barrier and result holders are bound per call, not looked up late from the loop
        def analyse(
            path: Path, start: threading.Barrier, together: dict[Path, dict], failures: list[BaseException]
        ) -> None:
            try:
                start.wait(timeout=30)
                together[path] = _comparable(analyzer.analyze(path).report)
            except BaseException as error:  # handed to the test's thread: an assert in a thread only warns
                failures.append(error)

        threads = [
            threading.Thread(target=analyse, args=(path, start, together, failures)) for path in (emoji_clip, no_faces)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=240)
        assert not failures, failures
        assert not any(thread.is_alive() for thread in threads)
        for path in (emoji_clip, no_faces):
            assert together[path]["faces_found"] == solo[path]["faces_found"], path.name
            assert together[path]["counts"] == solo[path]["counts"], path.name
            assert [c["track_id"] for c in together[path]["characters"]] == [
                c["track_id"] for c in solo[path]["characters"]
            ], path.name
            if solo[path]["engagement"] is not None:
                # Triton may batch the two clips' requests together; scores agree to float precision.
                assert together[path]["engagement"]["value"] == pytest.approx(
                    solo[path]["engagement"]["value"], abs=1e-4
                )
