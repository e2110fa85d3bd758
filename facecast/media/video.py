"""Reading video files: probe a file and stream adaptively sampled frames (writing: facecast.media.video_writer).

Everything that touches a video container goes through this module (PyAV, no torch), so the rules below are
decided once:

- Frames come out upright: the container's display matrix (phone clips store portrait video as rotated landscape)
  is applied to every sampled frame, and `VideoInfo` reports the display size.
- Time is the presentation timestamp (pts x time_base) of each frame, counted from the stream start, never
  `index / fps`: variable-frame-rate phone and screen recordings would drift otherwise.
- Sampling is adaptive: one frame per `1 / base_rate_hz` seconds on a fixed grid, plus extra frames where the
  picture moves away from the last kept frame, never closer together than `1 / max_rate_hz`. Change is measured on
  a tiny luma thumbnail read straight from the decoded picture, and only kept frames are converted to RGB (the
  conversion costs about as much as decoding).
- Only what sampling needs is decoded. A trailer at 24-60 fps holds 3-8 frames for every one sampling may keep;
  frames no other frame is predicted from (H.264/HEVC B-frames outside the pyramid: about half of a typical stream)
  are not decoded (`skip_frame = NONREF`), except the first frame at or after each grid point, decided packet by
  packet from its timestamp before decoding. So the grid samples are the very frames full decoding would keep; the
  frames between them, which only serve change detection, come at least every `MAX_CANDIDATE_GAP_S` (denser than
  the densest sampling, 8 Hz), and a change frame is the first *decoded* frame that shows the change, with its own
  true timestamp. A stream whose decoded frames come further apart decodes every frame from there on
  (`SamplingStats.skipped_nonreference` says whether any frame was skipped). Seeking would not help at these rates:
  the 4-Hz grid is far denser than any keyframe interval, so every reference frame is needed anyway.
- Memory is bounded: frames are streamed one at a time, so a two-hour clip costs what a two-second clip costs.
- A file that cannot be used raises a `MediaError` subclass whose message names the file, says what is wrong and
  what to do; the message goes straight to the user. A file cut off after some frames is not an error: its first
  part is sampled and `SamplingStats.truncated` / `.warning` say so.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

SUPPORTED_CONTAINERS = "MP4, MOV, MKV, WebM, GIF"


class MediaError(ValueError):
    """A video file that cannot be used; the message names the file, the problem and what to do."""


class EmptyMediaFile(MediaError):
    """The file has no bytes at all."""


class NotAVideo(MediaError):
    """The file is not a video container (text, an image, random bytes)."""


class NoVideoStream(MediaError):
    """The container holds no video stream (an audio-only file)."""


class UnsupportedCodec(MediaError):
    """The container opens, but its video codec cannot be decoded here."""


class TruncatedVideo(MediaError):
    """The file starts like a video but its data is cut off, so no frame can be decoded."""


class AnalysisCancelled(MediaError):
    """Sampling stopped because the caller's cancel event was set."""


# --------------------------------------------------------------------------------------------------- opening

# Demuxers FFmpeg offers for single images and text: they open, but what they hold is no clip to analyse.
_STILL_IMAGE_DEMUXERS = {"image2", "tty", "apng"}
_CONVERT_HINT = "convert it to H.264 MP4 (for example `ffmpeg -i INPUT -c:v libx264 -pix_fmt yuv420p OUTPUT.mp4`)"


