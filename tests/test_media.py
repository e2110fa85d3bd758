"""facecast.media.video on real files: every file here is encoded by PyAV (through write_video or, for damaged and
audio-only files, directly) into tmp_path and decoded back."""

from __future__ import annotations

import threading
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecast.media import video
from facecast.media.video import (
    AnalysisCancelled,
    EmptyMediaFile,
    MediaError,
    NotAVideo,
    NoVideoStream,
    SamplingStats,
    TruncatedVideo,
    UnsupportedCodec,
    probe_video,
    sample_frames,
)
from facecast.media.video_writer import write_video
from tests.badfiles import audio_only, index_last_mp4

CONTAINERS = [(".mp4", "h264"), (".mov", "h264"), (".mkv", "h264"), (".webm", "vp9"), (".gif", "gif")]


# ------------------------------------------------------------------------------------------------ helpers


def scene(index: int, height: int = 64, width: int = 96) -> np.ndarray:
    """A picture that differs from frame to frame (a bar that moves) on a smooth background, easy to encode."""
    rows, cols = np.mgrid[0:height, 0:width]
    frame = np.stack(
        [cols * 255 // max(1, width - 1), rows * 255 // max(1, height - 1), np.full_like(rows, 90)], axis=-1
    ).astype(np.uint8)
    bar = (index * 7) % max(1, width - 8)
    frame[:, bar : bar + 8] = (250, 250, 250)
    return frame


def solid(colour: tuple[int, int, int], height: int = 64, width: int = 96) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (height, width, 3)).copy()


def mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def noisy_frames(count: int, seed: int = 0, height: int = 64, width: int = 96) -> list[np.ndarray]:
    """Frames that do not compress, so the bytes of a file spread evenly over its frames."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


# ------------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("suffix,codec", CONTAINERS)
def test_round_trip_each_container(tmp_path, suffix, codec):
    frames = [scene(i) for i in range(20)]
    path = write_video(tmp_path / f"clip{suffix}", frames, fps=10)

    info = probe_video(path)
    assert info.codec == codec
    assert (info.coded_width, info.coded_height) == (96, 64)
    assert (info.width, info.height, info.rotation_degrees) == (96, 64, 0)
    assert info.frame_count == 20
    assert info.duration_s == pytest.approx(2.0, abs=0.02)
    assert info.average_fps == pytest.approx(10.0, rel=0.01)
    assert not info.has_audio and not info.variable_frame_rate

    # base rate = the file's rate: every frame is kept, on its own timestamp, with its own picture
    stats = SamplingStats()
    sampled = list(sample_frames(path, base_rate_hz=10, max_rate_hz=10, stats=stats))
    assert [s.index for s in sampled] == list(range(20))
    assert [s.t for s in sampled] == pytest.approx([i / 10 for i in range(20)], abs=0.011)
    assert stats.frames_decoded == 20 and stats.frames_sampled == 20
    assert not stats.truncated and stats.warning is None
    tolerance = 12 if suffix == ".gif" else 6  # GIF: 256-colour palette
    for original, kept in zip(frames, sampled):
        assert kept.image.dtype == np.uint8 and kept.image.shape == (64, 96, 3)
        assert mean_abs_error(kept.image, original) < tolerance
    # and a frame is closer to its own original than to its neighbour's
    assert mean_abs_error(sampled[5].image, frames[5]) < mean_abs_error(sampled[5].image, frames[6])


def test_odd_frame_size_is_padded_for_h264_and_kept_for_gif(tmp_path):
    frames = [scene(i, height=47, width=63) for i in range(3)]
    assert (
        probe_video(write_video(tmp_path / "odd.mp4", frames, 10)).width,
        probe_video(tmp_path / "odd.mp4").height,
    ) == (64, 48)
    assert (
        probe_video(write_video(tmp_path / "odd.gif", frames, 10)).width,
        probe_video(tmp_path / "odd.gif").height,
    ) == (63, 47)
    first = next(sample_frames(tmp_path / "odd.mp4"))
    assert mean_abs_error(first.image[:47, :63], frames[0]) < 6  # padding repeated the edge, content unmoved


def test_max_long_side_downscales_keeping_aspect(tmp_path):
    path = write_video(tmp_path / "wide.mp4", [scene(i, height=100, width=400) for i in range(4)], 10)
    assert next(sample_frames(path, max_long_side=100)).image.shape == (25, 100, 3)
    assert next(sample_frames(path, max_long_side=None)).image.shape == (100, 400, 3)


# ------------------------------------------------------------------------------------------------ rotation


def upright_portrait() -> np.ndarray:
    """A portrait picture (64 wide, 96 high) with a red block in the top-left corner and blue at the bottom."""
    image = solid((128, 128, 128), height=96, width=64)
    image[:16, :16] = (255, 0, 0)
    image[-16:, :] = (0, 0, 255)
    return image


@pytest.mark.parametrize(
    "suffix,rotation", [(".mp4", 90), (".mov", 90), (".mkv", 90), (".webm", 90), (".mp4", 180), (".mp4", 270)]
)
def test_rotated_phone_clip_comes_out_upright(tmp_path, suffix, rotation):
    upright = upright_portrait()
    # What the phone stores: the upright picture turned back (counter-clockwise) by the display rotation.
    stored = np.ascontiguousarray(np.rot90(upright, rotation // 90))
    path = write_video(tmp_path / f"phone{suffix}", [stored] * 5, fps=10, rotation=rotation)

    info = probe_video(path)
    assert info.rotation_degrees == rotation
    assert (info.coded_width, info.coded_height) == (stored.shape[1], stored.shape[0])
    assert (info.width, info.height) == (64, 96)

    image = next(sample_frames(path)).image
    assert image.shape == (96, 64, 3)
    assert mean_abs_error(image, upright) < 8
    assert image[4:12, 4:12, 0].mean() > 200 and image[4:12, 4:12, 2].mean() < 60  # red top-left
    assert image[-10:, 30:34, 2].mean() > 200  # blue bottom


def test_gif_cannot_store_rotation(tmp_path):
    with pytest.raises(MediaError, match="rotat"):
        write_video(tmp_path / "r.gif", [scene(0)], 10, rotation=90)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ timing

VFR_TIMES = [0.0, 0.1, 0.15, 0.5, 0.55, 0.6, 1.5, 1.6, 1.7, 2.0]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
def test_variable_frame_rate_keeps_real_timestamps(tmp_path, suffix):
    colours = [(20 * i, 255 - 20 * i, (97 * i) % 256) for i in range(len(VFR_TIMES))]
    path = write_video(tmp_path / f"vfr{suffix}", [solid(c) for c in colours], fps=10, timestamps_s=VFR_TIMES)
    assert probe_video(path).variable_frame_rate

    everything = list(sample_frames(path, base_rate_hz=20, max_rate_hz=20))
    assert [s.t for s in everything] == pytest.approx(VFR_TIMES, abs=0.0015)
    for kept, colour in zip(everything, colours):
        assert mean_abs_error(kept.image, solid(colour)) < 6

    # at 4 Hz: the first frame at or after each 0.25-s grid point, from the real times, not index / fps
    static = tmp_path / f"static_vfr{suffix}"
    write_video(static, [solid((90, 90, 90))] * len(VFR_TIMES), fps=10, timestamps_s=VFR_TIMES)
    assert [s.t for s in sample_frames(static)] == pytest.approx([0.0, 0.5, 1.5, 2.0], abs=0.0015)


def test_constant_rate_clip_is_not_flagged_variable(tmp_path):
    assert not probe_video(write_video(tmp_path / "cfr.mkv", [scene(i) for i in range(30)], 29.97)).variable_frame_rate


# ------------------------------------------------------------------------------------------------ adaptive sampling


def test_static_clip_is_sampled_on_the_base_grid(tmp_path):
    path = write_video(tmp_path / "static.mp4", [solid((70, 120, 200))] * 120, fps=30)  # 4 s
    sampled = list(sample_frames(path))
    assert len(sampled) == 16
    assert all(s.reason == "base" for s in sampled)
    for k, s in enumerate(sampled):
        assert k * 0.25 - 1e-6 <= s.t <= k * 0.25 + 1 / 30 + 1e-6
        assert s.change < 0.01


def _every_frame(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[float, np.ndarray]:
    """Every frame of a clip by its timestamp, all decoded (non-reference skipping off)."""
    with monkeypatch.context() as patch:
        patch.setattr(video, "_NONREF_SKIPPING_CODECS", set())
        return {s.t: s.image for s in sample_frames(path, base_rate_hz=1000, max_rate_hz=1000)}


def test_skipping_non_reference_frames_keeps_the_samples_of_full_decoding(tmp_path, monkeypatch):
    """H.264 at 30 fps with B-frames: about half the frames are never decoded, yet every grid sample is the frame
    full decoding keeps (same time, same pixels), and every kept frame is a real frame at its own timestamp."""
    frames = [np.clip(scene(0, 128, 192).astype(np.int16) + i // 2, 0, 255).astype(np.uint8) for i in range(150)]
    path = write_video(tmp_path / "slow.mp4", frames, fps=30)  # 5 s, brightening slowly: no change samples
    every = _every_frame(path, monkeypatch)
    assert len(every) == 150

    skipping = SamplingStats()
    sampled = list(sample_frames(path, stats=skipping))
    full = SamplingStats()
    with monkeypatch.context() as patch:
        patch.setattr(video, "_NONREF_SKIPPING_CODECS", set())
        reference = list(sample_frames(path, stats=full))

    assert skipping.skipped_nonreference and not full.skipped_nonreference
    assert full.frames_decoded == 150 and skipping.frames_decoded < 0.75 * 150
    assert [(s.t, s.reason) for s in sampled] == [(s.t, s.reason) for s in reference]
    assert all(s.reason == "base" for s in sampled) and len(sampled) == 20
    for kept in sampled:
        assert np.array_equal(kept.image, every[kept.t])


def test_change_samples_come_from_real_frames_when_skipping(tmp_path, monkeypatch):
    """Cuts between grid points: each change sample is a decoded frame with its true timestamp and pixels, within
    MAX_CANDIDATE_GAP_S of where full decoding puts it."""
    cut_frames = (20, 50, 85)
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (230, 230, 60)]
    frames = [
        np.clip(scene(0, 128, 192).astype(np.int16) // 4 + colours[sum(i >= c for c in cut_frames)], 0, 255).astype(
            np.uint8
        )
        for i in range(120)
    ]
    path = write_video(tmp_path / "cuts.mp4", frames, fps=30)
    every = _every_frame(path, monkeypatch)
    with monkeypatch.context() as patch:
        patch.setattr(video, "_NONREF_SKIPPING_CODECS", set())
        reference = [s.t for s in sample_frames(path) if s.reason == "change"]

    stats = SamplingStats()
    sampled = list(sample_frames(path, stats=stats))
    assert stats.skipped_nonreference
    changes = [s for s in sampled if s.reason == "change"]
    assert len(changes) == len(reference) == len(cut_frames)
    for kept, where in zip(changes, reference):
        assert where - 1e-6 <= kept.t <= where + video.MAX_CANDIDATE_GAP_S
        assert np.array_equal(kept.image, every[kept.t])


def test_slow_clips_decode_every_frame(tmp_path):
    """At 12 fps, skipping every other frame would leave candidates 1/6 s apart, sparser than 8-Hz sampling."""
    stats = SamplingStats()
    list(sample_frames(write_video(tmp_path / "slow.mp4", [scene(i) for i in range(48)], fps=12), stats=stats))
    assert stats.frames_decoded == 48 and not stats.skipped_nonreference


def test_sudden_changes_get_extra_samples_but_never_above_max_rate(tmp_path):
    fps, cut_frames = 30, (20, 50, 85)  # cuts at 0.667 s, 1.667 s, 2.833 s: between grid points
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (230, 230, 60)]
    frames = [solid(colours[sum(i >= c for c in cut_frames)]) for i in range(120)]
    path = write_video(tmp_path / "cuts.mp4", frames, fps=fps)

    sampled = list(sample_frames(path, base_rate_hz=4, max_rate_hz=8))
    times = np.array([s.t for s in sampled])
    extra = [s for s in sampled if s.reason == "change"]
    assert len(extra) == len(cut_frames)
    for cut, s in zip(cut_frames, extra):
        assert cut / fps - 1e-6 <= s.t <= cut / fps + 1 / 8  # at the cut, or as soon as the max rate allows
        assert s.change > video.DEFAULT_CHANGE_THRESHOLD
        assert mean_abs_error(s.image, frames[cut]) < 6  # it shows the new shot
    assert [s.t for s in sampled if s.cut] == [s.t for s in extra]  # each new picture is a shot cut, nothing else
    assert np.diff(times).min() >= 1 / 8 - 1e-6
    # every 0.25-s interval still holds a sample, so the 4 Hz model steps are all covered
    assert {int(t // 0.25) for t in times} == set(range(16))

    # a picture that changes all the time is sampled at the max rate, no faster
    flicker = write_video(tmp_path / "flicker.mp4", [solid(colours[i % 2]) for i in range(60)], fps=30)
    flicker_times = np.array([s.t for s in sample_frames(flicker, base_rate_hz=4, max_rate_hz=8)])
    assert np.diff(flicker_times).min() >= 1 / 8 - 1e-6
    assert len(flicker_times) > 2 * 4  # more than the base rate's 8 in 2 s
    assert len(flicker_times) <= 2 * 8 + 1

    # the threshold decides: above every score, the cuts clip falls back to the base grid
    assert all(s.reason == "base" for s in sample_frames(path, change_threshold=1.01))


def test_expression_change_of_a_face_gets_an_extra_sample(tmp_path):
    """The default threshold against its purpose: a synthetic face (a third of the frame high) switching from
    neutral to happy between two grid points gets a sample at the switch; the static picture scores near zero."""
    from training.data import synthetic

    character = synthetic.character_for_id("media-test-face")
    rows, cols = np.mgrid[0:360, 0:640]
    background = np.stack([cols * 200 // 640 + 30, rows * 160 // 360 + 50, np.full_like(rows, 120)], axis=-1).astype(
        np.uint8
    )
    for style in synthetic.STYLES:
        faces = [
            np.asarray(
                synthetic.render_face(
                    character,
                    synthetic.expression_for(emotion, 0.9, np.random.default_rng(1)),
                    style,
                    size=128,
                    rng=np.random.default_rng(5),
                )
            )
            for emotion in ("neutral", "happiness")
        ]
        frames = []
        for i in range(36):  # 1.2 s at 30 fps, the switch at frame 20 (0.667 s)
            frame = background.copy()
            frame[100:228, 200:328] = faces[i >= 20]
            frames.append(frame)
        sampled = list(sample_frames(write_video(tmp_path / f"{style}.mp4", frames, fps=30)))
        extra = [s for s in sampled if s.reason == "change"]
        assert [round(s.t, 3) for s in extra] == [0.667], style
        assert max(s.change for s in sampled if s.reason == "base") < video.DEFAULT_CHANGE_THRESHOLD / 3, style
        assert not any(s.cut for s in sampled), style  # a face changing expression is not a shot cut


def test_one_frame_clip(tmp_path):
    for suffix in (".mp4", ".gif"):
        path = write_video(tmp_path / f"one{suffix}", [scene(3)], fps=25)
        info = probe_video(path)
        assert info.frame_count == 1
        sampled = list(sample_frames(path))
        assert len(sampled) == 1 and sampled[0].t == 0.0 and sampled[0].reason == "base"
        assert mean_abs_error(sampled[0].image, scene(3)) < 12


def test_sampling_arguments_are_checked(tmp_path):
    path = write_video(tmp_path / "a.mp4", [scene(0)], 10)
    with pytest.raises(ValueError, match="base_rate_hz"):
        sample_frames(path, base_rate_hz=10, max_rate_hz=5)
    with pytest.raises(ValueError, match="max_long_side"):
        sample_frames(path, max_long_side=0)


# ------------------------------------------------------------------------------------------------ long clips


@pytest.fixture(scope="module")
def two_hour_clip(tmp_path_factory) -> Path:
    """Two hours at 1 fps, 64 x 36: 7200 frames that encode in about a second."""

    def frames():
        for i in range(7200):
            frame = solid((40, 40, 40), height=36, width=64)
            frame[:, i % 64] = 255
            yield frame

    return write_video(tmp_path_factory.mktemp("long") / "two_hours.mp4", frames(), fps=1)


def test_two_hour_clip_streams_in_bounded_memory_with_progress(two_hour_clip):
    info = probe_video(two_hour_clip)
    assert info.duration_s == pytest.approx(7200, abs=1) and info.frame_count == 7200

    fractions: list[float] = []
    count = 0
    tracemalloc.start()
    try:
        for _sampled in sample_frames(two_hour_clip, progress=fractions.append):
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 7200  # 1 fps is below the base rate: every frame is kept
    # 7200 kept frames of 6.9 kB each would be 50 MB if anything held on to them
    assert peak < 2_000_000
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert 150 <= len(fractions) <= 202  # about every 0.5 %
    assert np.diff(fractions[:-1]).min() >= 0.005 - 1e-9


def test_two_hour_clip_cancels_promptly(two_hour_clip):
    cancel = threading.Event()
    seen_after_cancel = 0
    with pytest.raises(AnalysisCancelled, match="cancel"):
        for sampled in sample_frames(two_hour_clip, cancel=cancel):
            if cancel.is_set():
                seen_after_cancel += 1
            if sampled.t >= 600:
                cancel.set()
    assert seen_after_cancel == 0


def test_cancel_from_progress_callback(two_hour_clip):
    cancel = threading.Event()
    times = []

    def on_progress(fraction):
        if fraction >= 0.1:
            cancel.set()

    with pytest.raises(AnalysisCancelled):
        for sampled in sample_frames(two_hour_clip, progress=on_progress, cancel=cancel):
            times.append(sampled.t)
    # progress comes in 0.5 % steps (36 s here): it stopped at the first report past 10 %, not at the end
    assert 720 <= times[-1] <= 720 + 36


# ------------------------------------------------------------------------------------------------ bad input


def assert_clear(error: MediaError, path: Path, *words: str) -> None:
    message = str(error)
    assert str(path) in message
    for word in words:
        assert word in message.lower(), message


def test_zero_bytes(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    for call in (probe_video, sample_frames):
        with pytest.raises(EmptyMediaFile) as caught:
            call(path)
        assert_clear(caught.value, path, "empty", "0 bytes")


@pytest.mark.parametrize("name", ["notes.mp4", "notes.mkv", "notes.txt", "noise.bin"])
def test_not_a_video(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".bin"):
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    else:
        path.write_text("this is a shopping list, not a trailer\n" * 40)
    with pytest.raises(NotAVideo) as caught:
        sample_frames(path)
    assert_clear(caught.value, path, "not a video", "mp4")


def test_still_image_is_not_a_video(tmp_path):
    path = tmp_path / "poster.png"
    Image.fromarray(scene(0)).save(path)
    with pytest.raises(NotAVideo) as caught:
        probe_video(path)
    assert_clear(caught.value, path, "still image")


def test_audio_only(tmp_path):
    path = audio_only(tmp_path / "song.m4a")
    with pytest.raises(NoVideoStream) as caught:
        sample_frames(path)
    assert_clear(caught.value, path, "no video", "audio")


def test_unsupported_codec(tmp_path):
    # An MP4 whose sample description names a codec FFmpeg does not know (the H.264 tag is overwritten).
    path = tmp_path / "exotic.mp4"
    path.write_bytes(write_video(tmp_path / "plain.mp4", [scene(0)] * 3, 10).read_bytes().replace(b"avc1", b"zq9x"))
    with pytest.raises(UnsupportedCodec) as caught:
        probe_video(path)
    assert_clear(caught.value, path, "codec", "convert")


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        probe_video(tmp_path / "nowhere.mp4")


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm", ".gif"])
def test_truncated_file_cut_in_half_yields_the_first_half_and_says_so(tmp_path, suffix):
    whole = write_video(tmp_path / f"whole{suffix}", noisy_frames(60), fps=30)  # 2 s; MP4 with the index first
    half = tmp_path / f"half{suffix}"
    data = whole.read_bytes()
    half.write_bytes(data[: len(data) // 2])

    if suffix != ".gif":  # the header still tells the full length (a GIF has none)
        assert probe_video(half).duration_s == pytest.approx(2.0, abs=0.05)
    intact = SamplingStats()
    list(sample_frames(whole, stats=intact))
    assert not intact.truncated and intact.warning is None
    stats = SamplingStats()
    sampled = list(sample_frames(half, stats=stats))
    assert stats.truncated
    assert 10 <= stats.frames_decoded <= 50
    assert len(sampled) >= 3 and sampled[-1].t < 1.7
    assert str(half) in stats.warning and "cut off" in stats.warning
    assert stats.frames_sampled == len(sampled)


def test_truncated_mp4_cut_after_header(tmp_path):
    data = write_video(tmp_path / "whole.mp4", noisy_frames(30), fps=30).read_bytes()
    header_only = tmp_path / "header_only.mp4"
    header_only.write_bytes(data[: data.index(b"mdat") + 4 + 64])  # the index and a sliver of the first frame
    for call in (probe_video, lambda p: list(sample_frames(p))):
        with pytest.raises(TruncatedVideo) as caught:
            call(header_only)
        assert_clear(caught.value, header_only, "no frame", "cut-off")


def test_truncated_mp4_with_index_at_the_end(tmp_path):
    whole = index_last_mp4(tmp_path / "camera.mp4", noisy_frames(30))
    assert len(list(sample_frames(whole))) >= 1  # the intact file is fine
    cut = tmp_path / "camera_cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(TruncatedVideo) as caught:
        sample_frames(cut)
    assert_clear(caught.value, cut, "cut off", "mp4")


# ------------------------------------------------------------------------------------------------ writing


def test_failed_write_leaves_nothing(tmp_path):
    def frames():
        yield scene(0)
        yield scene(1)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        write_video(tmp_path / "crash.mp4", frames(), 10)
    with pytest.raises(MediaError, match="same size"):
        write_video(tmp_path / "sizes.mp4", [scene(0), scene(1, height=32)], 10)
    with pytest.raises(MediaError, match="no frames"):
        write_video(tmp_path / "none.mp4", [], 10)
    with pytest.raises(MediaError, match="uint8 RGB"):
        write_video(tmp_path / "float.mp4", [scene(0).astype(np.float32)], 10)
    with pytest.raises(MediaError, match="timestamps"):
        write_video(tmp_path / "ts.mp4", [scene(0), scene(1)], 10, timestamps_s=[0.0, 0.0])
    with pytest.raises(MediaError, match=r"\.avi"):
        write_video(tmp_path / "clip.avi", [scene(0)], 10)
    assert list(tmp_path.iterdir()) == []


def test_write_replaces_an_existing_file_whole(tmp_path):
    path = write_video(tmp_path / "clip.mp4", [scene(0)] * 5, 10)
    write_video(path, [scene(1)] * 12, Fraction(24))
    assert probe_video(path).frame_count == 12 and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