def _sniff_container(path: Path) -> str | None:
    """Which video container the first bytes announce, to tell a damaged video from something that is none."""
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError:
        return None
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"):
        return "MP4/MOV"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska/WebM"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def _open_video(path: Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open `path` and pick its video stream, or raise the MediaError that says why it cannot be used."""
    name = str(path)
    if not path.exists():
        raise MediaError(f"{name}: file not found")
    if not path.is_file():
        raise MediaError(f"{name}: not a file")
    if path.stat().st_size == 0:
        raise EmptyMediaFile(
            f"{name}: the file is empty (0 bytes); the upload or copy did not finish, so copy or export the clip again"
        )
    try:
        container = av.open(name, "r")
    except av.error.FFmpegError as error:
        announced = _sniff_container(path)
        if announced is not None:
            raise TruncatedVideo(
                f"{name}: the file starts like a {announced} video but cannot be opened: its "
                f"index or header is incomplete, which happens when a download, copy or "
                f"recording is cut off; copy or export the clip again"
            ) from None
        raise NotAVideo(
            f"{name}: not a video file that can be read ({_describe_error(error)}); supported "
            f"containers: {SUPPORTED_CONTAINERS}"
        ) from None
    except OSError as error:
        raise MediaError(f"{name}: the file cannot be read ({error.strerror or error})") from None

    try:
        format_name = container.format.name
        if format_name in _STILL_IMAGE_DEMUXERS or format_name.endswith("_pipe"):
            kind = "text" if format_name == "tty" else "a still image"
            raise NotAVideo(f"{name}: this is {kind}, not a video; supported containers: {SUPPORTED_CONTAINERS}")
        videos = [
            stream for stream in container.streams.video if not stream.disposition & av.stream.Disposition.attached_pic
        ]  # cover art of a music file
        if not videos:
            what = "only audio" if container.streams.audio else "no picture at all"
            raise NoVideoStream(f"{name}: the file has no video stream ({what}); choose a file with moving pictures")
        stream = max(
            videos,
            key=lambda s: (
                s.codec_context is not None,
                (s.codec_context.width * s.codec_context.height) if s.codec_context else 0,
            ),
        )
        if stream.codec_context is None:
            raise UnsupportedCodec(f"{name}: the video codec of this file is not supported here; {_CONVERT_HINT}")
    except BaseException:
        container.close()
        raise
    return container, stream


def _no_frames(path: Path) -> TruncatedVideo:
    return TruncatedVideo(
        f"{path}: the header is there but no frame can be decoded; the video data is missing or "
        f"damaged (a cut-off download or copy); copy or export the clip again"
    )


def _describe_error(error: Exception) -> str:
    """FFmpeg's own reason without the errno and path noise, e.g. 'Invalid data found when processing input'."""
    return getattr(error, "strerror", None) or type(error).__name__


# --------------------------------------------------------------------------------------------------- probing


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds. Sizes in pixels; `width`/`height` are as displayed (after rotation)."""

    path: Path
    container_format: str  # FFmpeg demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "gif"
    codec: str  # decoder name, e.g. "h264", "vp9", "gif"
    coded_width: int
    coded_height: int
    width: int
    height: int
    rotation_degrees: int  # 0, 90, 180 or 270: how far the stored frames are turned CLOCKWISE for display
    duration_s: float
    average_fps: float
    frame_count: int
    frame_count_is_estimate: bool  # True where the container has no frame index (Matroska, WebM): duration x fps
    has_audio: bool
    variable_frame_rate: bool  # best effort, from the timestamps of the first packets


# Frames whose spacing is read to judge variable frame rate: a few seconds of a normal clip, read without decoding.
_RATE_CHECK_PACKETS = 240


def _clockwise_rotation(frame: av.VideoFrame) -> int:
    """PyAV reports the display matrix as a counter-clockwise angle in [-180, 180]; we store clockwise 0..270."""
    return round(-frame.rotation / 90.0) % 4 * 90


def _stream_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return 0.0


def _stream_rate(stream: av.video.stream.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return 0.0


def probe_video(path: str | Path) -> VideoInfo:
    """Describe a video file; decodes its first frame (to read rotation and prove the data is there)."""
    path = Path(path)
    container, stream = _open_video(path)
    with container:
        stream.thread_type = "AUTO"
        first_frame = None
        pts_values: list[int] = []
        packets = 0
        try:
            for packet in container.demux(stream):
                if packet.pts is not None and packet.size:
                    pts_values.append(packet.pts)
                packets += 1
                if first_frame is None:
                    try:
                        decoded = stream.decode(packet)
                    except av.error.FFmpegError:
                        decoded = []
                    if decoded:
                        first_frame = decoded[0]
                if first_frame is not None and packets >= _RATE_CHECK_PACKETS:
                    break
        except av.error.FFmpegError:
            pass  # cut-off data: what was read so far still describes the file
        if first_frame is None:
            raise _no_frames(path)
        rotation = _clockwise_rotation(first_frame)
        coded_width, coded_height = (
            stream.codec_context.width or first_frame.width,
            stream.codec_context.height or first_frame.height,
        )
        duration = _stream_duration(container, stream)
        fps = _stream_rate(stream)
        if stream.frames and stream.frames > 0:
            frame_count, estimate = int(stream.frames), False
        else:
            frame_count, estimate = max(1, round(duration * fps)), True
        swapped = rotation in (90, 270)
        return VideoInfo(
            path=path,
            container_format=container.format.name,
            codec=stream.codec_context.name,
            coded_width=coded_width,
            coded_height=coded_height,
            width=coded_height if swapped else coded_width,
            height=coded_width if swapped else coded_height,
            rotation_degrees=rotation,
            duration_s=duration,
            average_fps=fps,
            frame_count=frame_count,
            frame_count_is_estimate=estimate,
            has_audio=bool(container.streams.audio),
            variable_frame_rate=_looks_variable(pts_values, stream.time_base),
        )


def _looks_variable(pts_values: list[int], time_base: Fraction | None) -> bool:
    """Frame spacing that varies by more than container rounding (1-2 clock ticks) and 25 % of the typical gap."""
    if len(pts_values) < 3 or time_base is None:
        return False
    gaps = np.diff(np.sort(np.asarray(pts_values, dtype=np.int64)))
    gaps = gaps[gaps > 0]
    if len(gaps) < 2:
        return False
    typical = float(np.median(gaps))
    return float(gaps.max() - gaps.min()) > max(2.0, 0.25 * typical)


# --------------------------------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class SampledFrame:
    """One kept frame: `index` counts kept frames from 0, `t` is seconds from the clip start (presentation time)."""

    index: int
    t: float
    image: np.ndarray  # uint8 [H, W, 3] RGB, upright, long side <= max_long_side
    change: float  # change score against the previously kept frame (0 for the first), see DEFAULT_CHANGE_THRESHOLD
    reason: str  # "base" (the regular grid) or "change" (an extra frame where the picture changed)
    cut_score: float = 0.0  # against the previously kept frame (0 for the first), see CUT_THRESHOLD

    @property
    def cut(self) -> bool:
        """Whether a shot cut lies between the previously kept frame and this one."""
        return self.cut_score >= CUT_THRESHOLD


@dataclass
class SamplingStats:
    """Pass one to `sample_frames(stats=...)` and read it after the loop: what the decoder saw.

    `truncated` is True when the data ended before the length the header announces (a cut-off file whose first
    part still decodes); `decode_errors` counts packets the decoder rejected (damaged data). `warning` is then a
    sentence for the user saying which part was analysed. A file with no decodable frame raises TruncatedVideo
    instead, so a caller never stores a report built from nothing.
    """

    duration_s: float = 0.0  # announced by the container
    packets_read: int = 0
    frames_decoded: int = 0
    frames_sampled: int = 0
    last_frame_s: float = 0.0
    skipped_nonreference: bool = False  # some non-reference frames were left undecoded (see the module docstring)
    decode_errors: int = 0
    truncated: bool = False
    warning: str | None = None


# Change score: mean absolute luma difference, in [0, 1], over the 0.5 % of thumbnail cells (about a dozen of
# 36 x 64) that changed most since the last kept frame. The few most-changed cells rather than the whole-picture
# mean, so that a face changing expression in part of the frame counts; each cell averages 16 samples, so encoder
# and sensor noise (a few levels per pixel) stays well below the threshold. The default fires on cuts, fast motion
# and the expression changes of faces about a third of the frame high or larger, in all four drawing styles, and
# not on a static H.264 picture (tests/test_media.py::test_expression_change_of_a_face_gets_an_extra_sample);
# smaller faces are left to the base rate.
# Cut score: the mean absolute luma difference over the whole thumbnail, in [0, 1]. Camera moves, moving characters
# and expression changes alter part of the picture; a cut alters all of it. CUT_THRESHOLD is set from
# docs/results-tracking.md (benchmarks/tracking.py measures this score at cuts and between them); a false cut
# costs little, since the tracker re-identifies faces across cuts by appearance.
CUT_THRESHOLD = 0.035
_THUMB_ROWS, _THUMB_COLS = 36, 64
_SAMPLES_PER_CELL_SIDE = 4
_TOP_FRACTION = 0.005
DEFAULT_CHANGE_THRESHOLD = 0.03
_PLANAR_8BIT_YUV = {
    "yuv420p",
    "yuvj420p",
    "yuv422p",
    "yuvj422p",
    "yuv444p",
    "yuvj444p",
    "yuv440p",
    "yuvj440p",
    "yuv411p",
    "yuv410p",
    "nv12",
    "nv21",
    "gray",
}


def _luma_thumbnail(frame: av.VideoFrame) -> np.ndarray:
    """A tiny luma picture (about 36 x 64 cells, each the sum of 4 x 4 samples) read from the decoder's Y plane.

    Strided slicing of the 8-bit plane costs about 40 microseconds per 720p frame; FFmpeg's scaler spends most of a
    millisecond on the same job, as long as decoding the frame takes.
    """
    luma: np.ndarray
    if frame.format.name in _PLANAR_8BIT_YUV:
        plane = frame.planes[0]
        luma = np.frombuffer(memoryview(plane), np.uint8, count=plane.line_size * frame.height)
        luma = luma.reshape(frame.height, plane.line_size)[:, : frame.width]
    else:  # GIF, RGB, 10-bit: rare and usually small
        luma = frame.to_ndarray(format="gray")
    n = _SAMPLES_PER_CELL_SIDE
    height, width = luma.shape
    step_y, step_x = max(1, height // (n * _THUMB_ROWS)), max(1, width // (n * _THUMB_COLS))
    grid = luma[step_y // 2 :: step_y, step_x // 2 :: step_x]
    rows, cols = grid.shape[0] // n * n, grid.shape[1] // n * n
    if rows == 0 or cols == 0:  # a video only a few pixels high or wide
        return luma.astype(np.uint16) * (n * n)
    cells = grid[:rows, :cols].astype(np.uint16)
    by_rows = cells[0::n].copy()
    for i in range(1, n):
        by_rows += cells[i::n]
    thumbnail = by_rows[:, 0::n].copy()
    for i in range(1, n):
        thumbnail += by_rows[:, i::n]
    return thumbnail


def _change_score(thumbnail: np.ndarray, reference: np.ndarray) -> float:
    if thumbnail.shape != reference.shape:  # the stream changed size: a new picture
        return 1.0
    difference = np.abs(thumbnail.astype(np.int32) - reference).ravel()
    top = max(1, round(difference.size * _TOP_FRACTION))
    cell_range = 255.0 * _SAMPLES_PER_CELL_SIDE**2
    return float(np.partition(difference, difference.size - top)[-top:].mean() / cell_range)


def cut_score(thumbnail: np.ndarray, reference: np.ndarray) -> float:
    if thumbnail.shape != reference.shape:  # the stream changed size: a new picture
        return 1.0
    cell_range = 255.0 * _SAMPLES_PER_CELL_SIDE**2
    return float(np.abs(thumbnail.astype(np.int32) - reference).mean() / cell_range)


# Decoded frames (sampling candidates) may lie at most this far apart while non-reference frames are skipped: 0.1 s
# keeps more than 10 candidates a second, above the 8-Hz most sampling keeps. At 24-30 fps skipping one frame in two
# stays inside it; a stream with longer runs of non-reference frames, or a slower one, decodes every frame.
MAX_CANDIDATE_GAP_S = 0.1
# FFmpeg's frame threads decode several frames at once: faster alone, but they cost 15-25 % more CPU time per clip
# (benchmarks/analyze.py's decoding levers), and an analysis already decodes on its own thread beside inference,
# with Triton on the same cores. Slice threads split a frame only where the encoder made slices, at no extra cost.
DECODE_THREADS = "SLICE"
# Codecs whose decoder honours skip_frame = NONREF by dropping only frames nothing else refers to (FFmpeg's h264,
# hevc and MPEG decoders). GIF, VP9 and AV1 are decoded whole: their frames are rare, small, or all referenced.
_NONREF_SKIPPING_CODECS = {"h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video"}


class _NonReferenceSkipping:
    """Packet by packet: whether the decoder may drop the packet's frame if no other frame refers to it.

    Never for the frame that can be the first at or after a grid point (its presentation time, known from the
    packet before decoding, lies within one frame period after the point): grid samples are the frames full decoding
    would keep. Never again once decoded frames come more than `gap_limit` apart (see MAX_CANDIDATE_GAP_S).
    The decoder reads skip_frame per packet (frame threads copy it when they take a packet), so switching is exact.
    """

    def __init__(self, stream: av.video.stream.VideoStream, base_period: float, max_rate_hz: float, slack: float):
        rate = _stream_rate(stream)
        self.gap_limit = min(MAX_CANDIDATE_GAP_S, 1.0 / max_rate_hz)
        # skipping every other frame must already stay within the limit
        self.active = stream.codec_context.name in _NONREF_SKIPPING_CODECS and rate > 0 and 2.0 / rate <= self.gap_limit
        self.context = stream.codec_context
        self.seconds_per_tick = float(stream.time_base) if stream.time_base else 0.0
        self.frame_period = 1.0 / rate if rate > 0 else 0.0
        self.base_period, self.slack = base_period, slack
        self.skipping = False
        self.skipped_any = False

    def before_decoding(self, packet: av.Packet, origin: int | None) -> None:
        if not self.active:
            return
        may_skip = False
        if packet.pts is not None and origin is not None and self.seconds_per_tick:
            t = (packet.pts - origin) * self.seconds_per_tick
            may_skip = t > 0 and (t + self.slack) % self.base_period >= self.frame_period + 2 * self.slack
        if may_skip != self.skipping:
            self.context.skip_frame = "NONREF" if may_skip else "DEFAULT"
            self.skipping = may_skip

    def after_frame(self, gap: float) -> None:
        """`gap`: seconds since the previous decoded frame."""
        if not self.active:
            return
        self.skipped_any |= gap > 1.5 * self.frame_period
        if gap > self.gap_limit + self.slack:  # candidates too sparse: decode every frame from here on
            self.active = self.skipping = False
            self.context.skip_frame = "DEFAULT"


def _output_size(width: int, height: int, max_long_side: int | None) -> tuple[int, int]:
    if max_long_side is None or max(width, height) <= max_long_side:
        return width, height
    scale = max_long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class _RgbConverter:
    """Kept frames to upright uint8 RGB, shrunk to `max_long_side`. One converter per clip keeps FFmpeg's scalers
    set up between frames; a fresh one per frame costs 0.3 ms, more than decoding a small frame.

    Planar YUV is shrunk in YUV first and then converted at the smaller size: FFmpeg's unscaled YUV → RGB path is
    vectorised, its scaled one is not, and two steps cost 0.7 ms per 720p → 540p frame where one costs 1.6 ms."""

    def __init__(self, max_long_side: int | None):
        self.max_long_side = max_long_side
        self.shrink = VideoReformatter()
        self.to_rgb = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        width, height = _output_size(frame.width, frame.height, self.max_long_side)
        has_alpha = frame.format.has_palette or any(component.is_alpha for component in frame.format.components)
        pixel_format = "rgba" if has_alpha else "rgb24"
        quarter_turns = round(frame.rotation / 90.0) % 4  # counter-clockwise, as np.rot90 turns; read before
        # reformatting, whose output frame carries no display matrix
        # Fast bilinear is exact enough for shrinking by up to 2x; a larger step needs the area filter to not alias.
        interpolation = "FAST_BILINEAR" if width * 2 >= frame.width else "AREA"
        if (width, height) != (frame.width, frame.height) and frame.format.name in _PLANAR_8BIT_YUV:
            frame = self.shrink.reformat(frame, width=width, height=height, interpolation=interpolation)
        pixels = self.to_rgb.reformat(
            frame, width=width, height=height, format=pixel_format, interpolation=interpolation
        ).to_ndarray()
        if has_alpha:
            # Transparency on white, as facecast.images does for stills, so a GIF frame looks as it does as a still.
            alpha = pixels[..., 3:4].astype(np.uint16)
            pixels = ((pixels[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
        if quarter_turns:
            pixels = np.rot90(pixels, quarter_turns)
        return np.ascontiguousarray(pixels)


def sample_frames(
    path: str | Path,
    *,
    base_rate_hz: float = 4.0,
    max_rate_hz: float = 8.0,
    change_threshold: float = DEFAULT_CHANGE_THRESHOLD,
    max_long_side: int | None = 960,
    progress: Callable[[float], None] | None = None,
    cancel: threading.Event | None = None,
    stats: SamplingStats | None = None,
) -> Iterator[SampledFrame]:
    """Stream upright RGB frames of a video, adaptively sampled; opens the file (and raises) before returning.

    One frame is kept on each point of a grid of `1 / base_rate_hz` seconds (the first decoded frame at or after it),
    plus extra frames whose change score against the last kept frame reaches `change_threshold`. Kept frames are never
    closer than `1 / max_rate_hz` seconds: a grid frame that comes too soon after an extra frame is taken that much
    later, so every grid interval still holds a kept frame. The first frame is always kept.
    `progress(fraction)` is called as the clip advances (about every 0.5 %, and 1.0 at the end); a set `cancel`
    event stops decoding within one frame by raising AnalysisCancelled. `stats`, when given, is filled in.
    """
    if not (base_rate_hz > 0 and max_rate_hz >= base_rate_hz):
        raise ValueError(f"need 0 < base_rate_hz <= max_rate_hz, got {base_rate_hz} and {max_rate_hz}")
    if max_long_side is not None and max_long_side < 1:
        raise ValueError(f"max_long_side must be at least 1 or None, got {max_long_side}")
    path = Path(path)
    container, stream = _open_video(path)
    return _sample(
        path,
        container,
        stream,
        base_rate_hz,
        max_rate_hz,
        change_threshold,
        max_long_side,
        progress,
        cancel,
        stats if stats is not None else SamplingStats(),
    )


def _decoded(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    stats: SamplingStats,
    before_decoding: Callable[[av.Packet], None] | None = None,
) -> Iterator[av.VideoFrame]:
    """Decoded frames in presentation order (`before_decoding(packet)` may set the decoder's skip_frame); damaged
    packets are counted and skipped, cut-off data ends the stream."""
    demuxer = container.demux(stream)
    flushed = False
    while True:
        try:
            packet = next(demuxer)
        except StopIteration:
            break
        except av.error.FFmpegError:
            stats.truncated = True
            break
        if packet.size:
            stats.packets_read += 1
        else:
            flushed = True  # PyAV's final empty packet drains the decoder
        if before_decoding is not None:
            before_decoding(packet)
        try:
            decoded = stream.decode(packet)
        except av.error.FFmpegError:
            stats.decode_errors += 1
            continue
        yield from decoded
    if not flushed:
        try:
            yield from stream.decode(None)
        except av.error.FFmpegError:
            stats.decode_errors += 1


def _ends_with(path: Path, tail: bytes) -> bool:
    try:
        with path.open("rb") as handle:
            handle.seek(-len(tail), os.SEEK_END)
            return handle.read() == tail
    except OSError:
        return False


def _sample(
    path: Path,
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    base_rate_hz: float,
    max_rate_hz: float,
    change_threshold: float,
    max_long_side: int | None,
    progress: Callable[[float], None] | None,
    cancel: threading.Event | None,
    stats: SamplingStats,
) -> Iterator[SampledFrame]:
    base_period = 1.0 / base_rate_hz
    min_gap = 1.0 / max_rate_hz
    with container:
        stream.thread_type = DECODE_THREADS
        time_base = stream.time_base
        seconds_per_tick = float(time_base) if time_base else 0.0
        stats.duration_s = duration = _stream_duration(container, stream)
        nominal_gap = 1.0 / _stream_rate(stream) if _stream_rate(stream) > 0 else 0.04
        origin = stream.start_time
        # Half a clock tick: timestamps are rounded to the container clock, the grid is exact.
        slack = min(1e-3, float(time_base) / 2) if time_base else 1e-6
        next_base = 0.0
        last_kept_t = -math.inf
        last_kept_thumbnail = None
        last_t = -nominal_gap
        reported = -1.0
        to_rgb = _RgbConverter(max_long_side)
        kept = 0
        skipping = _NonReferenceSkipping(stream, base_period, max_rate_hz, slack)

        def before_decoding(packet: av.Packet) -> None:
            skipping.before_decoding(packet, origin)

        for frame in _decoded(container, stream, stats, before_decoding):
            if cancel is not None and cancel.is_set():
                raise AnalysisCancelled(f"{path}: analysis cancelled at {max(last_t, 0.0):.1f} s")
            if frame.pts is not None and seconds_per_tick:
                if origin is None:
                    origin = frame.pts
                t = (frame.pts - origin) * seconds_per_tick
            else:
                t = last_t + nominal_gap
            t = max(t, 0.0)
            stats.frames_decoded += 1
            if stats.frames_decoded > 1:
                skipping.after_frame(t - last_t)
            last_t = max(last_t, t)

            # The thumbnail is needed only for frames that may be kept: too soon after a kept frame, none is.
            reason = None
            change = 0.0
            if last_kept_thumbnail is None:
                reason = "base"
                thumbnail = _luma_thumbnail(frame)
            elif t - last_kept_t + slack >= min_gap:
                thumbnail = _luma_thumbnail(frame)
                change = _change_score(thumbnail, last_kept_thumbnail)
                if t + slack >= next_base:
                    reason = "base"
                elif change >= change_threshold:
                    reason = "change"
            if reason is not None:
                image = to_rgb(frame)
                cut = 0.0 if last_kept_thumbnail is None else cut_score(thumbnail, last_kept_thumbnail)
                last_kept_t, last_kept_thumbnail = t, thumbnail
                next_base = (math.floor((t + slack) / base_period) + 1) * base_period
                stats.frames_sampled += 1
                yield SampledFrame(index=kept, t=t, image=image, change=change, reason=reason, cut_score=cut)
                kept += 1
            if progress is not None and duration > 0:
                fraction = min(1.0, t / duration)
                if fraction - reported >= 0.005:
                    reported = fraction
                    progress(fraction)
        if cancel is not None and cancel.is_set():
            raise AnalysisCancelled(f"{path}: analysis cancelled at {max(last_t, 0.0):.1f} s")
        if stats.frames_decoded == 0:
            raise _no_frames(path)
        stats.last_frame_s = last_t
        stats.skipped_nonreference = skipping.skipped_any
        expected_packets = stream.frames or 0
        if container.format.name == "gif":  # no length in the header; a complete GIF ends with its trailer byte
            stats.truncated |= not _ends_with(path, b";")
        elif expected_packets:  # MP4/MOV know their frame count: any packet short is data cut off
            stats.truncated |= stats.packets_read < expected_packets
        else:  # Matroska/WebM: only the announced duration; a long last frame must not look like a cut
            missing = duration - (last_t + nominal_gap)
            stats.truncated |= duration > 0 and missing > max(1.0, 0.05 * duration, 3 * nominal_gap)
        if stats.truncated:
            announced = f"it announces {duration:.1f} s but " if duration > last_t + nominal_gap else ""
            stats.warning = (
                f"{path}: the file is cut off: {announced}its data ends at {last_t:.1f} s; only that part was analysed"
            )
        elif stats.decode_errors:
            stats.warning = f"{path}: {stats.decode_errors} damaged packet(s) could not be decoded and were skipped"
        if progress is not None:
            progress(1.0)
